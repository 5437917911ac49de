"""Worker processes that scale: change notifications a worker's session can switch off.

``orchestrator_changed`` (migration 0007) was sent by statement triggers from every
transaction that wrote ``agent_runs`` or a job's status. PostgreSQL serialises the commits of
notifying transactions on one lock held through the WAL flush, so every worker process's job
transactions (four per job) queued behind each other's disk flushes: measured with
``python -m bench --only throughput``, four processes ran at about half the rate of bare
procrastinate, with backends waiting on that lock (``wait_event`` ``object``) most of the time.

The triggers now fire only when the session setting ``orchestrator.notify_changes`` is not
``off``. Worker processes set it on their pooled connections and send the notification
themselves, at most once per quarter second per process (``orchestrator._changes``); every
other writer (CLI, console actions, SQL typed by a person) notifies as before.

Revision ID: 0012_throughput
Revises: 0011_console_at_scale
"""

from alembic import op

revision = "0012_throughput"
down_revision = "0011_console_at_scale"
branch_labels = None
depends_on = None

TRIGGERS = """
CREATE TRIGGER orchestrator_runs_changed
    AFTER INSERT OR UPDATE ON agent_runs
    FOR EACH STATEMENT {when}EXECUTE FUNCTION orchestrator_notify_change();
CREATE TRIGGER orchestrator_jobs_changed
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH STATEMENT {when}EXECUTE FUNCTION orchestrator_notify_change();
"""
DROP = """
DROP TRIGGER orchestrator_runs_changed ON agent_runs;
DROP TRIGGER orchestrator_jobs_changed ON procrastinate_jobs;
"""
WHEN = "WHEN (current_setting('orchestrator.notify_changes', true) IS DISTINCT FROM 'off')\n    "


def upgrade() -> None:
    op.execute(DROP + TRIGGERS.format(when=WHEN))


def downgrade() -> None:
    op.execute(DROP + TRIGGERS.format(when=""))
