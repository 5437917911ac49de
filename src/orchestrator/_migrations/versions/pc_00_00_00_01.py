"""procrastinate migration 00.00.00_01_initial.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_00_00_01"
down_revision = None
branch_labels = ("procrastinate",)
depends_on = None

SQL_FILE = "00.00.00_01_initial.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
