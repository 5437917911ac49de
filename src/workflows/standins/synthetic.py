"""Deterministic synthetic Cole X Dates exports for the demo, the tests and the benchmarks.

Real exports cannot be shipped, so this writes look-alikes with the same 13 columns and the
same kinds of mess PT1/PT2 must cope with: blank cells, ``$412,000`` / ``412000`` money,
4-digit ZIPs that lost a leading zero, ``John & Mary``, invalid or blank emails, homes above
$900,000 (Texas too), about half the rows without ``Head_Household``, and the same people
repeated by overlapping ZIP searches. Everything comes from a seeded :class:`random.Random`
and built-in word lists: the same arguments always give byte-identical files. Emails use the
reserved ``example.*`` domains, so nothing generated can reach a real mailbox.

Usage::

    paths = generate_exports(inbox, client="Acme", month="2025-03", states=["TX"],
                             zips=["75001", "75002"], rows=30_000, seed=7)
    assert discover_exports(inbox, "Acme", "2025-03") == paths
"""

from __future__ import annotations

import calendar
import csv
import functools
import random
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workflows.cole import COLE_COLUMNS, export_dir

MAX_ROWS_PER_FILE = 10_000
"""Cole's export cap; no generated file holds more data lines."""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel "
    "Matthew Anthony Mark Steven Paul Andrew Joshua Kevin Brian George Edward Ronald Timothy "
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy "
    "Betty Margaret Sandra Ashley Emily Donna Michelle Carol Amanda Melissa Deborah Laura "
    "Maria José Luis Carlos Ana Sofia Nguyen Wei Priya Fatima Omar"
)
_COUPLES = ("John & Mary", "Robert & Linda", "David & Susan", "Jose & Maria", "Tom & Ann")
_LAST = tuple(  # "_" joins a multi-word surname
    word.replace("_", " ")
    for word in _words(
        "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
        "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White "
        "Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres "
        "Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts "
        "O'Brien D'Angelo Van_der_Berg Smith-Jones McDonald Peña"
    )
)
_STREETS = _words(
    "Oak Maple Pine Cedar Elm Washington Lake Hill Park Main Sunset Ridge Meadow Willow Spring "
    "Highland Forest River Church Mill Cherry Walnut Lincoln Jackson Magnolia Bluebonnet"
)
_SUFFIXES = ("St", "Ave", "Dr", "Ln", "Rd", "Ct", "Blvd", "Way", "Cir", "Trl")
_CITIES: dict[str, tuple[str, ...]] = {
    "TX": ("Austin", "Dallas", "Houston", "San Antonio", "Plano", "Frisco", "Katy", "Round Rock"),
    "FL": ("Tampa", "Orlando", "Miami", "Naples", "Sarasota", "Jacksonville"),
    "CA": ("Fresno", "San Diego", "Sacramento", "Irvine", "Pasadena"),
    "NJ": ("Newark", "Princeton", "Cherry Hill", "Edison", "Hoboken"),
    "MA": ("Boston", "Worcester", "Springfield", "Quincy", "Newton"),
    "NY": ("Albany", "Buffalo", "Rochester", "Yonkers", "Syracuse"),
    "GA": ("Atlanta", "Savannah", "Marietta", "Athens", "Macon"),
}
_TOWNS = ("Springfield", "Franklin", "Greenville", "Fairview", "Madison", "Clinton", "Salem")
_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")
_INCOMES = (
    "Under $25,000",
    "$25,000 - $49,999",
    "$50,000 - $74,999",
    "$75,000 - $99,999",
    "$100,000 - $149,999",
    "$150,000 - $249,999",
    "$250,000+",
)
_AREA_CODES = ("512", "214", "713", "305", "813", "617", "201", "404", "415", "718")
_SQL_CELL = "'; DROP TABLE cole_raw; --"


@dataclass(frozen=True, slots=True)
class SyntheticExport:
    """One planned export file: its name, state, ZIP search and data lines (ragged included)."""

    name: str
    state: str
    zips: tuple[str, ...]
    rows: list[list[str]]
    bom: bool = False


