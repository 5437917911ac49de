"""procrastinate migration 00.12.00_01_add_foreign_key_index.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_12_00_01"
down_revision = "pc_00_11_00_03"
branch_labels = None
depends_on = None

SQL_FILE = "00.12.00_01_add_foreign_key_index.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
