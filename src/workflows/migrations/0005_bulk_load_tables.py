"""raw_leads and cleaned_leads without per-row foreign-key checks, for bulk loads.

``python -m bench --only pipeline`` showed PT1's move of staged rows into ``raw_leads`` spending
about half its time in the two foreign-key triggers fired for every row (client and file);
PT2's COPY into ``cleaned_leads`` pays the same for client and raw lead. Every parent row is
written or read by the same workflow in the same transaction just before, so the checks
protect nothing in practice. ``window_leads`` keeps its cascade from ``cleaned_leads``.

Revision ID: 0005_bulk_load_tables
Revises: 0004_status_at_scale
"""

from alembic import op

revision = "0005_bulk_load_tables"
down_revision = "0004_status_at_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE raw_leads
            DROP CONSTRAINT raw_leads_client_id_fkey,
            DROP CONSTRAINT raw_leads_file_id_fkey;
        ALTER TABLE cleaned_leads
            DROP CONSTRAINT cleaned_leads_client_id_fkey,
            DROP CONSTRAINT cleaned_leads_raw_lead_id_fkey;
        COMMENT ON COLUMN raw_leads.file_id IS
            'cole_files.id (written by PT1 in the same transaction; no FK, for load speed)';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE raw_leads
            ADD CONSTRAINT raw_leads_client_id_fkey FOREIGN KEY (client_id) REFERENCES clients (id),
            ADD CONSTRAINT raw_leads_file_id_fkey FOREIGN KEY (file_id) REFERENCES cole_files (id);
        ALTER TABLE cleaned_leads
            ADD CONSTRAINT cleaned_leads_client_id_fkey
                FOREIGN KEY (client_id) REFERENCES clients (id),
            ADD CONSTRAINT cleaned_leads_raw_lead_id_fkey
                FOREIGN KEY (raw_lead_id) REFERENCES raw_leads (id);
        """
    )
