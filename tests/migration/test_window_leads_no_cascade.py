"""Migration 0018: window_leads loses its check on cleaned_leads (PT2 deletes a month's window
rows itself), and gets it back on downgrade."""

from __future__ import annotations

import psycopg
from alembic import command

from orchestrator._migrate import alembic_config
from tests.migration.test_upload_tables import _foreign_keys, _seed

BEFORE, AFTER = "0017_upload_tables_no_fk", "0018_window_leads_no_cascade"
_KEY = "window_leads_cleaned_lead_id_fkey"


def test_the_check_goes_and_downgrade_restores_it_without_orphans(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    config = alembic_config(url)
    command.upgrade(config, BEFORE)
    with psycopg.connect(url, autocommit=True) as conn:
        _seed(conn)
        assert _foreign_keys(conn, ("window_leads",)) == {_KEY}

    command.upgrade(config, AFTER)
    with psycopg.connect(url, autocommit=True) as conn:
        assert _foreign_keys(conn, ("window_leads",)) == set()
        # A window row may now point at a cleaned lead that is not there (yet) ...
        conn.execute(
            "INSERT INTO window_leads (window_id, cleaned_lead_id, email, segment)"
            " VALUES (1, 99, 'bob@x.example', 'standard')"
        )
        # ... and deleting cleaned leads no longer takes their window rows with them.
        conn.execute("DELETE FROM cleaned_leads WHERE id = 1")
        assert conn.execute("SELECT count(*) FROM window_leads").fetchone() == (2,)

    command.downgrade(config, BEFORE)
    with psycopg.connect(url, autocommit=True) as conn:
        assert _foreign_keys(conn, ("window_leads",)) == {_KEY}
        # rows pointing at no cleaned lead were removed so that the check could come back
        assert conn.execute("SELECT count(*) FROM window_leads").fetchone() == (0,)
