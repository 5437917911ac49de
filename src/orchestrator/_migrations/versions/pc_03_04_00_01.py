"""procrastinate migration 03.04.00_01_pre_add_retry_failed_job_procedure.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_03_04_00_01"
down_revision = "pc_03_03_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "03.04.00_01_pre_add_retry_failed_job_procedure.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
