"""PT4's tables without per-row foreign-key checks on parents written in the same job.

``pg_stat_statements`` over a PT4 of 100,000 leads (PostgreSQL 15) put the database's largest
costs in two statements: recording each chunk's answer in ``uploaded_leads`` (20 ms for 500
leads, of which EXPLAIN ANALYZE gives 8.2 ms to the two foreign-key triggers, client and
window, fired once per row) and filling a window's ``window_leads`` (28 µs a lead, with two
triggers a row: window and cleaned lead). At twenty chunks a second that is a fifth of a core
checking parents that the same job has just read or written: the client row PT4 loaded, the
window it upserted. Nothing deletes clients or windows, so, as migration ``0005`` did for
``raw_leads`` and ``cleaned_leads``, these checks go:

- ``uploaded_leads``: client and window;
- ``window_leads``: window. Its reference to ``cleaned_leads`` stays: PT2 deletes a month's
  cleaned leads when it runs again, and the cascade removes their window rows.

Revision ID: 0017_upload_tables_no_fk
Revises: 0016_bytewise_dedupe_keys
"""

from alembic import op

revision = "0017_upload_tables_no_fk"
down_revision = "0016_bytewise_dedupe_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE uploaded_leads
            DROP CONSTRAINT uploaded_leads_client_id_fkey,
            DROP CONSTRAINT uploaded_leads_window_id_fkey;
        ALTER TABLE window_leads
            DROP CONSTRAINT window_leads_window_id_fkey;
        COMMENT ON COLUMN uploaded_leads.window_id IS
            'renewal_windows.id (written by PT4 in the same job; no FK, for upload speed)';
        COMMENT ON COLUMN window_leads.window_id IS
            'renewal_windows.id (written by PT4 in the same job; no FK, for upload speed)';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        COMMENT ON COLUMN uploaded_leads.window_id IS NULL;
        COMMENT ON COLUMN window_leads.window_id IS NULL;
        ALTER TABLE uploaded_leads
            ADD CONSTRAINT uploaded_leads_client_id_fkey
                FOREIGN KEY (client_id) REFERENCES clients (id),
            ADD CONSTRAINT uploaded_leads_window_id_fkey
                FOREIGN KEY (window_id) REFERENCES renewal_windows (id);
        ALTER TABLE window_leads
            ADD CONSTRAINT window_leads_window_id_fkey
                FOREIGN KEY (window_id) REFERENCES renewal_windows (id);
        """
    )
