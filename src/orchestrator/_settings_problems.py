"""What is wrong with the settings, said once and plainly.

- Invalid values: every bad variable in one line, each with the value it got (secrets masked,
  database URLs never quoted) and what is expected, derived from the field's type and
  constraints (or its ``json_schema_extra={"expected": ...}``).
- Unknown ``ORCHESTRATOR_*`` variables (environment or ``.env``): a warning each, with the
  closest known name (``ORCHESTRATOR_CONCURENCY`` → ``ORCHESTRATOR_CONCURRENCY``).
- Command-line options that override a setting (``--concurrency``) are checked against the
  same field, and the error names the option.

Example::

    >>> from orchestrator._settings import Settings
    >>> expected(Settings.model_fields["concurrency"])
    'an integer from 1 to 256'
    >>> expected(Settings.model_fields["poll_interval"])
    'a duration (30s, 2m, 1h30m or seconds) above 0 s and at most 60 s'
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from orchestrator._errors import ConfigurationError
from orchestrator._settings import ENV_PREFIX, Settings, _days, _seconds

_PATTERN_CHOICES_RE = re.compile(r"^\^\(([\w|]+)\)\$$")


def variable(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _converter(field: FieldInfo) -> Any:
    for item in field.metadata:
        if isinstance(item, BeforeValidator):
            return item.func
    return None


def _is_secret(field: FieldInfo) -> bool:
    return "SecretStr" in repr(field.annotation)


def _number(value: float, unit: str) -> str:
    text = f"{value:g}"
    return f"{text} {unit}" if unit else text


def expected(field: FieldInfo) -> str:
    """What a valid value of ``field`` looks like, in words."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("expected"), str):
        return str(extra["expected"])
    annotation = repr(field.annotation)
    converter = _converter(field)
    unit = ""
    pattern = None
    for item in field.metadata:
        pattern = getattr(item, "pattern", None) or pattern
    if converter is _seconds and field.annotation is int:
        kind, unit = "a whole number of seconds (10s, 1m or 10)", "s"
    elif converter is _seconds:
        kind, unit = "a duration (30s, 2m, 1h30m or seconds)", "s"
    elif converter is _days:
        kind, unit = "a number of days (30 or 30d)", ""
    elif pattern and (choices := _PATTERN_CHOICES_RE.match(pattern)):
        words = choices.group(1).split("|")
        any_case = " (any case)" if all(w.isupper() or w.islower() for w in words) else ""
        return f"one of {', '.join(words)}{any_case}"
    elif field.annotation is bool:
        return "true or false"
    elif field.annotation is int or annotation.startswith("int |"):
        kind = "an integer"
    elif field.annotation is float or annotation.startswith("float |"):
        kind = "a number"
    elif "Path" in annotation:
        kind = "a path"
    elif _is_secret(field):
        kind = "a secret value"
    else:
        kind = "text" + (f" matching {pattern}" if pattern else "")
    low: Any = None
    high: Any = None
    low_open = high_open = False
    for item in field.metadata:
        if isinstance(item, Ge):
            low = item.ge
        elif isinstance(item, Gt):
            low, low_open = item.gt, True
        elif isinstance(item, Le):
            high = item.le
        elif isinstance(item, Lt):
            high, high_open = item.lt, True
    if low is not None and high is not None and not low_open and not high_open:
        return f"{kind} from {_number(low, unit)} to {_number(high, unit)}"
    bounds = []
    if low is not None:
        bounds.append(f"{'above' if low_open else 'at least'} {_number(low, unit)}")
    if high is not None:
        bounds.append(f"{'below' if high_open else 'at most'} {_number(high, unit)}")
    return kind + (" " + " and ".join(bounds) if bounds else "")


def _shown(field: FieldInfo | None, value: Any) -> str | None:
    """The bad value as the message shows it (``None``: never shown, e.g. a database URL)."""
    if field is not None and _is_secret(field):
        return None
    if isinstance(value, SecretStr):
        return None
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= 80 else text[:77] + "...'"


