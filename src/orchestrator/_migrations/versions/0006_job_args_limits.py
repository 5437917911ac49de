"""Job arguments that cannot crash a worker, and counters any worker role may keep.

- ``procrastinate_jobs`` gets CHECK constraints, so every path that inserts a job (our enqueue,
  ``procrastinate defer``, a plain INSERT) is held to the same limits: the arguments' JSON
  text at most 1,000,000 bytes and nested at most 32 levels (a job nested ~3,000 levels made
  procrastinate's fetch raise ``RecursionError`` in every worker), and ``attempts``, when
  given, an integer from 1 to 100. ``NOT VALID``: rows already stored are not re-checked.
- The counter triggers of 0004 become ``SECURITY DEFINER`` with a pinned ``search_path``: a
  worker role with DML rights on procrastinate's tables no longer needs write access to
  ``orchestrator_job_counts``.

Revision ID: 0006_job_args_limits
Revises: 0005_bulk_load_tables
"""

from alembic import op

revision = "0006_job_args_limits"
down_revision = "0005_bulk_load_tables"
branch_labels = None
depends_on = None

COUNTER_FUNCTIONS = (
    "orchestrator_count_job_change()",
    "orchestrator_count_job_rows()",
    "orchestrator_reset_job_counts()",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION orchestrator_json_depth_exceeds(value jsonb, max_depth integer)
            RETURNS boolean
            LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
            SET search_path = pg_catalog AS $$
        -- Level by level, carrying only containers, stopping as soon as the limit is passed:
        -- no recursion, so no stack to exhaust whatever the input.
        DECLARE
            level jsonb[] := ARRAY[value];
            depth integer := 0;
        BEGIN
            LOOP
                level := ARRAY(
                    SELECT child
                      FROM unnest(level) AS parent(v),
                           LATERAL (
                               SELECT e.value FROM jsonb_each(
                                   CASE WHEN jsonb_typeof(parent.v) = 'object'
                                        THEN parent.v ELSE '{}'::jsonb END) AS e
                               UNION ALL
                               SELECT a.value FROM jsonb_array_elements(
                                   CASE WHEN jsonb_typeof(parent.v) = 'array'
                                        THEN parent.v ELSE '[]'::jsonb END) AS a
                           ) AS children(child)
                     WHERE jsonb_typeof(child) IN ('object', 'array'));
                depth := depth + 1;
                IF depth > max_depth THEN
                    RETURN true;
                END IF;
                EXIT WHEN cardinality(level) = 0;
            END LOOP;
            RETURN false;
        END;
        $$;
        COMMENT ON FUNCTION orchestrator_json_depth_exceeds(jsonb, integer) IS
            'Whether a JSON value nests objects and arrays deeper than max_depth levels';

        ALTER TABLE procrastinate_jobs
            ADD CONSTRAINT orchestrator_job_args_size
                CHECK (octet_length(args::text) <= 1000000) NOT VALID,
            ADD CONSTRAINT orchestrator_job_args_depth
                CHECK (NOT orchestrator_json_depth_exceeds(args, 32)) NOT VALID,
            ADD CONSTRAINT orchestrator_job_attempts
                CHECK (NOT args ? 'attempts'
                       OR jsonb_typeof(args -> 'attempts') = 'null'
                       OR (jsonb_typeof(args -> 'attempts') = 'number'
                           AND (args ->> 'attempts')::numeric BETWEEN 1 AND 100
                           AND (args ->> 'attempts')::numeric % 1 = 0)) NOT VALID;
        """
    )
    for function in COUNTER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = public, pg_temp")


def downgrade() -> None:
    for function in COUNTER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SECURITY INVOKER RESET search_path")
    op.execute(
        """
        ALTER TABLE procrastinate_jobs
            DROP CONSTRAINT orchestrator_job_attempts,
            DROP CONSTRAINT orchestrator_job_args_depth,
            DROP CONSTRAINT orchestrator_job_args_size;
        DROP FUNCTION orchestrator_json_depth_exceeds(jsonb, integer);
        """
    )
