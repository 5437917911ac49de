"""procrastinate migration 03.00.00_50_post_cancel_notification.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_03_00_00_50"
down_revision = "pc_03_00_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "03.00.00_50_post_cancel_notification.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
