"""Plugins: what a deployment adds to the engine (workflows, schedules, commands, settings).

The engine knows no workflow by name. A plugin is a module found through the
``orchestrator.plugins`` entry point group (declared in the domain's ``pyproject.toml``) or
named in ``ORCHESTRATOR_WORKFLOW_MODULES``. Every attribute is optional:

``WORKFLOWS``       workflows to register (:class:`~orchestrator.Workflow`)
``SCHEDULES``       calendar starts (:class:`~orchestrator.Schedule`)
``COMMANDS``        ``add_commands(subparsers)`` adding sub-commands to the ``orchestrator`` CLI
``SETTINGS``        a :class:`~orchestrator.Settings` subclass with the plugin's own settings
``SECRETS``         ``secrets(settings) -> iterable`` of secret values for the log scrubber
``MIGRATIONS``      a directory of alembic revisions joining the one migration history
``DASHBOARD_PAGES`` pages the operations console adds (:class:`~orchestrator.DashboardPage`)
``ALERT_HOOKS``     ``async hook(alert, settings)`` called once per new alert (e.g. Slack)
==================  ========================================================================
=======
======================  ==========================================================================
``WORKFLOWS``           workflows to register (:class:`~orchestrator.Workflow`)
``SCHEDULES``           calendar starts (:class:`~orchestrator.Schedule`)
``COMMANDS``            ``add_commands(subparsers)`` adding sub-commands to the ``orchestrator`` CLI
``SETTINGS``            a :class:`~orchestrator.Settings` subclass with the plugin's own settings
``SECRETS``             ``secrets(settings) -> iterable`` of secret values for the log scrubber
``MIGRATIONS``          a directory of alembic revisions joining the one migration history
``DASHBOARD_PAGES``     pages the operations console adds (:class:`~orchestrator.DashboardPage`)
``ALERT_HOOKS``         ``async hook(alert, settings)`` called once per new alert (e.g. Slack)
``WORKER_PRIVILEGES``   ``{table: (privileges)}``: the worker role gets only these of SELECT,
                        INSERT, UPDATE, DELETE on these tables (``orchestrator roles``)
======================  ==========================================================================

Example ``pyproject.toml`` of a domain package::

    [project.entry-points."orchestrator.plugins"]
    pipeline = "my_domain.catalog"

Modules listed in ``ORCHESTRATOR_WORKFLOW_MODULES`` are imported after the entry points; a
``SETTINGS`` class there is not used (settings are read before those modules are known).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from orchestrator._errors import ConfigurationError

ENTRY_POINT_GROUP = "orchestrator.plugins"
MODULES_VARIABLE = "ORCHESTRATOR_WORKFLOW_MODULES"

AddCommands = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
SecretsOf = Callable[[Any], Iterable[Any]]


@dataclass(frozen=True)
class Plugin:
    """One plugin module's declarations."""

    name: str
    module: ModuleType

    def attribute(self, name: str, default: Any = None) -> Any:
        return getattr(self.module, name, default)

    @property
    def workflows(self) -> Sequence[Any]:
        return tuple(self.attribute("WORKFLOWS", ()))

    @property
    def schedules(self) -> Sequence[Any]:
        return tuple(self.attribute("SCHEDULES", ()))

    @property
    def add_commands(self) -> AddCommands | None:
        commands: AddCommands | None = self.attribute("COMMANDS")
        return commands

    @property
    def settings_class(self) -> type[Any] | None:
        settings_class: type[Any] | None = self.attribute("SETTINGS")
        return settings_class

    @property
    def secrets(self) -> SecretsOf | None:
        secrets: SecretsOf | None = self.attribute("SECRETS")
        return secrets

    @property
    def worker_privileges(self) -> Mapping[str, Sequence[str]]:
        declared: Mapping[str, Sequence[str]] = self.attribute("WORKER_PRIVILEGES", {})
        return declared

    @property
    def migrations(self) -> Path | None:
        location = self.attribute("MIGRATIONS")
        return None if location is None else Path(location)


def _import(module_name: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"invalid {origin}: cannot import {module_name!r}: {exc}"
        ) from None


@functools.cache
def entry_point_plugins() -> tuple[Plugin, ...]:
    """Plugins installed through the ``orchestrator.plugins`` entry point group."""
    found: list[Plugin] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        module = _import(point.value, f"entry point {point.name!r} ({ENTRY_POINT_GROUP})")
        found.append(Plugin(point.name, module))
    return tuple(found)


def module_plugins(modules: str | None = None) -> tuple[Plugin, ...]:
    """Plugins named in ``ORCHESTRATOR_WORKFLOW_MODULES`` (comma-separated)."""
    text = os.environ.get(MODULES_VARIABLE, "") if modules is None else modules
    names = [m.strip() for m in text.split(",") if m.strip()]
    return tuple(Plugin(name, _import(name, f"setting {MODULES_VARIABLE}")) for name in names)


def plugins(modules: str | None = None) -> tuple[Plugin, ...]:
    """Every plugin: the installed ones, then those of ``ORCHESTRATOR_WORKFLOW_MODULES``."""
    seen: set[str] = set()
    result: list[Plugin] = []
    for plugin in (*entry_point_plugins(), *module_plugins(modules)):
        if plugin.module.__name__ not in seen:
            seen.add(plugin.module.__name__)
            result.append(plugin)
    return tuple(result)


def load_registry(workflow_modules: str | None = None) -> tuple[Any, list[Any]]:
    """The workflows and schedules of every plugin, as a registry and a list."""
    from orchestrator._registry import Registry

    registry = Registry()
    schedules: list[Any] = []
    for plugin in plugins(workflow_modules):
        for workflow in plugin.workflows:
            registry.register(workflow)
        schedules.extend(plugin.schedules)
    return registry, schedules


def plugin_secrets(settings: Any) -> list[Any]:
    """Every secret value the plugins declare for these settings."""
    values: list[Any] = []
    for plugin in plugins(getattr(settings, "workflow_modules", None)):
        if plugin.secrets is not None:
            values.extend(plugin.secrets(settings))
    return values
