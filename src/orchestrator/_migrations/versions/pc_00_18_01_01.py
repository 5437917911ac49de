"""procrastinate migration 00.18.01_01_fix_finish_job_compat_issue.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_18_01_01"
down_revision = "pc_00_17_00_04"
branch_labels = None
depends_on = None

SQL_FILE = "00.18.01_01_fix_finish_job_compat_issue.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
