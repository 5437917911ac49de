"""procrastinate migration 02.14.01_01_add_indexes_for_fetch_job.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_02_14_01_01"
down_revision = "pc_02_08_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "02.14.01_01_add_indexes_for_fetch_job.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
