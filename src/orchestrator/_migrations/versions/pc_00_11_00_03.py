"""procrastinate migration 00.11.00_03_add_procrastinate_periodic_defers.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_11_00_03"
down_revision = "pc_00_10_00_02"
branch_labels = None
depends_on = None

SQL_FILE = "00.11.00_03_add_procrastinate_periodic_defers.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
