"""The pipeline's own settings, read like the engine's (``ORCHESTRATOR_*`` and ``.env``).

:class:`PipelineSettings` extends :class:`orchestrator.Settings`; the catalog declares it as
the plugin's ``SETTINGS`` so ``orchestrator.load_settings()`` returns one object holding both.
Workflows read it with :func:`pipeline_settings`::

    settings = pipeline_settings(ctx.settings)
    inbox = settings.cole_inbox
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import Field, SecretStr

from orchestrator import Duration, Settings


class PipelineSettings(Settings):
    """Cole inbox, Slack, Debounce, Clay and EmailBison settings of the PT1-PT5 pipeline."""

    cole_inbox: Path = Field(
        default=Path("cole_inbox"), description="Folder of Cole exports, one subfolder a client."
    )
    slack_webhook_url: SecretStr | None = None
    debounce_api_key: SecretStr | None = None
    debounce_url: str = "https://api.debounce.io/v1/"
    clay_webhook_url: SecretStr | None = None
    clay_webhook_auth: SecretStr | None = None
    emailbison_rate_limit: float | None = Field(default=None, gt=0)
    emailbison_timeout: Duration = Field(default=30.0, gt=0, le=600)
    emailbison_allow_http_loopback: bool = Field(
        default=False,
        description="Let clients use plain http to 127.0.0.1/localhost/::1 (local stand-ins "
        "in tests and the demo); otherwise EmailBison URLs must be https.",
    )
    secrets_dir: Path | None = Field(
        default=None, description="Directory of secret files named after their key env var."
    )

    #: Read by the demo (``orchestrator demo``), not a setting of the pipeline itself.
    other_variables: ClassVar[frozenset[str]] = frozenset({"DEMO_DATABASE"})


def pipeline_settings(settings: Settings) -> PipelineSettings:
    """The pipeline's view of ``settings``.

    Settings built by :func:`orchestrator.load_settings` already are :class:`PipelineSettings`;
    engine-only settings (built directly) are extended with the pipeline's values read from
    the environment, keeping every engine value as given.
    """
    if isinstance(settings, PipelineSettings) or not isinstance(settings, Settings):
        pipeline: PipelineSettings = cast(Any, settings)  # ours, or a test's stand-in
        return pipeline
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    return PipelineSettings(**values)


def secrets(settings: Settings) -> Iterable[SecretStr | None]:
    """The pipeline's secret settings, for the engine's log and error scrubber."""
    pipeline = pipeline_settings(settings)
    return [
        pipeline.slack_webhook_url,
        pipeline.debounce_api_key,
        pipeline.clay_webhook_url,
        pipeline.clay_webhook_auth,
    ]