def _reason(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _as_written(name: str, environ: Mapping[str, str], env_file: Any) -> str | None:
    """The value of setting ``name`` as the person wrote it (environment, then ``.env``):
    errors quote that, not what a converter made of it (``1.5s``, not ``1.5``)."""
    wanted = variable(name)
    for key, value in environ.items():
        if key.upper() == wanted:
            return value
    for path in _env_files(env_file):
        from dotenv import dotenv_values

        for key, found in dotenv_values(path).items():
            if key.upper() == wanted and found is not None:
                return found
    return None


def describe_errors(
    exc: ValidationError,
    cls: type[Settings],
    environ: Mapping[str, str] | None = None,
    env_file: Any = None,
) -> str:
    """Every invalid setting in one line: ``invalid setting VAR: got 'x', expected ...``."""
    parts = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        field = cls.model_fields.get(name)
        label = variable(name) if name else "settings"
        if field is None:
            parts.append(f"{label}: {_reason(error)}")
            continue
        written = _as_written(name, os.environ if environ is None else environ, env_file)
        shown = _shown(field, error.get("input") if written is None else written)
        own_reason = error["type"] == "value_error" and _converter(field) is None
        if shown is None:
            # A secret: the reason says what is wrong without quoting it.
            text = _reason(error) if own_reason else f"invalid, expected {expected(field)}"
            parts.append(f"{label}: {text}")
        elif own_reason:
            parts.append(f"{label}: got {shown}: {_reason(error)}")
        else:
            parts.append(f"{label}: got {shown}, expected {expected(field)}")
    if len(parts) == 1:
        return f"invalid setting {parts[0]}"
    return f"invalid settings ({len(parts)}): " + "; ".join(parts)


def known_variables(cls: type[Settings]) -> set[str]:
    names = {variable(name) for name in cls.model_fields}
    for klass in cls.__mro__:
        others = klass.__dict__.get("other_variables")
        if isinstance(others, frozenset):
            names |= {variable(other) for other in others}
    return names


def unknown_variables(
    cls: type[Settings], environ: Mapping[str, str], env_file: Any = None
) -> list[str]:
    """A warning for every ``ORCHESTRATOR_*`` name that is no setting, closest name given."""
    known = known_variables(cls)
    found: dict[str, str] = {}
    for name in environ:
        if name.upper().startswith(ENV_PREFIX):
            found.setdefault(name, "environment")
    for path in _env_files(env_file):
        for name in _dotenv_keys(path):
            if name.upper().startswith(ENV_PREFIX):
                found.setdefault(name, str(path))
    warnings = []
    for name, origin in sorted(found.items()):
        if name.upper() in known:
            continue
        # Compared without the common prefix, which would make every name look close.
        suffixes = {k.removeprefix(ENV_PREFIX): k for k in known}
        close = difflib.get_close_matches(
            name.upper().removeprefix(ENV_PREFIX), sorted(suffixes), n=1, cutoff=0.75
        )
        where = "" if origin == "environment" else f" (in {origin})"
        hint = f"; did you mean {suffixes[close[0]]}?" if close else ""
        warnings.append(f"unknown setting {name}{where} ignored{hint}")
    return warnings


def _env_files(env_file: Any) -> list[Path]:
    if env_file is None:
        return []
    files = env_file if isinstance(env_file, list | tuple) else [env_file]
    return [Path(f) for f in files if Path(f).is_file()]


def _dotenv_keys(path: Path) -> list[str]:
    from dotenv import dotenv_values

    return list(dotenv_values(path))


def check_option(flag: str, value: Any, cls: type[Settings], field_name: str) -> Any:
    """``value`` of a command-line option overriding setting ``field_name``, validated
    against that setting's constraints; the error names the option.

    >>> check_option("--concurrency", 8, Settings, "concurrency")
    8
    >>> check_option("--concurrency", 1000, Settings, "concurrency")
    Traceback (most recent call last):
    ...
    orchestrator._errors.ConfigurationError: --concurrency 1000: expected an integer from 1 to 256
    """
    field = cls.model_fields[field_name]
    adapter: TypeAdapter[Any] = TypeAdapter(field.rebuild_annotation())
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise ConfigurationError(f"{flag} {value}: expected {expected(field)}") from None
