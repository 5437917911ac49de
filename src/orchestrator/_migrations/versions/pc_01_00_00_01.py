"""procrastinate migration 01.00.00_01_remove_old_finish_job_function.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_01_00_00_01"
down_revision = "pc_00_23_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "01.00.00_01_remove_old_finish_job_function.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
