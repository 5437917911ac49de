"""procrastinate migration 02.08.00_01_add_additional_params_to_retry_job.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_02_08_00_01"
down_revision = "pc_02_06_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "02.08.00_01_add_additional_params_to_retry_job.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
