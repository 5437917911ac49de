"""PT5 records a late window it skipped: ``evergreen_updates.status = 'skipped_older'``.

A PT5 whose window is older than the one the campaign's name already shows leaves the
campaign alone (the name never moves backwards) and records the skip.

Revision ID: 0010_fencing_pipeline
Revises: 0009_fencing
"""

from alembic import op

revision = "0010_fencing_pipeline"
down_revision = "0009_fencing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE evergreen_updates DROP CONSTRAINT evergreen_updates_status_check;
        ALTER TABLE evergreen_updates ADD CONSTRAINT evergreen_updates_status_check
            CHECK (status IN ('updated', 'already_current', 'skipped_older'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM evergreen_updates WHERE status = 'skipped_older';
        ALTER TABLE evergreen_updates DROP CONSTRAINT evergreen_updates_status_check;
        ALTER TABLE evergreen_updates ADD CONSTRAINT evergreen_updates_status_check
            CHECK (status IN ('updated', 'already_current'));
        """
    )