def plan_exports(
    *,
    client: str,
    month: str,
    states: Sequence[str],
    zips: Sequence[str],
    rows: int,
    seed: int = 0,
    renewal_month: int | None = None,
    messiness: bool = True,
) -> list[SyntheticExport]:
    """Build every export in memory; :func:`generate_exports` writes exactly these.

    ``rows`` is the total number of data lines over all files (duplicates and ragged rows
    included), so a reader sees ``rows == sum(len(e.rows) + len(e.bad_rows))``. They are
    shared evenly between ``states``; ZIPs are dealt to states round-robin, and each state's
    ZIP list is split into consecutive searches of at most :data:`MAX_ROWS_PER_FILE` lines.
    ``renewal_month`` defaults to the month of ``month`` (``YYYY-MM``, the renewal month).

    ``messiness=False`` removes only what a reader must reject or that is unusual in form
    (ragged rows, a BOM, cells with commas/newlines/SQL text, unpadded ``M/D/YYYY`` dates);
    blank cells, money formats, 4-digit ZIPs, couples and duplicates stay, since PT2 exists
    to handle them.
    """
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if not states or not zips:
        raise ValueError("states and zips must not be empty")
    year_text, _, month_text = month.partition("-")
    if not (year_text.isdigit() and month_text.isdigit() and 1 <= int(month_text) <= 12):
        raise ValueError(f"month {month!r} is not YYYY-MM")
    renewal = int(month_text) if renewal_month is None else renewal_month
    if not 1 <= renewal <= 12:
        raise ValueError("renewal_month must be 1..12")
    rng = random.Random(f"cole-synthetic:{seed}:{client}:{month}:{renewal}")
    person = _PersonMaker(rng, renewal, messiness)

    exports: list[SyntheticExport] = []
    share, extra = divmod(rows, len(states))
    for s_index, state in enumerate(states):
        state_rows = share + (1 if s_index < extra else 0)
        state_zips = list(zips[s_index :: len(states)]) or [zips[s_index % len(zips)]]
        n_files = max(1, -(-state_rows // MAX_ROWS_PER_FILE))
        per_file, file_extra = divmod(state_rows, n_files)
        previous: list[list[str]] = []
        for f_index in range(n_files):
            lines = per_file + (1 if f_index < file_extra else 0)
            group = _zip_group(state_zips, f_index, n_files)
            ragged = min(lines, rng.randint(1, 3)) if messiness and lines >= 50 else 0
            dupes = lines // 50 if lines >= 50 else 0
            fresh = [person.make(state, rng.choice(group)) for _ in range(lines - ragged - dupes)]
            if fresh:
                _guarantee_features(fresh[0], state, renewal)
            pool = previous or fresh
            body = fresh + [list(rng.choice(pool)) for _ in range(dupes)]
            body += [_ragged(rng, person.make(state, rng.choice(group))) for _ in range(ragged)]
            rng.shuffle(body)
            name = f"cole_{state.lower()}_{month}_part{f_index + 1:02d}.csv"
            bom = messiness and s_index == 0 and f_index == 0
            exports.append(SyntheticExport(name, state, tuple(group), body, bom))
            previous = fresh
    return exports


def generate_rows(
    *,
    client: str,
    month: str,
    states: Sequence[str],
    zips: Sequence[str],
    rows: int,
    seed: int = 0,
    renewal_month: int | None = None,
    messiness: bool = True,
) -> list[list[str]]:
    """All data lines of :func:`plan_exports`, file after file, without writing anything."""
    planned = plan_exports(
        client=client,
        month=month,
        states=states,
        zips=zips,
        rows=rows,
        seed=seed,
        renewal_month=renewal_month,
        messiness=messiness,
    )
    return [line for export in planned for line in export.rows]


def generate_exports(
    out_dir: Path,
    *,
    client: str,
    month: str,
    states: Sequence[str],
    zips: Sequence[str],
    rows: int,
    seed: int = 0,
    renewal_month: int | None = None,
    messiness: bool = True,
) -> list[Path]:
    """Write the exports of :func:`plan_exports` and return their paths, sorted.

    ``out_dir`` is treated as the inbox root: files go to
    ``export_dir(out_dir, client, month)`` (``<out_dir>/<client dir>/<month>/``), where
    :func:`~workflows.cole.discover_exports` finds them. Existing files of the same names are
    overwritten; other files there are left alone, so use a fresh directory.
    """
    target = export_dir(out_dir, client, month)
    target.mkdir(parents=True, exist_ok=True)
    planned = plan_exports(
        client=client,
        month=month,
        states=states,
        zips=zips,
        rows=rows,
        seed=seed,
        renewal_month=renewal_month,
        messiness=messiness,
    )
    paths = []
    for export in planned:
        path = target / export.name
        write_export(path, export.rows, bom=export.bom)
        paths.append(path)
    return sorted(paths)


def write_export(path: Path, rows: Iterable[Sequence[str]], *, bom: bool = False) -> None:
    """Write the Cole header and ``rows`` as CSV with CRLF line endings, like Cole's download;
    UTF-8, with a BOM if ``bom`` (what Excel writes for "CSV UTF-8")."""
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLE_COLUMNS)
        writer.writerows(rows)


class _PersonMaker:
    """Makes one person's 13 cells; kept as a class so the hot loop reads bound locals."""

    def __init__(self, rng: random.Random, renewal: int, messiness: bool) -> None:
        self.rng = rng
        self.renewal = renewal
        self.messiness = messiness
        self.days = {y: calendar.monthrange(y, renewal)[1] for y in range(2005, 2025)}

    def make(self, state: str, zip_code: str) -> list[str]:
        rnd = self.rng.random
        choice = self.rng.choice
        randint = self.rng.randint
        messy = self.messiness

        first = choice(_COUPLES) if rnd() < 0.04 else choice(_FIRST)
        last = choice(_LAST)
        if rnd() < 0.02:
            first = ""
        number = randint(100, 29999)
        address = f"{number} {choice(_STREETS)} {choice(_SUFFIXES)}"
        if messy and rnd() < 0.004:
            address += choice((", Apt 4", "\nUnit B", " #12", f" {_SQL_CELL}"))
        towns = _CITIES.get(state.upper(), _TOWNS)
        city = towns[int(zip_code) % len(towns)] if zip_code.isdigit() else choice(towns)
        zip_cell = zip_code[1:] if zip_code.startswith("0") and rnd() < 0.3 else zip_code

        roll = rnd()
        if roll < 0.25:
            phone = ""
        else:
            area, line = choice(_AREA_CODES), randint(0, 9999)
            phone = f"({area}) 555-{line:04d}" if roll < 0.6 else f"{area}555{line:04d}"

        email = self._email(first, last)
        year = randint(2005, 2024)
        day = randint(1, self.days[year])
        if messy and rnd() < 0.02:
            purchase = f"{self.renewal}/{day}/{year}"
        else:
            purchase = f"{self.renewal:02d}/{day:02d}/{year}"
        if rnd() < 0.01:
            purchase = ""

        high = 0.10 if state.upper() == "TX" else 0.05
        value = randint(901, 2500) * 1000 if rnd() < high else randint(90, 899) * 1000
        roll = rnd()
        if roll < 0.55:
            home_value = f"${value:,}"
        elif roll < 0.9:
            home_value = str(value)
        else:
            home_value = ""

        head = "Y" if rnd() < 0.5 else ""
        income = "" if rnd() < 0.2 else choice(_INCOMES)
        birth = "" if rnd() < 0.3 else f"{randint(1, 12):02d}/{randint(1, 28):02d}/"
        if birth:
            birth += str(randint(1940, 1995))
        return [
            first,
            last,
            address,
            city,
            state,
            zip_cell,
            phone,
            email,
            purchase,
            home_value,
            head,
            income,
            birth,
        ]

    def _email(self, first: str, last: str) -> str:
        rnd = self.rng.random
        roll = rnd()
        if roll < 0.1:
            return ""
        given, family = _slug(first.split(" ")[0]), _slug(last)
        local = f"{given or 'owner'}.{family}{self.rng.randint(1, 99)}"
        domain = self.rng.choice(_DOMAINS)
        if roll < 0.15:  # invalid syntax, as typed into a web form
            return self.rng.choice(
                (
                    f"{local}@",
                    f"{local}.{domain}",
                    f"{local}@@{domain}",
                    f"{given} {family}@{domain}",
                )
            )
        return f"{local}@{domain}"


@functools.cache
def _slug(name: str) -> str:
    """Email-safe lower-case letters of a name: ``"Peña"`` -> ``"pena"``, ``"O'Brien"`` ->
    ``"obrien"`` (cached: the word lists are small and this runs per row)."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in plain.lower() if ch.isalpha())


def _zip_group(state_zips: list[str], index: int, count: int) -> list[str]:
    """The consecutive slice of ZIPs searched by file ``index`` of ``count`` (never empty)."""
    size = -(-len(state_zips) // count)
    group = state_zips[index * size : (index + 1) * size]
    return group or [state_zips[index % len(state_zips)]]


def _ragged(rng: random.Random, cells: list[str]) -> list[str]:
    """A broken line: cells lost (a truncated download) or an extra one (a stray comma)."""
    if rng.random() < 0.5:
        return cells[: rng.randint(3, len(cells) - 1)]
    return [*cells, "extra"]


def _guarantee_features(line: list[str], state: str, renewal: int) -> None:
    """Make rare cases certain in the first fresh line of each file, so small outputs still
    contain them: a Feb 29 purchase (when renewing in February) and, in Texas, a home above
    $900,000."""
    if renewal == 2:
        line[8] = "02/29/2020"
    if state.upper() == "TX":
        line[9] = "$1,250,000"
