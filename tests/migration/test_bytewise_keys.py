"""Migration 0016: dedupe keys compare byte by byte, keys and uniqueness kept, reversible."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command

from orchestrator._migrate import alembic_config

KEYS = ("0" * 40, "a" * 40, "9f" * 20)


def _collations(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT table_name, collation_name FROM information_schema.columns"
        " WHERE column_name = 'dedupe_key' AND table_name IN ('raw_leads', 'cleaned_leads')"
    ).fetchall()
    return {str(table): None if collation is None else str(collation) for table, collation in rows}


def test_keys_survive_both_ways_and_stay_unique(empty_database_url: str) -> None:
    url = empty_database_url
    config = alembic_config(url)
    command.upgrade(config, "0015_cheap_args_depth_check")
    with psycopg.connect(url, autocommit=True) as conn:
        assert _collations(conn) == {"raw_leads": None, "cleaned_leads": None}
        conn.execute("INSERT INTO clients (id, name, tier) VALUES (1, 'Bytewise Agency', 100)")
        conn.execute(
            "INSERT INTO cole_files (id, client_id, month, file_name, sha256, encoding,"
            " row_count, bad_row_count, new_people) VALUES (1, 1, '2027-01-01', 'a.csv', 'x',"
            " 'utf-8', 3, 0, 3)"
        )
        for number, key in enumerate(KEYS, start=2):
            conn.execute(
                "INSERT INTO raw_leads (client_id, month, file_id, row_number, dedupe_key)"
                " VALUES (1, '2027-01-01', 1, %s, %s)",
                [number, key],
            )

    command.upgrade(config, "0016_bytewise_dedupe_keys")
    with psycopg.connect(url, autocommit=True) as conn:
        assert _collations(conn) == {"raw_leads": "C", "cleaned_leads": "C"}
        stored = [r[0] for r in conn.execute("SELECT dedupe_key FROM raw_leads ORDER BY id")]
        assert stored == list(KEYS)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO raw_leads (client_id, month, file_id, row_number, dedupe_key)"
                " VALUES (1, '2027-01-01', 1, 9, %s)",
                [KEYS[1]],
            )
        # PT1's conflict clause still finds the unique index.
        cursor = conn.execute(
            "INSERT INTO raw_leads (client_id, month, file_id, row_number, dedupe_key)"
            " VALUES (1, '2027-01-01', 1, 9, %s)"
            " ON CONFLICT (client_id, month, dedupe_key) DO NOTHING",
            [KEYS[2]],
        )
        assert cursor.rowcount == 0

    command.downgrade(config, "0015_cheap_args_depth_check")
    with psycopg.connect(url, autocommit=True) as conn:
        assert _collations(conn) == {"raw_leads": None, "cleaned_leads": None}
        stored = [r[0] for r in conn.execute("SELECT dedupe_key FROM raw_leads ORDER BY id")]
        assert stored == list(KEYS)
