"""Domain commands of the ``orchestrator`` CLI (clients, run-month, run-week, demo)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the domain sub-commands on the ``orchestrator`` parser."""
