"""procrastinate migration 01.01.01_01_job_id_bigint.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_01_01_01_01"
down_revision = "pc_01_00_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "01.01.01_01_job_id_bigint.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
