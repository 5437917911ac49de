"""``window_leads`` without its per-row check on ``cleaned_leads``; PT2 deletes them itself.

EXPLAIN ANALYZE of PT4 storing a window of 25,000 leads (the embedded PostgreSQL, the
``limits`` benchmark's data): 540 ms, of which the foreign-key trigger on
``cleaned_lead_id`` took 225 ms, fired once per row to find the cleaned lead the same
statement had just read. PT4 stores the first window before its first upload, so the check
stood between a job's start and its first request. Migration ``0017`` kept the reference for
its cascade: PT2 deletes a client-month's cleaned leads when it runs again, and their window
rows had to go too. PT2 now deletes those window rows itself, in the same transaction and
just before (a window holds only the cleaned leads of its own client and month), so the
check goes, as ``0005`` and ``0017`` did for the other pipeline tables. The column keeps a
comment saying where it points.

Revision ID: 0018_window_leads_no_cascade
Revises: 0017_upload_tables_no_fk
"""

from alembic import op

revision = "0018_window_leads_no_cascade"
down_revision = "0017_upload_tables_no_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE window_leads DROP CONSTRAINT window_leads_cleaned_lead_id_fkey;
        COMMENT ON COLUMN window_leads.cleaned_lead_id IS
            'cleaned_leads.id (no FK, for upload speed: PT2 deletes a client-month''s window '
            'rows before its cleaned leads)';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        COMMENT ON COLUMN window_leads.cleaned_lead_id IS NULL;
        DELETE FROM window_leads wl
         WHERE NOT EXISTS (SELECT 1 FROM cleaned_leads c WHERE c.id = wl.cleaned_lead_id);
        ALTER TABLE window_leads
            ADD CONSTRAINT window_leads_cleaned_lead_id_fkey FOREIGN KEY (cleaned_lead_id)
                REFERENCES cleaned_leads (id) ON DELETE CASCADE;
        """
    )
