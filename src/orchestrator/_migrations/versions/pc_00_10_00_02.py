"""procrastinate migration 00.10.00_02_add_defer_job_function.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_10_00_02"
down_revision = "pc_00_10_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "00.10.00_02_add_defer_job_function.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
