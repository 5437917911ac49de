"""PT1 and PT2 run their row rules in PostgreSQL; the dedupe key becomes SHA-256 based.

PT1 lets PostgreSQL parse the CSV and compute each row's ZIP and dedupe key, and PT2 applies
its cleaning rules in one ``INSERT ... SELECT``, both with the expressions of
:mod:`workflows.sql_rules`. This revision adds the one rule those need as a function,
``lead_strip_tags`` (markup removal repeats until nothing changes, which needs a loop), and
changes the dedupe key from SHA-1 to the first 40 hex digits of SHA-256 of the same material:
PostgreSQL has ``sha256()`` built in, SHA-1 only through the pgcrypto extension. Existing
``raw_leads`` and ``cleaned_leads`` keys are recomputed, so a month pulled before the change
still deduplicates against a re-pull after it (rows with non-ASCII text by the Python rule).

Revision ID: 0013_ingest_functions
Revises: 0012_throughput
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_ingest_functions"
down_revision = "0012_throughput"
branch_labels = None
depends_on = None

_REKEY_BATCH = 10_000


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION lead_strip_tags(value text) RETURNS text
        LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
        DECLARE
            previous text;
        BEGIN
            LOOP
                previous := value;
                value := regexp_replace(value, '<[^<>]*>', '', 'g');
                EXIT WHEN value IS NOT DISTINCT FROM previous;
            END LOOP;
            RETURN replace(replace(value, '<', ''), '>', '');
        END
        $$;
        COMMENT ON FUNCTION lead_strip_tags(text) IS
            'workflows.cell_safety.strip_markup before its strip(): tags removed until none is'
            ' left, then stray angle brackets';
        """
    )
    if op.get_context().as_sql:
        _rekey_offline()
    else:
        _rekey(op.get_bind())


def downgrade() -> None:
    op.execute("DROP FUNCTION lead_strip_tags(text)")


def _rekey_offline() -> None:
    """``alembic upgrade --sql`` (a script, usually for an empty database): the ASCII rows
    only, which SQL can key; a script cannot run the Python rule, so rows with non-ASCII text
    keep their old key (migrate online, ``orchestrator migrate``, where such rows exist)."""
    from workflows import sql_rules

    columns = ("first_name", "last_name", "address_1", "coalesce(zip5, zip)")
    ascii_row = sql_rules.is_ascii(f"concat({', '.join(columns)})")
    op.execute(
        f"UPDATE raw_leads SET dedupe_key = {sql_rules.dedupe_key(*columns)} WHERE {ascii_row}"  # noqa: S608
    )
    op.execute(
        "UPDATE cleaned_leads c SET dedupe_key = r.dedupe_key"
        " FROM raw_leads r WHERE r.id = c.raw_lead_id AND c.dedupe_key <> r.dedupe_key"
    )


def _rekey(bind: sa.engine.Connection) -> None:
    """Recompute the stored dedupe keys with the SHA-256 key (see the module docstring)."""
    from workflows import sql_rules
    from workflows.formatting import dedupe_key

    columns = ("first_name", "last_name", "address_1", "coalesce(zip5, zip)")
    ascii_row = sql_rules.is_ascii(f"concat({', '.join(columns)})")
    bind.exec_driver_sql(
        f"UPDATE raw_leads SET dedupe_key = {sql_rules.dedupe_key(*columns)} WHERE {ascii_row}"  # noqa: S608
    )
    rows = bind.exec_driver_sql(
        f"SELECT id, {', '.join(columns)} FROM raw_leads WHERE NOT {ascii_row} ORDER BY id"  # noqa: S608
    ).fetchall()
    for start in range(0, len(rows), _REKEY_BATCH):
        batch = rows[start : start + _REKEY_BATCH]
        bind.execute(
            sa.text(
                "UPDATE raw_leads r SET dedupe_key = k.key"
                " FROM unnest(CAST(:ids AS bigint[]), CAST(:keys AS text[])) AS k (id, key)"
                " WHERE r.id = k.id"
            ),
            {"ids": [r[0] for r in batch], "keys": [dedupe_key(*r[1:]) for r in batch]},
        )
    bind.exec_driver_sql(
        """
        UPDATE cleaned_leads c SET dedupe_key = r.dedupe_key
          FROM raw_leads r WHERE r.id = c.raw_lead_id AND c.dedupe_key <> r.dedupe_key
        """
    )
