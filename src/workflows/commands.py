"""Domain commands of the ``orchestrator`` CLI: clients, run-month, run-week, demo.

- ``orchestrator clients add|update|list`` manage the client registry;
- ``orchestrator run-month CLIENT YYYY-MM`` starts PT1 → PT2 → PT3 → PT4 by hand;
- ``orchestrator run-week CLIENT YYYY-MM-DD`` starts PT5 for that upload Monday;
- ``orchestrator demo`` runs a whole synthetic month end to end
  (see :mod:`workflows.standins.demo`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator import (
    ConfigurationError,
    InvalidPayload,
    Orchestrator,
    Settings,
    Submission,
    describe_validation_error,
    notice,
)
from workflows.clients import ClientSpec, add_client, list_clients, parse_zip_list, update_client
from workflows.emailbison.workspace import check_emailbison_url
from workflows.schedules import month_chain_payload, month_dedupe_key, week_dedupe_key
from workflows.settings import pipeline_settings
from workflows.windows import format_month, parse_month

Handler = Callable[[argparse.Namespace, Settings], Any]


def _usage_errors(handler: Handler) -> Handler:
    """A handler whose ValueErrors (bad month, ZIP, date) become one-line usage errors."""

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace, settings: Settings) -> Any:
        try:
            result = handler(args, settings)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            return result
        except ValueError as exc:
            raise InvalidPayload(str(exc)) from None

    return wrapped


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the domain sub-commands on the ``orchestrator`` parser."""
    raw = argparse.RawDescriptionHelpFormatter
    clients = sub.add_parser(
        "clients",
        help="manage clients (add, update, list)",
        description="Manage clients: the insurance agents whose leads flow through PT1-PT5.",
        epilog=CLIENT_EXAMPLES,
        formatter_class=raw,
    )
    csub = clients.add_subparsers(
        dest="clients_command", required=True, metavar="ACTION", help="add, update or list"
    )
    for action in ("add", "update"):
        p = csub.add_parser(
            action,
            help=f"{action} a client",
            description=f"{action.capitalize()} a client.",
            epilog=CLIENT_EXAMPLES,
            formatter_class=raw,
        )
        p.add_argument("--name", required=True, help="client name (unique)")
        if action == "update":
            p.add_argument("--new-name", help="rename the client")
        p.add_argument("--tier", type=int, required=action == "add", help="100 or 200")
        p.add_argument("--states", help="licensed states, comma-separated (TX,OK)")
        zips = p.add_mutually_exclusive_group()
        zips.add_argument("--zips", help="approved ZIP codes, comma-separated")
        zips.add_argument("--zips-file", help="file of approved ZIP codes (any separators)")
        p.add_argument("--emailbison-url", help="EmailBison instance origin (https://...)")
        p.add_argument(
            "--emailbison-key-env",
            help="NAME of the variable holding the API key, EMAILBISON_KEY_<NAME> (read from "
            "the environment, .env or ORCHESTRATOR_SECRETS_DIR)",
        )
        p.add_argument("--campaign-id", type=int, help="evergreen campaign id")
        p.add_argument("--hnw-campaign-id", type=int, help="Texas HNW evergreen twin id")
        active = p.add_mutually_exclusive_group()
        active.add_argument(
            "--active",
            dest="active",
            action="store_true",
            default=None,
            help="runs on the calendar (the default for a new client)",
        )
        active.add_argument(
            "--inactive", dest="active", action="store_false", help="left out of the calendar"
        )
        p.set_defaults(handler=_usage_errors(cmd_clients_write), action=action)
    p = csub.add_parser("list", help="list clients", description="List clients.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_usage_errors(cmd_clients_list))

    p = sub.add_parser(
        "run-month",
        help="start PT1 → PT2 → PT3 → PT4 for a client-month",
        description="Start PT1 → PT2 → PT3 → PT4 for a client's renewal month: PT1 now, "
        "each next step when the previous one succeeds. Refused at once: an unknown or "
        "inactive client, a key that does not resolve. Nothing is added while the month's "
        "PT1 is already queued or running.",
        epilog='examples:\n  orchestrator run-month "Acme Insurance" 2027-01',
        formatter_class=raw,
    )
    p.add_argument("client", help="the client's name, as in 'orchestrator clients list'")
    p.add_argument("month", help="renewal month, YYYY-MM")
    p.set_defaults(handler=_usage_errors(cmd_run_month))

    p = sub.add_parser(
        "run-week",
        help="start PT5 for a client's upload Monday",
        description="Start PT5 (the evergreen update) for a client's upload Monday.",
        epilog='examples:\n  orchestrator run-week "Acme Insurance" 2026-12-07',
        formatter_class=raw,
    )
    p.add_argument("client", help="the client's name, as in 'orchestrator clients list'")
    p.add_argument("upload_date", help="the Monday, YYYY-MM-DD")
    p.set_defaults(handler=_usage_errors(cmd_run_week))

    p = sub.add_parser(
        "demo",
        help="run a synthetic month end to end on a demo database",
        description="Run a synthetic month through PT1 → PT4 and a PT5 on a real worker, "
        "in a database of its own (orchestrator_demo), with a local EmailBison stand-in.",
    )
    p.add_argument("--rows", type=int, default=4000, help="synthetic Cole rows (default 4000)")
    p.set_defaults(handler=_usage_errors(cmd_demo))


def _spec_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.tier is not None:
        changes["tier"] = args.tier
    if args.states is not None:
        changes["licensed_states"] = [s for s in args.states.split(",") if s.strip()]
    if args.zips is not None:
        changes["approved_zips"] = parse_zip_list(args.zips)
    if args.zips_file is not None:
        try:
            text = Path(args.zips_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidPayload(f"--zips-file {args.zips_file!r}: {exc}") from None
        changes["approved_zips"] = parse_zip_list(text)
    for arg, field in (
        ("emailbison_url", "emailbison_url"),
        ("emailbison_key_env", "emailbison_key_env"),
        ("campaign_id", "evergreen_campaign_id"),
        ("hnw_campaign_id", "evergreen_hnw_campaign_id"),
        ("active", "active"),
    ):
        value = getattr(args, arg)
        if value is not None:
            changes[field] = value
    return changes


CLIENT_EXAMPLES = """examples:
  orchestrator clients add --name "Acme Insurance" --tier 100 --states TX,OK \\
      --zips-file acme_zips.txt --emailbison-url https://mail.acme.example \\
      --emailbison-key-env EMAILBISON_KEY_ACME --campaign-id 42
  orchestrator clients update --name "Acme Insurance" --inactive
  orchestrator clients list

The key itself is never stored: put it in the environment, in .env
(EMAILBISON_KEY_ACME=...) or in a file ORCHESTRATOR_SECRETS_DIR/EMAILBISON_KEY_ACME."""

#: The command-line flag of each client field, for errors a person can act on.
CLIENT_FLAGS = {
    "name": "--name",
    "tier": "--tier",
    "licensed_states": "--states",
    "approved_zips": "--zips",
    "emailbison_url": "--emailbison-url",
    "emailbison_key_env": "--emailbison-key-env",
    "evergreen_campaign_id": "--campaign-id",
    "evergreen_hnw_campaign_id": "--hnw-campaign-id",
    "active": "--active/--inactive",
}


def describe_client_error(exc: ValidationError, *, renaming: bool = False) -> str:
    """``--flag: reason; ...``: what to fix on the command line, for each field."""
    flags = dict(CLIENT_FLAGS, name="--new-name") if renaming else CLIENT_FLAGS
    return describe_validation_error(exc, labels=flags)


def check_workspace_flags(changes: dict[str, Any], settings: Settings) -> None:
    """Refuse a plain-http ``--emailbison-url`` unless this installation allows loopback
    stand-ins (the URL's form was checked with the rest of the client)."""
    url = changes.get("emailbison_url")
    if url is None:
        return
    try:
        allow = pipeline_settings(settings).emailbison_allow_http_loopback
        check_emailbison_url(url, allow_http_loopback=allow)
    except ValueError as exc:
        raise InvalidPayload(f"invalid client: --emailbison-url: {exc}") from None


async def cmd_clients_write(args: argparse.Namespace, settings: Settings) -> int:
    changes = _spec_changes(args)
    renaming = args.action == "update" and bool(args.new_name)
    try:
        spec = (
            ClientSpec.model_validate({"name": args.name, **changes})
            if args.action == "add"
            else None
        )
        if renaming:
            changes["name"] = args.new_name
    except ValidationError as exc:
        raise InvalidPayload(f"invalid client: {describe_client_error(exc)}") from None
    check_workspace_flags(changes, settings)
    orch = await Orchestrator(settings).open()
    try:
        async with orch.transaction() as conn:
            try:
                if spec is not None:
                    client = await add_client(conn, spec)
                else:
                    client = await update_client(conn, args.name, changes)
            except ValidationError as exc:
                raise InvalidPayload(
                    f"invalid client: {describe_client_error(exc, renaming=renaming)}"
                ) from None
    finally:
        await orch.close()
    print(f"client {client.name!r} {'added' if spec else 'updated'} (id {client.id})")
    return 0


async def cmd_clients_list(args: argparse.Namespace, settings: Settings) -> int:
    orch = await Orchestrator(settings).open()
    try:
        async with orch.transaction() as conn:
            clients = await list_clients(conn)
    finally:
        await orch.close()
    if args.json:
        print(json.dumps([c.model_dump() for c in clients], indent=2))
        return 0
    for c in clients:
        print(
            f"{c.name}  tier={c.tier}  states={','.join(c.licensed_states) or '-'}  "
            f"zips={len(c.approved_zips)}  emailbison={c.emailbison_url or '-'}  "
            f"key_env={c.emailbison_key_env or '-'}  campaign={c.evergreen_campaign_id or '-'}"
            f"  {'active' if c.active else 'inactive'}"
        )
    if not clients:
        print("no clients yet: orchestrator clients add --name NAME --tier 100 ...")
    return 0


def _report(submission: Submission, what: str) -> int:
    """Warnings on stderr; then ``<what> started`` (or already queued/running) and the job id
    as the last line."""
    for warning in submission.warnings:
        notice(warning, warning=True)
    if submission.created:
        print(f"{what} started")
    else:
        state = {"active": "running", "delayed": "queued (delayed)"}.get(submission.state, "queued")
        print(f"{what} already {state} as job {submission.job_id}; nothing added")
    print(submission.job_id)
    return 0


async def cmd_run_month(args: argparse.Namespace, settings: Settings) -> int:
    month = format_month(*parse_month(args.month))
    orch = await Orchestrator(settings).open()
    try:
        submission = await orch.submit(
            "pt1",
            month_chain_payload(args.client, month),
            dedupe_key=month_dedupe_key(args.client, month),
        )
    finally:
        await orch.close()
    return _report(submission, f"PT1 → PT2 → PT3 → PT4 for {args.client!r} {month}")


async def cmd_run_week(args: argparse.Namespace, settings: Settings) -> int:
    try:
        upload_date = date.fromisoformat(args.upload_date)
    except ValueError:
        raise InvalidPayload(f"upload date {args.upload_date!r} is not YYYY-MM-DD") from None
    orch = await Orchestrator(settings).open()
    try:
        submission = await orch.submit(
            "pt5",
            {"client": args.client, "upload_date": upload_date.isoformat()},
            dedupe_key=week_dedupe_key(args.client, upload_date),
        )
    finally:
        await orch.close()
    return _report(submission, f"PT5 for {args.client!r} upload date {upload_date}")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from workflows.standins.demo import run_demo

    if args.rows < 100 or args.rows > 200_000:
        raise ConfigurationError("--rows must be between 100 and 200000")
    result: int = asyncio.run(run_demo(settings, rows=args.rows))
    return result
