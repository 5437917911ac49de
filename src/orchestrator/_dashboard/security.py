"""Who may use the console and what the browser may do with its pages.

- **Bind address**: loopback by default; any other address needs ``ORCHESTRATOR_DASHBOARD_TOKEN``
  or ``ORCHESTRATOR_DASHBOARD_BASIC_AUTH`` (:func:`check_bind`), and then every request but
  ``/healthz`` and ``/readyz`` needs it (:class:`SecurityMiddleware`).
- **Token**: ``Authorization: Bearer <token>`` (scrapers, scripts) or the HttpOnly,
  SameSite=Strict session cookie set by the ``/login`` form, which holds an HMAC of the
  token, never the token.
- **CSRF**: signed double-submit: a random cookie, and in every form the HMAC of it under a
  per-process key (:class:`Csrf`); actions also refuse a foreign ``Origin``.
- **Headers** on every response: a CSP without inline script (``script-src 'self'``),
  ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy``, and
  ``Cache-Control: no-store`` on everything but the static files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator._dashboard.config import DashboardSettings
from orchestrator._errors import ConfigurationError

SESSION_COOKIE = "orchestrator_session"
CSRF_COOKIE = "orchestrator_csrf"
CSRF_FIELD = "csrf_token"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: DashboardSettings) -> None:
    """Refuse a non-loopback bind address unless a token or basic auth is configured."""
    if not is_loopback(host) and not settings.requires_auth:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host}: set ORCHESTRATOR_DASHBOARD_TOKEN "
            "(or ORCHESTRATOR_DASHBOARD_BASIC_AUTH=user:password) to bind anything but "
            "127.0.0.1"
        )


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``: an HMAC of it, not the token."""
    return hmac.new(token.encode(), b"orchestrator-dashboard-session", hashlib.sha256).hexdigest()


def cookies_of(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header means no cookies
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


class Authenticator:
    """Checks one request's credentials against the configured token or basic auth."""

    def __init__(self, settings: DashboardSettings) -> None:
        self._token = settings.token.get_secret_value() if settings.token else None
        self._basic = settings.basic_auth.get_secret_value() if settings.basic_auth else None
        self.enabled = settings.requires_auth

    @property
    def uses_token(self) -> bool:
        return self._token is not None

    def token_matches(self, candidate: str) -> bool:
        return self._token is not None and hmac.compare_digest(
            candidate.encode(), self._token.encode()
        )

    def session_cookie(self) -> str | None:
        return None if self._token is None else session_value(self._token)

    def allowed(self, headers: Headers) -> bool:
        if not self.enabled:
            return True
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if self._token is not None:
            if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
                return True
            cookie = cookies_of(headers).get(SESSION_COOKIE, "")
            expected = session_value(self._token)
            if cookie and hmac.compare_digest(cookie.encode(), expected.encode()):
                return True
        if self._basic is not None and scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(decoded.encode(), self._basic.encode())
        return False

    def challenge(self, scope: Scope) -> Response:
        if self._basic is not None and self._token is None:
            return PlainTextResponse(
                "authentication required\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="orchestrator", charset="UTF-8"'},
            )
        headers = Headers(scope=scope)
        if scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
            return RedirectResponse(_root(scope) + "login", status_code=303)
        extra = {"WWW-Authenticate": 'Bearer realm="orchestrator"'}
        if self._basic is not None:
            extra["WWW-Authenticate"] += ', Basic realm="orchestrator"'
        return PlainTextResponse("authentication required\n", status_code=401, headers=extra)


def _root(scope: Scope) -> str:
    return str(scope.get("root_path", "")).rstrip("/") + "/"


class SecurityMiddleware:
    """Authentication for every request, security headers on every response."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {b"cache-control"} or static
                ]
                headers.extend(SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        if path not in PUBLIC_PATHS and not self.auth.allowed(Headers(scope=scope)):
            await self.auth.challenge(scope)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


class Csrf:
    """Signed double-submit tokens: cookie ``c``, form field ``HMAC(key, c)``."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(32)

    def token_for(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    def valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.token_for(cookie).encode(), token.encode())


def same_origin(headers: Headers, allowed_hosts: Iterable[str] = ()) -> bool:
    """A POST's ``Origin`` (when the browser sends one) must be this host."""
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = headers.get("host", "")
    netloc = origin.split("://", 1)[-1]
    return netloc == host or netloc in set(allowed_hosts)
