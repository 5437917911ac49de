"""procrastinate migration 00.16.00_01_add_finish_job_and_retry_job_functions.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_16_00_01"
down_revision = "pc_00_15_02_01"
branch_labels = None
depends_on = None

SQL_FILE = "00.16.00_01_add_finish_job_and_retry_job_functions.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
