"""Which shared rate limit a provider call draws from, and at what rate.

The agency runs every client's month on the same day against shared providers: one
EmailBison instance hosts a workspace per client, one Debounce account checks every email.
Their limits are the instance's and the account's, not a client's or a worker's, so each is
one key of the engine's shared limits (``ctx.rate_limit``, kept in PostgreSQL):

* ``emailbison:<origin>`` (e.g. ``emailbison:https://bison.example``): every workspace on
  the instance, PT4 and PT5 alike. Rate ``ORCHESTRATOR_EMAILBISON_RATE_LIMIT``, or the
  instance's entry in ``ORCHESTRATOR_EMAILBISON_RATE_LIMITS`` (JSON, by origin); burst
  ``ORCHESTRATOR_EMAILBISON_RATE_BURST``.
* ``debounce``: the account. ``ORCHESTRATOR_DEBOUNCE_RATE_LIMIT`` and ``..._RATE_BURST``.

No rate configured means no limit (``None``): requests go as fast as the workflow's own
concurrency lets them. Example::

    async with emailbison_api(client, ctx.settings, ctx.http_hooks,
                              rate_limit=emailbison_limit(ctx, client.emailbison_url)) as api:
        ...
"""

from __future__ import annotations

from orchestrator import RateLimit, WorkflowContext
from workflows._http import instance_origin
from workflows.settings import PipelineSettings, pipeline_settings

DEBOUNCE_KEY = "debounce"


def emailbison_key(url: str) -> str:
    """The shared limit of the instance serving ``url``.

    >>> emailbison_key("https://Bison.Example/")
    'emailbison:https://bison.example'
    """
    return f"emailbison:{instance_origin(url)}"


def emailbison_rate(settings: PipelineSettings, url: str) -> float | None:
    """Requests a second allowed to the instance of ``url``: its override, else the default."""
    origin = instance_origin(url)
    for configured, rate in settings.emailbison_rate_limits.items():
        if instance_origin(configured) == origin:
            return rate
    return settings.emailbison_rate_limit


def emailbison_limit(ctx: WorkflowContext, url: str | None) -> RateLimit | None:
    """The shared limit for requests to ``url``'s instance, or ``None`` if none is set."""
    if url is None:
        return None
    settings = pipeline_settings(ctx.settings)
    rate = emailbison_rate(settings, url)
    if rate is None:
        return None
    return ctx.rate_limit(emailbison_key(url), rate=rate, burst=settings.emailbison_rate_burst)


def debounce_limit(ctx: WorkflowContext) -> RateLimit | None:
    """The Debounce account's shared limit, or ``None`` if none is set."""
    settings = pipeline_settings(ctx.settings)
    if settings.debounce_rate_limit is None:
        return None
    return ctx.rate_limit(
        DEBOUNCE_KEY, rate=settings.debounce_rate_limit, burst=settings.debounce_rate_burst
    )
