"""procrastinate migration 00.17.00_01_add_trigger_on_job_deletion.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_17_00_01"
down_revision = "pc_00_16_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "00.17.00_01_add_trigger_on_job_deletion.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
