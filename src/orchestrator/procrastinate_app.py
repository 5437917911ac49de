"""The procrastinate App for procrastinate's own CLI.

``procrastinate --app=orchestrator.procrastinate_app.app worker`` runs the same tasks as
``orchestrator worker`` (workflows, crash recovery, pruning, schedules). The database is only
resolved when the App is opened. Prefer ``orchestrator worker``: it also restarts the
procrastinate worker after a database outage and runs a recovery sweep at start-up.
"""

from __future__ import annotations

import procrastinate

from orchestrator._errors import OrchestratorError
from orchestrator._orchestrator import Orchestrator

try:
    app: procrastinate.App = Orchestrator(worker=True).app
except OrchestratorError as exc:
    raise SystemExit(f"orchestrator: {exc}") from None
