"""procrastinate migration 00.10.00_01_close_fetch_job_race_condition.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_10_00_01"
down_revision = "pc_00_08_01_01"
branch_labels = None
depends_on = None

SQL_FILE = "00.10.00_01_close_fetch_job_race_condition.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
