"""The operations console: a server-rendered web app on the orchestrator's database.

``orchestrator dashboard`` serves it (:mod:`orchestrator._dashboard.server`); the app itself
is built by :func:`orchestrator._dashboard.app.create_app`. Only the page types are imported
here, so a domain can declare its pages without loading the web stack.
"""

from orchestrator._dashboard.pages import (
    ActionRefused,
    ActionResult,
    DashboardAction,
    DashboardPage,
    PageNotFound,
)

__all__ = ["ActionRefused", "ActionResult", "DashboardAction", "DashboardPage", "PageNotFound"]
