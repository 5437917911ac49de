"""Migration 0013 re-keys the stored dedupe keys (SHA-1 → SHA-256), ASCII and non-ASCII rows."""

from __future__ import annotations

import hashlib

import psycopg
from alembic import command

from orchestrator._migrate import alembic_config
from workflows.formatting import dedupe_key

PEOPLE = [
    ("John & Mary", "O'Neil", "12 Main Street", "2134"),
    ("José", "Peña", "4 Calle Señora", "78501"),
    (None, "Lee", None, None),
]


def test_upgrade_recomputes_raw_and_cleaned_keys(empty_database_url: str) -> None:
    url = empty_database_url
    command.upgrade(alembic_config(url), "0010_fencing_pipeline")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO clients (id, name, tier) VALUES (1, 'Rekey Agency', 100)")
        conn.execute(
            "INSERT INTO cole_files (id, client_id, month, file_name, sha256, encoding,"
            " row_count, bad_row_count, new_people) VALUES (1, 1, '2027-01-01', 'a.csv', 'x',"
            " 'utf-8', 3, 0, 3)"
        )
        for number, (first, last, address, zip_code) in enumerate(PEOPLE, start=2):
            old = hashlib.sha1(f"{first}{last}".encode(), usedforsecurity=False).hexdigest()
            conn.execute(
                "INSERT INTO raw_leads (id, client_id, month, file_id, row_number, first_name,"
                " last_name, address_1, zip, zip5, dedupe_key)"
                " VALUES (%s, 1, '2027-01-01', 1, %s, %s, %s, %s, %s, NULL, %s)",
                [number, number, first, last, address, zip_code, old],
            )
        conn.execute(
            "INSERT INTO cleaned_leads (client_id, month, raw_lead_id, dedupe_key, first_name,"
            " greeting_name, last_name, email, state, zip, home_value, purchase_date,"
            " readable_purchase_date, purchase_day, renewal_date, window_index, segment,"
            " email_check) SELECT 1, '2027-01-01', id, dedupe_key, 'x', 'x', 'x', 'x@y.com',"
            " 'TX', '75001', 1, '2020-01-01', 'January 1st', 1, '2027-01-01', 1, 'standard',"
            " 'syntax' FROM raw_leads WHERE id = 3"
        )

    command.upgrade(alembic_config(url), "head")

    with psycopg.connect(url) as conn:
        keys: dict[int, str] = dict(conn.execute("SELECT id, dedupe_key FROM raw_leads").fetchall())
        cleaned = conn.execute("SELECT dedupe_key FROM cleaned_leads").fetchone()
    expected = {n: dedupe_key(*person) for n, person in enumerate(PEOPLE, start=2)}
    assert keys == expected
    assert cleaned == (expected[3],)
