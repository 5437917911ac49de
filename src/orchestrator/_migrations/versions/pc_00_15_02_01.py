"""procrastinate migration 00.15.02_01_fix_procrastinate_defer_periodic_job.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_15_02_01"
down_revision = "pc_00_14_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "00.15.02_01_fix_procrastinate_defer_periodic_job.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
