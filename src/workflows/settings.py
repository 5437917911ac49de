"""The pipeline's own settings, read like the engine's (``ORCHESTRATOR_*`` and ``.env``).

:class:`PipelineSettings` extends :class:`orchestrator.Settings`; the catalog declares it as
the plugin's ``SETTINGS`` so ``orchestrator.load_settings()`` returns one object holding both.
Workflows read it with :func:`pipeline_settings`::

    settings = pipeline_settings(ctx.settings)
    inbox = settings.cole_inbox
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import Field, SecretStr, field_validator

from orchestrator import Duration, Settings
from workflows._http import instance_origin


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
    debounce_rate_limit: float | None = Field(
        default=None,
        gt=0,
        description="Debounce checks a second for the whole account, shared by every worker "
        "(through PostgreSQL); unset: no limit.",
    )
    debounce_rate_burst: float = Field(default=1.0, ge=1, le=10_000)
    debounce_concurrency: int = Field(
        default=8, ge=1, le=64, description="Debounce checks in flight per PT2."
    )
    emailbison_rate_limit: float | None = Field(
        default=None,
        gt=0,
        description="Requests a second to one EmailBison instance, shared by every worker and "
        "every client on it (through PostgreSQL); unset: no limit.",
    )
    emailbison_rate_burst: float = Field(default=1.0, ge=1, le=10_000)
    emailbison_rate_limits: dict[str, float] = Field(
        default_factory=dict,
        description='Per-instance overrides of the rate, as JSON: {"https://bison.example": 50}.',
    )
    emailbison_concurrency: int = Field(
        default=16,
        ge=1,
        le=64,
        description=(
            "Chunk uploads in flight per PT4. Each holds its place from its intent to its "
            "recorded answer (answer time plus ~60 ms of bookkeeping), so 20/s at 0.3 s keeps "
            "about 8 busy; the rest wait for the rate limit and keep it used."
        ),
    )
    emailbison_timeout: Duration = Field(default=30.0, gt=0, le=600)
    emailbison_allow_http_loopback: bool = Field(
        default=False,
        description="Let clients use plain http to 127.0.0.1/localhost/::1 (local stand-ins "
        "in tests and the demo); otherwise EmailBison URLs must be https.",
    )

    @field_validator("emailbison_rate_limits")
    @classmethod
    def _rates_by_origin(cls, value: dict[str, float]) -> dict[str, float]:
        for url, rate in value.items():
            instance_origin(url)  # ValueError names the URL's form
            if not (rate > 0 and math.isfinite(rate)):
                raise ValueError(f"{url}: the rate must be a positive number, got {rate!r}")
        return value

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
