"""procrastinate migration 00.08.01_01_add_queueing_lock_column.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_08_01_01"
down_revision = "pc_00_07_01_01"
branch_labels = None
depends_on = None

SQL_FILE = "00.08.01_01_add_queueing_lock_column.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
