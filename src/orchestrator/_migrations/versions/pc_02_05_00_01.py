"""procrastinate migration 02.05.00_01_add_periodic_job_priority.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_02_05_00_01"
down_revision = "pc_02_00_03_01"
branch_labels = None
depends_on = None

SQL_FILE = "02.05.00_01_add_periodic_job_priority.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
