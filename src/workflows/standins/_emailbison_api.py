"""In-memory EmailBison API behind :mod:`workflows.standins.emailbison_server` (no HTTP here).

Holds the workspaces (one per API key) and answers the routes the pipeline uses with
Laravel-shaped bodies. Routing happens before authentication, as in Laravel: an unknown path is
a 404 and a known path with the wrong method a 405 even without a key. All methods take the
state lock, so the HTTP threads and a test thread can use one instance safely.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

PER_PAGE = 15
MAX_LEADS = 500

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")

Reply = tuple[int, dict[str, Any]]
NOT_FOUND: dict[str, Any] = {"message": "Record not found"}


@dataclass
class Lead:
    id: int
    email: str
    first_name: str
    last_name: str
    title: str | None = None
    company: str | None = None
    notes: str | None = None
    custom_variables: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "title": self.title,
            "company": self.company,
            "notes": self.notes,
            "custom_variables": [{"name": k, "value": v} for k, v in self.custom_variables.items()],
        }


@dataclass
class CampaignRecord:
    id: int
    name: str
    status: str
    lead_ids: dict[int, None] = field(default_factory=dict)  # an ordered set

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "type": "outbound",
            "total_leads": len(self.lead_ids),
        }


@dataclass
class Workspace:
    """One workspace's data. Read it under :attr:`LocalApi.lock` if the server is running."""

    id: int
    api_key: str = field(repr=False)
    leads: dict[str, Lead] = field(default_factory=dict)  # by lower-cased email
    custom_variables: dict[str, tuple[int, str]] = field(
        default_factory=dict
    )  # casefold -> id, name
    leads_by_id: dict[int, Lead] = field(default_factory=dict)
    campaigns: dict[int, CampaignRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    api_key: str | None
    base_url: str


Handler = Callable[[Workspace, "re.Match[str]", ApiRequest], Reply]


def _invalid(errors: dict[str, list[str]]) -> Reply:
    first = next(iter(errors.values()))[0]
    extra = sum(len(v) for v in errors.values()) - 1
    message = first if extra == 0 else f"{first} (and {extra} more error{'s' * (extra > 1)})"
    return 422, {"message": message, "errors": errors}


class LocalApi:
    """The stand-in's state and route handlers."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._workspaces: dict[str, Workspace] = {}
        self._ids = itertools.count(1)
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (
                re.compile(r"/api/custom-variables"),
                {"GET": self._list_variables, "POST": self._create_variable},
            ),
            (re.compile(r"/api/leads/create-or-update/multiple"), {"POST": self._upsert_leads}),
            (re.compile(r"/api/campaigns"), {"GET": self._list_campaigns}),
            (re.compile(r"/api/campaigns/(\d+)"), {"GET": self._get_campaign}),
            (re.compile(r"/api/campaigns/(\d+)/leads/attach-leads"), {"POST": self._attach}),
            (re.compile(r"/api/campaigns/(\d+)/update"), {"PATCH": self._rename}),
        ]

    # -- set-up and inspection (called by tests) ------------------------------------------

    def add_workspace(self, api_key: str) -> Workspace:
        with self.lock:
            if api_key in self._workspaces:
                return self._workspaces[api_key]
            workspace = Workspace(id=next(self._ids), api_key=api_key)
            self._workspaces[api_key] = workspace
            return workspace

    def workspace(self, api_key: str) -> Workspace:
        with self.lock:
            return self._workspaces[api_key]

    def add_campaign(self, api_key: str, name: str, status: str) -> int:
        with self.lock:
            workspace = self.add_workspace(api_key)
            campaign = CampaignRecord(id=next(self._ids), name=name, status=status)
            workspace.campaigns[campaign.id] = campaign
            return campaign.id

    def add_custom_variable(self, api_key: str, name: str) -> None:
        with self.lock:
            variables = self.add_workspace(api_key).custom_variables
            variables.setdefault(name.casefold(), (next(self._ids), name))

    # -- dispatch ---------------------------------------------------------------------------

    def dispatch(self, request: ApiRequest) -> Reply:
        for pattern, handlers in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            handler = handlers.get(request.method)
            if handler is None:
                allowed = ", ".join(sorted(handlers))
                return 405, {
                    "message": f"The {request.method} method is not supported for route "
                    f"{request.path.lstrip('/')}. Supported methods: {allowed}."
                }
            with self.lock:
                workspace = self._workspaces.get(request.api_key or "")
                if workspace is None:
                    return 401, {"message": "Unauthenticated."}
                return handler(workspace, match, request)
        return 404, dict(NOT_FOUND)

    # -- custom variables -----------------------------------------------------------------

    def _list_variables(self, ws: Workspace, _m: re.Match[str], _r: ApiRequest) -> Reply:
        items = [{"id": i, "name": n} for i, n in ws.custom_variables.values()]
        return 200, {"data": items}

    def _create_variable(self, ws: Workspace, _m: re.Match[str], req: ApiRequest) -> Reply:
        name = req.body.get("name") if isinstance(req.body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return _invalid({"name": ["The name field is required."]})
        if name.casefold() in ws.custom_variables:
            return _invalid({"name": ["The name has already been taken."]})
        ws.custom_variables[name.casefold()] = (next(self._ids), name)
        return 200, {"data": {"id": ws.custom_variables[name.casefold()][0], "name": name}}

    # -- leads ------------------------------------------------------------------------------

    def _upsert_leads(self, ws: Workspace, _m: re.Match[str], req: ApiRequest) -> Reply:
        body = req.body if isinstance(req.body, dict) else {}
        leads = body.get("leads")
        if not isinstance(leads, list) or not leads:
            return _invalid({"leads": ["The leads field is required."]})
        if len(leads) > MAX_LEADS:
            return _invalid(
                {"leads": [f"The leads field must not have more than {MAX_LEADS} items."]}
            )
        behavior = body.get("existing_lead_behavior")
        errors: dict[str, list[str]] = {}
        if behavior not in ("put", "patch"):
            errors["existing_lead_behavior"] = ["The selected existing lead behavior is invalid."]
        for index, lead in enumerate(leads):
            errors.update(self._lead_errors(ws, index, lead))
        if errors:
            return _invalid(errors)
        stored = [self._store_lead(ws, lead, replace=behavior == "put") for lead in leads]
        return 200, {"data": [lead.as_json() for lead in stored]}

    def _lead_errors(self, ws: Workspace, index: int, lead: object) -> dict[str, list[str]]:
        prefix = f"leads.{index}"
        if not isinstance(lead, dict):
            return {prefix: [f"The {prefix} field must be an array."]}
        errors: dict[str, list[str]] = {}
        for name in ("first_name", "last_name", "email"):
            value = lead.get(name)
            if not isinstance(value, str) or not value.strip():
                errors[f"{prefix}.{name}"] = [f"The {prefix}.{name} field is required."]
        email = lead.get("email")
        if f"{prefix}.email" not in errors and not _EMAIL.match(str(email).strip()):
            errors[f"{prefix}.email"] = [f"The {prefix}.email field must be a valid email address."]
        for name in ("title", "company", "notes"):
            if lead.get(name) is not None and not isinstance(lead.get(name), str):
                errors[f"{prefix}.{name}"] = [f"The {prefix}.{name} field must be a string."]
        variables = lead.get("custom_variables", [])
        if not isinstance(variables, list):
            errors[f"{prefix}.custom_variables"] = ["The custom variables field must be an array."]
            return errors
        for j, variable in enumerate(variables):
            key = f"{prefix}.custom_variables.{j}.name"
            var_name = variable.get("name") if isinstance(variable, dict) else None
            if not isinstance(var_name, str) or var_name.casefold() not in ws.custom_variables:
                errors[key] = [f"The selected {key} is invalid."]
        return errors

    def _store_lead(self, ws: Workspace, data: dict[str, Any], *, replace: bool) -> Lead:
        email = str(data["email"]).strip()
        variables = {
            ws.custom_variables[str(v["name"]).casefold()][1]: ""
            if v.get("value") is None
            else str(v["value"])
            for v in data.get("custom_variables", [])
        }
        lead = ws.leads.get(email.lower())
        if lead is None:
            lead = Lead(id=next(self._ids), email=email, first_name="", last_name="")
            ws.leads[email.lower()] = lead
            ws.leads_by_id[lead.id] = lead
            replace = True
        lead.first_name = str(data["first_name"])
        lead.last_name = str(data["last_name"])
        for name in ("title", "company", "notes"):
            if replace or data.get(name) is not None:
                setattr(lead, name, data.get(name))
        if replace:
            lead.custom_variables = variables
        else:
            lead.custom_variables.update(variables)
        return lead

    # -- campaigns --------------------------------------------------------------------------

    def _campaign(self, ws: Workspace, match: re.Match[str]) -> CampaignRecord | None:
        # Another workspace's campaign is indistinguishable from a missing one (404), as
        # with EmailBison's workspace-scoped queries.
        return ws.campaigns.get(int(match.group(1)))

    def _list_campaigns(self, ws: Workspace, _m: re.Match[str], req: ApiRequest) -> Reply:
        search = req.query.get("search", "").casefold()
        status = req.query.get("status")
        matching = [
            c
            for c in sorted(ws.campaigns.values(), key=lambda c: c.id)
            if search in c.name.casefold() and (status is None or c.status == status)
        ]
        try:
            page = max(1, int(req.query.get("page", "1")))
        except ValueError:
            page = 1
        last = max(1, -(-len(matching) // PER_PAGE))
        chunk = matching[(page - 1) * PER_PAGE : page * PER_PAGE]
        path = f"{req.base_url}/api/campaigns"

        def url(number: int) -> str:
            params = {k: v for k, v in req.query.items() if k != "page"} | {"page": str(number)}
            return f"{path}?{urlencode(params)}"

        first_item = (page - 1) * PER_PAGE + 1 if chunk else None
        return 200, {
            "data": [c.as_json() for c in chunk],
            "links": {
                "first": url(1),
                "last": url(last),
                "prev": url(page - 1) if page > 1 else None,
                "next": url(page + 1) if page < last else None,
            },
            "meta": {
                "current_page": page,
                "from": first_item,
                "last_page": last,
                "path": path,
                "per_page": PER_PAGE,
                "to": first_item + len(chunk) - 1 if first_item is not None else None,
                "total": len(matching),
            },
        }

    def _get_campaign(self, ws: Workspace, match: re.Match[str], _r: ApiRequest) -> Reply:
        campaign = self._campaign(ws, match)
        if campaign is None:
            return 404, dict(NOT_FOUND)
        return 200, {"data": campaign.as_json()}

    def _attach(self, ws: Workspace, match: re.Match[str], req: ApiRequest) -> Reply:
        campaign = self._campaign(ws, match)
        if campaign is None:
            return 404, dict(NOT_FOUND)
        ids = req.body.get("lead_ids") if isinstance(req.body, dict) else None
        if not isinstance(ids, list) or not ids:
            return _invalid({"lead_ids": ["The lead ids field is required."]})
        errors = {
            f"lead_ids.{i}": [f"The selected lead_ids.{i} is invalid."]
            for i, lead_id in enumerate(ids)
            if isinstance(lead_id, bool)
            or not isinstance(lead_id, int)
            or lead_id not in ws.leads_by_id
        }
        if errors:
            return _invalid(errors)
        campaign.lead_ids.update(dict.fromkeys(ids))
        return 200, {"data": {"success": True, "message": "Leads attached to campaign"}}

    def _rename(self, ws: Workspace, match: re.Match[str], req: ApiRequest) -> Reply:
        campaign = self._campaign(ws, match)
        if campaign is None:
            return 404, dict(NOT_FOUND)
        name = req.body.get("name") if isinstance(req.body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return _invalid({"name": ["The name field is required."]})
        if len(name) > 255:
            return _invalid({"name": ["The name field must not be greater than 255 characters."]})
        campaign.name = name
        return 200, {"data": campaign.as_json()}
