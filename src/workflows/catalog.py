"""The pipeline plugin: what this deployment adds to the orchestrator engine.

Found through the ``orchestrator.plugins`` entry point (``pyproject.toml``); see
:mod:`orchestrator._plugins` for what each name means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator import AlertHook, DashboardPage, Schedule, Workflow
from workflows import (
    alerts,
    board,
    pt1_cole_pull,
    pt2_clay_format,
    pt3_gap_analysis,
    pt4_emailbison_upload,
    pt5_evergreen_update,
    schedules,
)
from workflows.commands import add_commands
from workflows.settings import PipelineSettings, secrets

WORKFLOWS: list[Workflow[Any]] = [
    pt1_cole_pull.WORKFLOW,
    pt2_clay_format.WORKFLOW,
    pt3_gap_analysis.WORKFLOW,
    pt4_emailbison_upload.WORKFLOW,
    pt5_evergreen_update.WORKFLOW,
]
SCHEDULES: list[Schedule] = list(schedules.SCHEDULES)
COMMANDS = add_commands
SETTINGS = PipelineSettings
SECRETS = secrets
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Console pages (``orchestrator dashboard``): the pipeline board and a client's history.
DASHBOARD_PAGES: list[DashboardPage] = list(board.PAGES)
#: Called by the engine's alert sweep for each new alert (failed job, retry storm, stalled worker).
ALERT_HOOKS: list[AlertHook] = [alerts.slack_alert]
#: Workers read clients but never change them: a client's EmailBison URL and key name decide
#: where its homeowners' data goes, so only an operator (the owner role) writes them.
WORKER_PRIVILEGES = {"clients": ("SELECT",)}
