"""SQL versions of the Cole row rules, so PT1 and PT2 run set-based inside PostgreSQL.

PT1 lets PostgreSQL parse the CSV and compute each row's ZIP and dedupe key; PT2 applies its
cleaning rules in one ``INSERT ... SELECT``. The functions here are ports of
:mod:`workflows.formatting` and :mod:`workflows.cell_safety` (the Python stays the
specification; ``tests/unit/workflows/test_sql_rules.py`` proves they agree on generated
rows). They are exact for ASCII text only: Python's Unicode case folding, accent stripping,
``\\d`` and ``\\s`` have no exact PostgreSQL counterpart, so the workflows hand rows holding
non-ASCII text to the Python rules (a few per export) and use these for the rest.

The dedupe key changes from SHA-1 to the first 40 hex digits of SHA-256 of the same
material (PostgreSQL has ``sha256()`` built in, SHA-1 only through pgcrypto); existing
``raw_leads`` and ``cleaned_leads`` keys are recomputed here, so a month pulled before the
change still deduplicates against a re-pull after it.

Revision ID: 0011_ingest_functions
Revises: 0010_fencing_pipeline
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_ingest_functions"
down_revision = "0010_fencing_pipeline"
branch_labels = None
depends_on = None

# Python's str.isspace() characters (str.strip() and \s), as a PostgreSQL E'' string.
_ALL_SPACE = (
    r"E'\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004"
    r"\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'"
)
# The ASCII ones, as a regex bracket body (the functions below only see ASCII text).
_SPACE_RE = r"\t\n\v\f\r\x1c-\x1f "
_ASCII_SPACE = r"E'\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f '"
_ABBREVIATIONS = {
    "street": "st", "avenue": "ave", "road": "rd", "drive": "dr", "lane": "ln",
    "boulevard": "blvd", "court": "ct", "place": "pl", "terrace": "ter", "circle": "cir",
    "highway": "hwy", "parkway": "pkwy", "north": "n", "south": "s", "east": "e", "west": "w",
    "apartment": "apt", "suite": "ste",
}  # fmt: skip


def _abbreviated(words: str) -> str:
    """``words`` (single-spaced) with every whole-word abbreviation replaced: each word is
    padded by its own spaces, so adjacent words are replaced too."""
    expr = f"(' ' || replace({words}, ' ', '  ') || ' ')"
    for long, short in _ABBREVIATIONS.items():
        expr = f"replace({expr}, ' {long} ', ' {short} ')"
    return f"btrim(replace({expr}, '  ', ' '))"


FUNCTIONS = rf"""
CREATE FUNCTION lead_cell(cell text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN btrim(cell, {_ALL_SPACE}) = '' THEN NULL ELSE cell END;
COMMENT ON FUNCTION lead_cell(text) IS
    'NULL for a cell that is empty or only whitespace (workflows.cole.copy_records)';

CREATE FUNCTION lead_is_ascii(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN octet_length(value) = char_length(value);
COMMENT ON FUNCTION lead_is_ascii(text) IS
    'whether the lead_* rules are exact for this text (NULL for NULL)';

CREATE FUNCTION lead_zip5(zip text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(lpad(coalesce(
    substring(btrim(zip, {_ASCII_SPACE}) FROM '^([0-9]{{5}})[0-9]{{4}}$'),
    substring(btrim(zip, {_ASCII_SPACE})
              FROM '^([0-9]{{3,5}})(?:\.0+|[-{_SPACE_RE}][0-9]{{4}})?$')), 5, '0'), '00000');
COMMENT ON FUNCTION lead_zip5(text) IS 'workflows.formatting.normalize_zip, ASCII text';

CREATE FUNCTION lead_key_part(part text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN {
    _abbreviated(
        "btrim(regexp_replace(replace(replace(lower(coalesce(part, '')), '''', ''), '&',"
        " ' and '), '[^a-z0-9]+', ' ', 'g'))"
    )
};
COMMENT ON FUNCTION lead_key_part(text) IS
    'workflows.formatting._key_part (one dedupe key part), ASCII text';

CREATE FUNCTION lead_dedupe_key(first_name text, last_name text, address_1 text, zip text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN left(encode(sha256(convert_to(
    lead_key_part(first_name) || '|' || lead_key_part(last_name) || '|'
    || lead_key_part(address_1) || '|'
    || coalesce(lead_zip5(zip), regexp_replace(coalesce(zip, ''), '[^0-9]', '', 'g')),
    'UTF8')), 'hex'), 40);
COMMENT ON FUNCTION lead_dedupe_key(text, text, text, text) IS
    'workflows.formatting.dedupe_key, ASCII text';
"""

DROP = """
DROP FUNCTION IF EXISTS lead_dedupe_key(text, text, text, text);
DROP FUNCTION IF EXISTS lead_key_part(text);
DROP FUNCTION IF EXISTS lead_zip5(text);
DROP FUNCTION IF EXISTS lead_is_ascii(text);
DROP FUNCTION IF EXISTS lead_cell(text);
"""


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(FUNCTIONS)
    _rekey(bind)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DROP)


def _rekey(bind: sa.engine.Connection) -> None:
    """Recompute the stored dedupe keys with the SHA-256 key (see the module docstring)."""
    from workflows.formatting import dedupe_key

    bind.exec_driver_sql(
        """
        UPDATE raw_leads SET dedupe_key = lead_dedupe_key(first_name, last_name, address_1,
                                                          coalesce(zip5, zip))
         WHERE lead_is_ascii(concat(first_name, last_name, address_1, zip5, zip))
        """
    )
    rows = bind.exec_driver_sql(
        """
        SELECT id, first_name, last_name, address_1, coalesce(zip5, zip) FROM raw_leads
         WHERE NOT lead_is_ascii(concat(first_name, last_name, address_1, zip5, zip))
        """
    ).fetchall()
    for row_id, first, last, address, zip_code in rows:
        bind.execute(
            sa.text("UPDATE raw_leads SET dedupe_key = :key WHERE id = :id"),
            {"key": dedupe_key(first, last, address, zip_code), "id": row_id},
        )
    bind.exec_driver_sql(
        """
        UPDATE cleaned_leads c SET dedupe_key = r.dedupe_key
          FROM raw_leads r WHERE r.id = c.raw_lead_id AND c.dedupe_key <> r.dedupe_key
        """
    )
