"""A client's EmailBison key: the environment, then .env, then the secrets directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflows.key_lookup import read_client_key
from workflows.settings import PipelineSettings

NAME = "EMAILBISON_KEY_ACME"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineSettings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(NAME, raising=False)
    (tmp_path / "secrets").mkdir()
    return PipelineSettings(_env_file=None, secrets_dir=tmp_path / "secrets")  # type: ignore[call-arg]


def test_nowhere_lists_the_places_in_order(settings: PipelineSettings, tmp_path: Path) -> None:
    value, places = read_client_key(NAME, settings)
    assert value is None
    assert places == [
        f"environment variable {NAME}",
        f".env file {tmp_path / '.env'}",
        f"secret file {tmp_path / 'secrets' / NAME}",
    ]


def test_the_order_is_environment_dotenv_secrets_dir(
    settings: PipelineSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets" / NAME).write_text("from-file\n", encoding="utf-8")
    assert read_client_key(NAME, settings)[0] == "from-file"
    (tmp_path / ".env").write_text(f"{NAME}=from-dotenv\n", encoding="utf-8")
    assert read_client_key(NAME, settings)[0] == "from-dotenv"
    monkeypatch.setenv(NAME, " from-environment ")
    assert read_client_key(NAME, settings)[0] == "from-environment"
    monkeypatch.setenv(NAME, "")  # empty: not a key, look further
    assert read_client_key(NAME, settings)[0] == "from-dotenv"
