"""Reading a text file line by line within limits, hashing its bytes on the way.

An input file is untrusted: its size, its longest line and its encoding are whatever someone
dropped. :func:`read_text` therefore never holds more than one line (of at most
``max_line_chars`` characters) plus the consumer's own state, stops at ``max_bytes``, and
tries the given encodings in order, restarting the consumer from the first line when a
byte does not decode. Line ends are kept and only CR, LF and CRLF end a line (``newline=""``),
as the :mod:`csv` module expects. Errors carry numbers, never the file's text::

    TextLimitError
    ├── TextTooLarge     more than max_bytes
    ├── LineTooLong      a line longer than max_line_chars
    └── NotText          no encoding decodes every byte

Usage::

    result = read_text(path, lambda lines: sum(1 for _ in lines), limits=TextLimits(10**6, 10**4))
    result.value, result.encoding, result.sha256
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class TextLimits:
    """At most ``max_bytes`` bytes in the file, ``max_line_chars`` characters on a line
    (the line end not counted)."""

    max_bytes: int
    max_line_chars: int


class TextLimitError(Exception):
    """The file is outside the limits, or not text."""


class TextTooLarge(TextLimitError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


class LineTooLong(TextLimitError):
    def __init__(self, line_number: int, max_line_chars: int) -> None:
        super().__init__(f"line {line_number} is longer than {max_line_chars} characters")
        self.line_number = line_number
        self.max_line_chars = max_line_chars


class NotText(TextLimitError):
    def __init__(self, encodings: Sequence[str]) -> None:
        super().__init__(f"not valid {' or '.join(encodings)} text")
        self.encodings = tuple(encodings)


@dataclass(frozen=True, slots=True)
class TextRead(Generic[T]):
    """What the consumer returned, the encoding that worked (``-sig`` when a UTF-8 byte order
    mark was skipped) and the SHA-256 of the bytes read (the whole file when the consumer
    read every line)."""

    value: T
    encoding: str
    sha256: str


def read_text(
    path: Path,
    consume: Callable[[Iterator[str]], T],
    *,
    limits: TextLimits,
    encodings: Sequence[str] = ("utf-8", "cp1252"),
) -> TextRead[T]:
    """Feed the lines of ``path`` to ``consume`` and return what it returns.

    ``consume`` may stop early (e.g. after a header). It is called again from the first line
    with the next encoding if a byte does not decode, so it must not keep side effects of a
    failed pass. Raises a :class:`TextLimitError` (or ``OSError``).
    """
    for encoding in encodings:
        with _open_lines(path, encoding, limits) as (lines, counter, bom):
            try:
                value = consume(lines)
            except UnicodeDecodeError:
                continue
            label = f"{encoding}-sig" if bom else encoding
            return TextRead(value, label, counter.sha256.hexdigest())
    raise NotText(encodings)


def iter_text_lines(path: Path, *, encoding: str, limits: TextLimits) -> Iterator[str]:
    """The lines of ``path`` in one encoding (a UTF-8 byte order mark skipped), lazily;
    ``UnicodeDecodeError`` or a :class:`TextLimitError` surface where they occur."""
    with _open_lines(path, encoding, limits) as (lines, _, _):
        yield from lines


@contextlib.contextmanager
def _open_lines(
    path: Path, encoding: str, limits: TextLimits
) -> Iterator[tuple[Iterator[str], _CountingReader, bool]]:
    with open(path, "rb", buffering=0) as raw:
        counter = _CountingReader(raw, limits.max_bytes)
        head = raw.read(len(codecs.BOM_UTF8))
        bom = head == codecs.BOM_UTF8
        if bom:
            counter.account(head)
        else:
            raw.seek(0)
        buffered = io.BufferedReader(counter, buffer_size=_CHUNK)
        text = io.TextIOWrapper(buffered, encoding=encoding, errors="strict", newline="")
        yield _lines(text, limits.max_line_chars), counter, bom


def _lines(text: io.TextIOWrapper, max_line_chars: int) -> Iterator[str]:
    number = 0
    while True:
        line = text.readline(max_line_chars + 2)
        if not line:
            return
        number += 1
        if len(line) > max_line_chars and len(line.rstrip("\r\n")) > max_line_chars:
            raise LineTooLong(number, max_line_chars)
        yield line


class _CountingReader(io.RawIOBase):
    """A raw binary reader that hashes what passes and refuses more than ``max_bytes``."""

    def __init__(self, raw: io.FileIO, max_bytes: int) -> None:
        super().__init__()
        self._raw = raw
        self._max_bytes = max_bytes
        self.total = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def account(self, data: bytes | memoryview) -> None:
        self.total += len(data)
        if self.total > self._max_bytes:
            raise TextTooLarge(self._max_bytes)
        self.sha256.update(data)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self._raw.readinto(buffer)
        if count:
            self.account(memoryview(buffer)[:count])
        return count or 0
