"""Which files PT1 may read: a client-month's exports in its inbox folder, nothing else.

Anyone allowed to enqueue PT1 chooses its ``files``, and the worker reads them, so a name is
a request to read a file on the worker's host. Only names *relative to the client-month
folder* ``<inbox>/<client dir>/<YYYY-MM>/`` are taken (:func:`check_export_names`, applied
when the payload is validated, at enqueue and again when the job runs), and every file is
resolved, symlinks followed, and must still lie inside that folder
(:func:`resolve_exports`). A name is refused when it

* is empty, longer than :data:`MAX_NAME_CHARS` characters (or a part longer than 255),
  or holds a control character or a backslash;
* is absolute (``/etc/passwd``), or has a ``.``/``..`` part or a hidden or Office lock part
  (``.x``, ``~$x``: never listed by discovery either);
* does not end in ``.csv`` (any case);
* repeats an earlier entry, or is entry number :data:`MAX_LISTED_FILES` + 1.

Usage::

    names = check_export_names(["tx.csv", "ok/part02.csv"])        # ValueError when refused
    for export in resolve_exports(inbox, "Acme Insurance", "2027-01", names):
        read_export(export.path, display_name=export.display)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator import PermanentError
from workflows.cole import discover_exports, export_dir
from workflows.cole_reader import MAX_EXPORT_BYTES

MAX_LISTED_FILES = 500
"""At most this many ``files`` in one PT1 payload."""
MAX_NAME_CHARS = 4096
"""At most this many characters in one listed name (Linux PATH_MAX)."""
_MAX_PART_CHARS = 255


class ExportAccessError(PermanentError):
    """A listed export is not a file PT1 may read (a refused name, outside the folder, too
    big). A missing file or an empty folder is a plain :class:`PermanentError`."""


@dataclass(frozen=True, slots=True)
class ExportFile:
    """A file PT1 may read: its path, its name for rows and errors (inbox-relative, e.g.
    ``Acme_Insurance/2027-01/tx.csv``) and its size in bytes when it was checked."""

    path: Path
    display: str
    size: int


def check_export_name(name: str) -> str:
    """Return ``name`` normalised (``a//b.csv`` -> ``a/b.csv``) or raise ``ValueError``
    saying why it is refused (see the module docstring).

    >>> check_export_name("tx//part01.CSV")
    'tx/part01.CSV'
    """
    if not name:
        raise ValueError("is empty")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"is longer than {MAX_NAME_CHARS} characters")
    if any(not ch.isprintable() for ch in name):
        raise ValueError("contains a control character")
    if "\\" in name:
        raise ValueError("contains a backslash; separate folders with /")
    if name.startswith("/"):
        raise ValueError("is an absolute path; give a name relative to the client-month folder")
    if name.startswith("~"):
        raise ValueError("starts with '~'; give a name relative to the client-month folder")
    if any(part in (".", "..") for part in name.split("/")):
        raise ValueError("has a '.' or '..' part; give a name inside the client-month folder")
    parts = PurePosixPath(name).parts
    if any(part.startswith((".", "~$")) for part in parts):
        raise ValueError("has a hidden or lock-file part (starting with '.' or '~$')")
    if any(len(part) > _MAX_PART_CHARS for part in parts):
        raise ValueError(f"has a part longer than {_MAX_PART_CHARS} characters")
    if not parts[-1].lower().endswith(".csv") or parts[-1].lower() == ".csv":
        raise ValueError("is not a .csv file")
    return "/".join(parts)


def check_export_names(names: Sequence[str]) -> list[str]:
    """Check every name (entries numbered from 1 in errors) and refuse duplicates and more
    than :data:`MAX_LISTED_FILES` entries; return the normalised names in order."""
    if len(names) > MAX_LISTED_FILES:
        raise ValueError(f"at most {MAX_LISTED_FILES} files, got {len(names)}")
    out: list[str] = []
    first_seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        try:
            normal = check_export_name(name)
        except ValueError as exc:
            raise ValueError(f"entry {number} {_shown(name)} {exc}") from None
        if normal in first_seen:
            raise ValueError(
                f"entry {number} {_shown(name)} repeats entry {first_seen[normal]}"
            ) from None
        first_seen[normal] = number
        out.append(normal)
    return out


def resolve_exports(
    inbox: Path,
    client: str,
    month: str,
    names: Sequence[str] | None,
    *,
    max_bytes: int = MAX_EXPORT_BYTES,
) -> list[ExportFile]:
    """The files PT1 reads for a client-month: ``names`` (checked again, as a job may have
    been inserted without validation) or, when none are given, every export discovered in
    the folder. Each must resolve, symlinks followed, inside the folder, be a regular file
    of at most ``max_bytes``; a file reached twice is read once. Raises
    :class:`ExportAccessError`, or a :class:`PermanentError` for a missing file or an empty
    folder (``ExportLocationError`` for a bad client or month).
    """
    base = export_dir(inbox, client, month)
    if names:
        try:
            checked = check_export_names(names)
        except ValueError as exc:
            raise ExportAccessError(f"files: {exc}") from None
        candidates = [(name, base / name) for name in checked]
    else:
        found = discover_exports(inbox, client, month)
        candidates = [(path.relative_to(base).as_posix(), path) for path in found]
        if not candidates:
            raise PermanentError(
                f"no Cole exports for client {client!r} month {month}: no *.csv in {base}"
            )
    root = base.resolve()
    prefix = base.relative_to(inbox).as_posix()
    out: list[ExportFile] = []
    seen: set[Path] = set()
    for name, path in candidates:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            raise ExportAccessError(f"cole export {name!r} cannot be resolved") from None
        if not resolved.is_relative_to(root):
            raise ExportAccessError(
                f"cole export {name!r} leads outside the client-month folder {prefix}/ "
                "(a link to elsewhere): refused"
            )
        if not resolved.is_file():
            raise PermanentError(f"cole export {name!r} not found (looked at {path})")
        if resolved in seen:
            continue
        seen.add(resolved)
        size = resolved.stat().st_size
        if size > max_bytes:
            raise ExportAccessError(
                f"cole export {name!r} is {size:,} bytes, over the {max_bytes:,} byte limit "
                "for one Cole export"
            )
        out.append(ExportFile(resolved, f"{prefix}/{name}", size))
    return out


def _shown(name: str) -> str:
    """A listed name quoted for an error: it is the caller's own input, but may be huge or
    hold control characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in name[:80])
    return repr(text + ("..." if len(name) > 80 else ""))
