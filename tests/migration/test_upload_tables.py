"""Migration 0017: PT4's tables lose their per-row parent checks, keep the cleaned-lead
cascade, and get them back on downgrade."""

from __future__ import annotations

import psycopg
from alembic import command

from orchestrator._migrate import alembic_config

BEFORE, AFTER = "0016_bytewise_dedupe_keys", "0017_upload_tables_no_fk"


def _foreign_keys(
    conn: psycopg.Connection[tuple[object, ...]],
    tables: tuple[str, ...] = ("uploaded_leads", "window_leads"),
) -> set[str]:
    rows = conn.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'f'"
        " AND conrelid::regclass::text = ANY (%s)",
        [list(tables)],
    ).fetchall()
    return {str(row[0]) for row in rows}


def _seed(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("INSERT INTO clients (id, name, tier) VALUES (1, 'Upload Agency', 100)")
    conn.execute(
        "INSERT INTO renewal_windows (id, client_id, month, window_index, start_date, end_date,"
        " upload_date, list_name) VALUES (1, 1, '2027-03-01', 1, '2027-03-01', '2027-03-07',"
        " '2027-01-01', 'March 1-7')"
    )
    conn.execute(
        "INSERT INTO raw_leads (id, client_id, month, file_id, row_number, dedupe_key)"
        " VALUES (1, 1, '2027-03-01', 1, 2, %s)",
        ["ab" * 20],
    )
    conn.execute(
        "INSERT INTO cleaned_leads (id, client_id, month, raw_lead_id, dedupe_key, first_name,"
        " greeting_name, last_name, email, state, zip, home_value, purchase_date,"
        " readable_purchase_date, purchase_day, renewal_date, window_index, segment,"
        " email_check) VALUES (1, 1, '2027-03-01', 1, %s, 'Ann', 'Ann', 'Lee', 'ann@x.example',"
        " 'TX', '75001', 250000, '2020-03-02', 'March 2nd', 2, '2027-03-02', 1, 'standard',"
        " 'syntax')",
        ["ab" * 20],
    )
    conn.execute(
        "INSERT INTO window_leads (window_id, cleaned_lead_id, email, segment)"
        " VALUES (1, 1, 'ann@x.example', 'standard')"
    )
    conn.execute(
        "INSERT INTO uploaded_leads (client_id, workspace, email, window_id, emailbison_lead_id,"
        " status) VALUES (1, 'https://bison.example', 'ann@x.example', 1, 7, 'uploaded')"
    )


def test_parent_checks_go_the_cascade_stays_and_downgrade_restores(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    config = alembic_config(url)
    command.upgrade(config, BEFORE)
    with psycopg.connect(url, autocommit=True) as conn:
        assert _foreign_keys(conn) == {
            "uploaded_leads_client_id_fkey",
            "uploaded_leads_window_id_fkey",
            "window_leads_window_id_fkey",
            "window_leads_cleaned_lead_id_fkey",
        }
        _seed(conn)

    command.upgrade(config, AFTER)
    with psycopg.connect(url, autocommit=True) as conn:
        assert _foreign_keys(conn) == {"window_leads_cleaned_lead_id_fkey"}
        # PT4's upsert of an answer still finds the primary key.
        cursor = conn.execute(
            "INSERT INTO uploaded_leads (client_id, workspace, email, window_id,"
            " emailbison_lead_id, status) VALUES (1, 'https://bison.example', 'ann@x.example',"
            " 1, 8, 'uploaded') ON CONFLICT (client_id, workspace, email)"
            " DO UPDATE SET emailbison_lead_id = EXCLUDED.emailbison_lead_id"
        )
        assert cursor.rowcount == 1
        # PT2 running again deletes the month's cleaned leads: their window rows go too.
        conn.execute("DELETE FROM cleaned_leads WHERE client_id = 1")
        assert conn.execute("SELECT count(*) FROM window_leads").fetchone() == (0,)
        assert conn.execute("SELECT emailbison_lead_id FROM uploaded_leads").fetchone() == (8,)

    command.downgrade(config, BEFORE)
    with psycopg.connect(url, autocommit=True) as conn:
        assert len(_foreign_keys(conn)) == 4
