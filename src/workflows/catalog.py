"""The workflows and schedules the orchestrator runs by default (filled in by PT1-PT5)."""

from __future__ import annotations

from typing import Any

from orchestrator.registry import Workflow
from orchestrator.schedules import Schedule

WORKFLOWS: list[Workflow[Any]] = []
SCHEDULES: list[Schedule] = []
