"""Where a client's EmailBison key is read from: the name stored on the client, looked up in
order in

1. the process environment (``export EMAILBISON_KEY_ACME=...``),
2. the ``.env`` file the settings read (the working directory's ``.env`` by default),
3. ``ORCHESTRATOR_SECRETS_DIR/<NAME>`` (a file holding the key, e.g. a mounted secret).

The first non-empty value wins. The key itself is never stored, logged or shown; errors name
the variable and the places looked at.

Example::

    value, places = read_client_key("EMAILBISON_KEY_ACME", settings)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.settings import PipelineSettings


def env_file_of(settings: PipelineSettings) -> Path | None:
    """The ``.env`` file these settings read (``None`` when they read none)."""
    env_file: Any = type(settings).model_config.get("env_file")
    if isinstance(env_file, list | tuple):
        env_file = env_file[0] if env_file else None
    return None if env_file is None else Path(env_file)


def read_client_key(name: str, settings: PipelineSettings) -> tuple[str | None, list[str]]:
    """The key held under ``name`` (``None`` if nowhere), and the places looked at."""
    import os

    places = [f"environment variable {name}"]
    value = os.environ.get(name, "").strip()
    if value:
        return value, places
    env_file = env_file_of(settings)
    if env_file is not None:
        places.append(f".env file {env_file.resolve()}")
        if env_file.is_file():
            from dotenv import dotenv_values

            value = (dotenv_values(env_file).get(name) or "").strip()
            if value:
                return value, places
    if settings.secrets_dir is not None:
        path = Path(settings.secrets_dir) / name
        places.append(f"secret file {path}")
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return value, places
    return None, places
