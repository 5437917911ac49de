"""The workflows and schedules the orchestrator runs by default: PT1-PT5 and their calendar."""

from __future__ import annotations

from typing import Any

from orchestrator.alerts import AlertHook
from orchestrator.dashboard.pages import DashboardPage
from orchestrator.registry import Workflow
from orchestrator.schedules import Schedule
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

WORKFLOWS: list[Workflow[Any]] = [
    pt1_cole_pull.WORKFLOW,
    pt2_clay_format.WORKFLOW,
    pt3_gap_analysis.WORKFLOW,
    pt4_emailbison_upload.WORKFLOW,
    pt5_evergreen_update.WORKFLOW,
]
SCHEDULES: list[Schedule] = list(schedules.SCHEDULES)
#: Console pages (``orchestrator dashboard``): the pipeline board and a client's history.
DASHBOARD_PAGES: list[DashboardPage] = list(board.PAGES)
#: Called by the engine's alert sweep for each new alert (failed job, retry storm, stalled worker).
ALERT_HOOKS: list[AlertHook] = [alerts.slack_alert]
