"""The job-args depth check costs a few microseconds instead of ~95 per row.

``orchestrator_job_args_depth`` (0006) called a PL/pgSQL function that walks the arguments
level by level, on every insert *and every update* of a job (PostgreSQL evaluates a table's
CHECK constraints on each new row version): about 95 µs a row on the bench machine, which
made ``enqueue_many`` run at a quarter of procrastinate's batch insert and added to every
fetch and finish. Objects and arrays nest deeper than 32 levels only if some value sits at
level 32 or below (the arguments themselves at level 0), so the constraint first asks
PostgreSQL's own JSON path engine, in C, whether anything exists at level 32
(``strict $.**{32}``, a walk that goes no deeper: about 0.5 µs for a usual job), and calls the
exact walk only for a document that passes that test. The same verdict, from a cheap test
for nearly every job.

Re-added ``NOT VALID`` (rows already stored passed the old check); tests insert a document
one level too deep, one exactly at the limit, a very deep one and a wide one.

Revision ID: 0015_cheap_args_depth_check
Revises: 0014_rate_limits
"""

from alembic import op

revision = "0015_cheap_args_depth_check"
down_revision = "0014_rate_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE procrastinate_jobs
            DROP CONSTRAINT orchestrator_job_args_depth,
            ADD CONSTRAINT orchestrator_job_args_depth
                CHECK (NOT jsonb_path_exists(args, 'strict $.**{32}')
                       OR NOT orchestrator_json_depth_exceeds(args, 32)) NOT VALID;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE procrastinate_jobs
            DROP CONSTRAINT orchestrator_job_args_depth,
            ADD CONSTRAINT orchestrator_job_args_depth
                CHECK (NOT orchestrator_json_depth_exceeds(args, 32)) NOT VALID;
        """
    )
