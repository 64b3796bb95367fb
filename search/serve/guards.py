"""Guards around the HTTP API: API keys, limits (body, concurrency, time), request ids, access logs, bind rule.

`install_guards(app, settings)` wraps the app in one pure ASGI middleware (no BaseHTTPMiddleware: responses
stream through untouched) and serves `/metrics`. In order, for each HTTP request:

1. a request id (`X-Request-ID` if sane, else a new one), echoed on the response, with the name of the replica
   that answered (`X-Search-Replica`: a Ray Serve replica's id, or "local");
2. a path with a `..` segment or a NUL is refused (400);
3. API keys, when configured: `Authorization: Bearer <key>` (401 without a valid key, 403 for a read key on a
   write or admin route); `/health` and CORS preflights are open;
4. the body size (413), judged by Content-Length, or by reading a chunked body up to the limit;
5. bounded concurrency: at most N requests in flight (503 with Retry-After when full), `/health` and
   `/metrics` exempt so that monitoring still answers under load;
6. a timeout (504) until the response starts, for reads only: a write or admin call (a rebuild, a report
   with wait=true) runs to its end rather than half-answering. Sync routes run in threads, which cannot be
   cancelled: the client gets its 504 on time, the work finishes in the background (its answer is dropped)
   and holds its concurrency slot until then, so abandoned work can never pile up beyond the limit.

Every request ends in one JSON line on the `search.access` logger (request id, method, route template, path,
status, latency, key scope; never a header, the query string or a key) and in the request metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.errors import BadInput
from search.serve.metrics import Metrics, metrics_endpoint

log = logging.getLogger(__name__)
access_log = logging.getLogger("search.access")

READ, ADMIN = "read", "admin"
OPEN_PATHS = frozenset({"/health"})
UNLIMITED_PATHS = frozenset({"/health", "/metrics"})
ADMIN_PREFIXES = ("/admin",)
# POST routes that only read; any other POST (reports, future writes) needs the admin scope.
READ_POSTS = ("/search", "/mcp", "/v1/embeddings")
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
MIN_KEY_CHARS = 16
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_KEY_HINT = "set keys in SEARCH_API_KEYS (key or key:admin, comma-separated) or SEARCH_API_KEY_FILE (one a line)"


class GuardSettings(Protocol):
    """The settings the guards read (`search.config.Settings` has them)."""

    @property
    def max_body_bytes(self) -> int: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def api_keys(self) -> SecretStr: ...
    @property
    def api_key_file(self) -> Path | None: ...
    @property
    def cors_origins(self) -> list[str]: ...


@dataclass(frozen=True)
class ApiKeys:
    """SHA-256 digests of the configured keys with their scopes; the keys themselves are not kept."""

    digests: tuple[tuple[bytes, str], ...] = ()

    @classmethod
    def load(cls, spec: str = "", file: Path | None = None) -> ApiKeys:
        """Keys from a comma-separated list and/or a file of one key a line (# comments), each `key[:scope]`."""
        entries = [s.strip() for s in spec.split(",") if s.strip()]
        if file is not None:
            try:
                lines = file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise BadInput(f"{file}: cannot read the API key file ({exc}); {_KEY_HINT}") from None
            if file.stat().st_mode & 0o077:
                log.warning("%s is readable by other users; `chmod 600 %s`", file, file)
            entries += [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
        return cls(tuple(_parse_key(entry, n) for n, entry in enumerate(entries, start=1)))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def scope_of(self, token: str) -> str | None:
        """The scope of a presented key, or None; every key is compared, in constant time, whatever matches."""
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for digest, scope in self.digests:
            if hmac.compare_digest(given, digest) and found != ADMIN:
                found = scope
        return found


def _parse_key(entry: str, number: int) -> tuple[bytes, str]:
    key, scope = entry, READ
    if ":" in entry:
        key, _, scope = entry.rpartition(":")
    if scope not in (READ, ADMIN):
        raise BadInput(f"API key #{number}: unknown scope {scope!r}; write key, key:read or key:admin")
    if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
        raise BadInput(
            f"API key #{number}: {len(key)} characters; use at least {MIN_KEY_CHARS}, without spaces, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return hashlib.sha256(key.encode()).digest(), scope


def required_scope(method: str, path: str) -> str | None:
    """None for open routes, else READ or ADMIN: writes (PUT, PATCH, DELETE, POST other than searches) and /admin."""
    if path in OPEN_PATHS or method == "OPTIONS":
        return None
    if method in WRITE_METHODS or _under(path, ADMIN_PREFIXES) or (method == "POST" and not _under(path, READ_POSTS)):
        return ADMIN
    return READ


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def check_bind(host: str, allow_public: bool, has_keys: bool) -> list[str]:
    """Warnings for serving on `host`; BadInput for a non-loopback address without `allow_public`."""
    if _is_loopback(host):
        return []
    if not allow_public:
        raise BadInput(
            f"refusing to serve on {host}: it is not a loopback address, so other machines could reach the API; "
            "pass --allow-public (and set SEARCH_API_KEYS) to serve on the network, or use --host 127.0.0.1"
        )
    if has_keys:
        return []
    return [f"serving on {host} without API keys: anyone who can reach it can use the API; set SEARCH_API_KEYS"]


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def install_guards(
    app: FastAPI, settings: GuardSettings, metrics: Metrics | None = None, replica: str = "local"
) -> Guard:
    """Wrap `app` in the guards (and CORS, when origins are configured) and serve `/metrics` (read scope)."""
    metrics = metrics or Metrics(replica)
    keys = ApiKeys.load(settings.api_keys.get_secret_value(), settings.api_key_file)
    guard = Guard(settings, keys, metrics, app, replica)
    app.state.guard = guard
    app.add_api_route("/metrics", metrics_endpoint(metrics), methods=["GET"], include_in_schema=False)
    app.add_middleware(GuardMiddleware, guard=guard)
    if settings.cors_origins:  # outermost, so that even a 401 or 503 carries the CORS headers a browser needs
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "x-search-replica", "retry-after"],
        )
    return guard


class Guard:
    """The state the middleware shares across requests: settings, keys, metrics and the in-flight count."""

    def __init__(
        self, settings: GuardSettings, keys: ApiKeys, metrics: Metrics, app: FastAPI, replica: str = "local"
    ) -> None:
        self.replica = replica
        self.max_body_bytes = settings.max_body_bytes
        self.max_concurrency = settings.max_concurrency
        self.timeout = settings.request_timeout
        self.keys = keys
        self.metrics = metrics
        self.routes: list[BaseRoute] = app.router.routes
        self.in_flight = 0

    def route_of(self, scope: Scope) -> str:
        """The route template (`/passages/{passage_id}`), so metrics and logs do not grow a label per id."""
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", "?"))
            if match is Match.PARTIAL and partial is None:
                partial = str(getattr(route, "path", "?"))
        return partial or "<unmatched>"


class GuardMiddleware:
    """A pure ASGI middleware applying a `Guard`; see the module docstring for what it does, in order."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = _headers(scope)
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        outcome = _Outcome()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome.status = message["status"]
                answer = MutableHeaders(scope=message)
                answer["x-request-id"] = request_id
                answer["x-search-replica"] = self.guard.replica
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                outcome.seconds = time.perf_counter() - start
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_id, headers, outcome)
        finally:
            seconds = outcome.seconds or time.perf_counter() - start
            method, route = scope["method"], self.guard.route_of(scope)
            label = method if method in _METHODS else "OTHER"  # labels from a bounded set, whatever a fuzzer sends
            self.guard.metrics.observe_request(label, route, outcome.status, seconds)
            line = {
                "request_id": request_id, "method": method, "route": route, "path": scope["path"][:200],
                "status": outcome.status, "latency_ms": round(seconds * 1000, 2), "key_scope": outcome.key_scope,
            }  # fmt: skip
            access_log.info(json.dumps(line, ensure_ascii=False))

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], out: _Outcome
    ) -> None:
        guard, method, path = self.guard, scope["method"], scope["path"]
        if "\0" in path or ".." in path.split("/"):
            await _answer(send, 400, "bad_path", "the path has a '..' segment or a NUL character; name ids as they are")
            return
        required = required_scope(method, path)
        if required and guard.keys:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            granted = guard.keys.scope_of(token.strip()) if scheme.lower() == "bearer" else None
            if granted is None:
                problem = "a valid API key" if token else "an API key"
                await _answer(send, 401, "unauthorized", f"this route needs {problem}: send `Authorization: Bearer "
                              "<key>`; ask the operator for a key", ((b"www-authenticate", b"Bearer"),))  # fmt: skip
                return
            out.key_scope = granted
            if required == ADMIN and granted != ADMIN:
                await _answer(send, 403, "forbidden", f"{method} {path} needs an admin key; this key can only read")
                return
        limit = guard.max_body_bytes
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, 413, "too_large", f"the request body is over {limit:,} bytes; send less per call")
            return
        if length is None and "transfer-encoding" in headers:
            buffered = await _buffered(receive, limit)
            if buffered is None:
                await _answer(send, 413, "too_large", f"the request body is over {limit:,} bytes; send less per call")
                return
            receive = buffered
        if path in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if guard.in_flight >= guard.max_concurrency:
            await _answer(send, 503, "busy", f"the server is at its limit of {guard.max_concurrency} requests in "
                          "flight; retry in a second", ((b"retry-after", b"1"),))  # fmt: skip
            return
        guard.in_flight += 1
        guard.metrics.in_flight.set(guard.in_flight)
        try:
            if required == ADMIN:
                await self.app(scope, receive, send)
            else:
                await self._timed(scope, receive, send)
        finally:
            guard.in_flight -= 1
            guard.metrics.in_flight.set(guard.in_flight)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer 504 if no response has started within the timeout (see the module docstring)."""
        timeout = self.guard.timeout
        if timeout <= 0:
            await self.app(scope, receive, send)
            return
        started = timed_out = False
        error: Exception | None = None
        finished = anyio.Event()

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the client already has its 504
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def run() -> None:
            nonlocal error
            try:
                await self.app(scope, receive, guarded_send)
            except Exception as exc:  # re-raised below as itself, not wrapped in an ExceptionGroup
                error = exc
            finally:
                finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.move_on_after(timeout):
                await finished.wait()
            if not finished.is_set() and not started:
                timed_out = True
                message = f"no answer within {timeout:g} s; try a smaller request (fewer queries, smaller k)"
                await _answer(send, 504, "timeout", message)
                tg.cancel_scope.cancel()  # async work stops here; a thread finishes, unheard
        if error is not None and not timed_out:
            raise error


@dataclass
class _Outcome:
    status: int = 500  # if the app dies without answering, the server answers 500
    seconds: float = 0.0
    key_scope: str = "-"


_Headers = dict[str, str]
_RawHeaders = tuple[tuple[bytes, bytes], ...]


def _headers(scope: Scope) -> _Headers:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _buffered(receive: Receive, limit: int) -> Receive | None:
    """A chunked body read up to `limit` bytes and replayed to the app; None when it is larger."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body"):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def _answer(
    send: Send, status: int, code: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """An error in the API's one shape: {"error": {"code", "message"}}."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
