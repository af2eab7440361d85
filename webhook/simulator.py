"""A local server speaking the platform's Open API, with fault injection.

For tests, demos and users without platform access. It serves, on one real socket
(plain or TLS), every path nodelimits uses:

====================================================  =====================================
``GET  /ai/openapi/v2/instance-service/resources``    per-node limits (``resourceGroup``,
                                                      ``acceleratorType``)
``GET  /ai/openapi/v2/instance-service/resource-group``  the groups, with their types
``POST /api/user/v3/tokens``                          AK/SK token issue (signature checked)
``POST /ac/openapi/v2/tokens``                        user/password/orgId token issue
``POST /ac/openapi/v2/tokens/next``                   renewal (old token in ``token``)
``GET  /ac/openapi/v2/tokens/state``                  "token is valid"
``GET  /ac/openapi/v2/center``                        ``aiUrls`` pointing at this server
====================================================  =====================================

Tokens are JWT-shaped (HS256 with a per-process secret) and carry ``user``,
``clusterId`` and ``expireTime`` (ms epoch, a string), like the platform's.

**Token and account answers (our choice; the platform documents codes, not statuses):**
a missing, unparseable, expired, revoked or foreign token -> HTTP 401 with code
``10008``; wrong AK/SK signature or password -> HTTP 401 with ``10008``; a frozen
account -> HTTP 200 with ``10007``; an account without permission -> ``10008``, without
API access -> ``10009``; the platform token (clusterId 0) on a container API -> ``10009``;
a missing parameter -> ``10003``; an unknown group or type -> ``10004``.

**Config** (YAML): the limits-file format plus optional keys::

    resourceGroups: [...]            # exactly the limits-file entries
    accounts:                        # default: one account "sim" with every credential
      - {user: alice, accessKey: AK, secretKey: SK, password: pw, orgId: org,
         status: active}             # active | frozen | no_permission | no_api_access
    clusters: [{clusterId: "11112", clusterName: kunshan, enabled: true}]
    requireToken: true               # false: the AI paths answer without a token
    tokenLifetimeSeconds: 3600
    seed: 1                          # for fault fractions
    faults: [{path: /ai/openapi/v2/instance-service/resources, kind: latency,
              seconds: 0.2, fraction: 1.0, count: null}]

**Faults** (:class:`Fault`): ``latency`` (``seconds``, then the normal answer), ``code``
(envelope ``code``, HTTP ``status`` default 200), ``status`` (HTTP ``status``, a text
body), ``html`` (an HTML error page, HTTP ``status`` default 200), ``truncated`` (the
normal JSON cut in half), ``null_data`` (code "0", ``data: null``), ``wrong_types``
(numbers in ``data`` as strings), ``numeric_code`` (``"code": 0``), ``drop`` (close the
connection without an answer), ``blackhole`` (accept, never answer). Each applies to
``path`` (exact, ``prefix*`` or ``*``) for a ``fraction`` of requests, or for the next
``count`` ones.

**Admin endpoint** (never faulted, never counted): ``GET /_simulator/stats`` ->
``{"requests": {path: n}, "rejected": {path: n}, "faults": [...]}``;
``DELETE /_simulator/stats``; ``POST /_simulator/faults`` (a fault or a list);
``DELETE /_simulator/faults``; ``POST /_simulator/tokens/revoke``;
``PUT /_simulator/accounts/{user}`` ``{"status": ...}``; ``PUT /_simulator/groups``
(one limits-file entry, added or replaced).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import random
import secrets
import signal
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from webhook.core.limits import AcceleratorType, LimitsFile, NodeLimits
from webhook.platform.auth import (
    AKSK_TOKENS_PATH,
    NEXT_TOKEN_PATH,
    PASSWORD_TOKENS_PATH,
    aksk_signature,
)
from webhook.platform.client import CENTER_PATH, LIMITS_PATH, RESOURCE_GROUPS_PATH
from webhook.platform.models import ErrorCode

__all__ = [
    "Account",
    "Cluster",
    "Fault",
    "Simulator",
    "SimulatorConfig",
    "SimulatorConfigError",
    "load_simulator_config",
    "serve",
    "server_ssl_context",
]

TOKEN_STATE_PATH = "/ac/openapi/v2/tokens/state"
ADMIN_PREFIX = "/_simulator"
TIMESTAMP_SKEW = 300  # seconds an AK/SK timestamp may be off
RENEWABLE_MS = 24 * 3600 * 1000  # tokens/next works up to 24 h after expiry

AccountStatus = Literal["active", "frozen", "no_permission", "no_api_access"]
FaultKind = Literal[
    "latency",
    "code",
    "status",
    "html",
    "truncated",
    "null_data",
    "wrong_types",
    "numeric_code",
    "drop",
    "blackhole",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Account(_Model):
    user: str
    accessKey: str | None = None
    secretKey: str | None = Field(default=None, repr=False)
    password: str | None = Field(default=None, repr=False)
    orgId: str | None = Field(default=None, repr=False)
    status: AccountStatus = "active"


class Cluster(_Model):
    clusterId: str
    clusterName: str
    enabled: bool = True
    """False: the region is listed in token answers with ``token: null`` (account disabled)."""


class Fault(_Model):
    kind: FaultKind
    path: str = "*"
    seconds: Annotated[float, Field(ge=0)] = 0.0
    code: str = ErrorCode.INTERNAL.value
    status: Annotated[int, Field(ge=100, le=599)] | None = None
    fraction: Annotated[float, Field(ge=0, le=1)] = 1.0
    count: Annotated[int, Field(ge=1)] | None = None
    """Apply to the next ``count`` matching requests only (then the fault is removed)."""

    def matches(self, path: str) -> bool:
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


# The simulator's demo account: every credential, so each token flow works out of the box.
DEFAULT_ACCOUNT = Account(
    user="sim",
    accessKey="sim-ak",
    secretKey="sim-sk",
    password="sim-password",  # noqa: S106
    orgId="sim-org",
)
DEFAULT_CLUSTER = Cluster(clusterId="11112", clusterName="kunshan")


class SimulatorConfig(_Model):
    resourceGroups: tuple[NodeLimits, ...] = ()
    accounts: tuple[Account, ...] = (DEFAULT_ACCOUNT,)
    clusters: tuple[Cluster, ...] = (DEFAULT_CLUSTER,)
    requireToken: bool = True
    tokenLifetimeSeconds: Annotated[float, Field(gt=0)] = 3600.0
    seed: int | None = None
    faults: tuple[Fault, ...] = ()

    @model_validator(mode="after")
    def _groups_are_a_limits_file(self) -> SimulatorConfig:
        LimitsFile(resourceGroups=self.resourceGroups)  # types present, no duplicates
        if any(c.clusterId == "0" for c in self.clusters):
            raise ValueError('clusterId "0" is the platform token; choose another id')
        return self


class SimulatorConfigError(ValueError):
    """The simulator's config file is unreadable or invalid; one line per problem."""


def load_simulator_config(path: Path) -> SimulatorConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SimulatorConfigError(f"{path}: {exc}") from None
    try:
        return SimulatorConfig.model_validate(data or {})
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise SimulatorConfigError("\n".join(lines)) from None


# --- JWT-shaped tokens -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Tokens:
    """Issues and checks HS256 JWTs; ``revoke_all`` invalidates every token issued so far."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._secret = secrets.token_bytes(32)
        self._generation = 0
        self._serial = itertools.count(1)

    def issue(self, account: Account, cluster_id: str) -> str:
        expire_ms = int((time.time() + self.lifetime) * 1000)
        claims = {
            "computeUser": account.user,
            "accountStatus": "Trial",
            "creator": "ac",
            "role": "1",
            "expireTime": str(expire_ms),
            "clusterId": cluster_id,
            "invoker": account.orgId or "",
            "user": account.user,
            "userId": str(abs(hash(account.user)) % 10**11),
            "gen": self._generation,
            "jti": next(self._serial),  # two tokens issued in one millisecond still differ
        }
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(sig)}"

    def claims(self, token: str, *, grace_ms: int = 0) -> dict[str, Any] | None:
        """The claims of a token we issued that is unrevoked and unexpired (+grace)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            sig = _unb64(parts[2])
            want = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
            if not hmac.compare_digest(sig, want.digest()):
                return None
            claims: dict[str, Any] = json.loads(_unb64(parts[1]))
            expired = int(claims["expireTime"]) + grace_ms <= time.time() * 1000
        except (ValueError, KeyError, TypeError):
            return None
        if expired or claims.get("gen") != self._generation:
            return None
        return claims

    def revoke_all(self) -> None:
        self._generation += 1


# --- responses ---------------------------------------------------------------------------


def _envelope(
    data: Any = None, code: str = "0", msg: str = "success", status: int = 200
) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": data}, status=status)


def _error(code: ErrorCode, msg: str | None = None, *, status: int = 200) -> web.Response:
    return _envelope(None, code.value, msg or code.meaning, status)


_BAD_TOKEN = "token missing, invalid or expired"
_STATUS_CODES = {
    "frozen": ErrorCode.ACCOUNT_FROZEN,
    "no_permission": ErrorCode.INSUFFICIENT_PERMISSION,
    "no_api_access": ErrorCode.NO_API_ACCESS,
}
_HTML = (
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)


def _stringify_numbers(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return {k: _stringify_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_numbers(v) for v in value]
    return value


def _body(response: web.StreamResponse) -> bytes:
    # Our handlers answer with web.json_response: the body is bytes already.
    assert isinstance(response, web.Response)
    assert isinstance(response.body, bytes)
    return response.body


def _rewrite(
    response: web.StreamResponse, change: Callable[[dict[str, Any]], None]
) -> web.Response:
    body = json.loads(_body(response))
    change(body)
    return web.json_response(body, status=response.status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """The simulated platform. ``await start()``, drive it, ``await stop()``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._groups = {(g.resourceGroup, g.acceleratorType): g for g in config.resourceGroups}
        self._accounts = {a.user: a for a in config.accounts}
        self._faults: list[list[Any]] = []  # [fault, remaining count or None]
        self._rng = random.Random(config.seed)
        self._tokens = _Tokens(config.tokenLifetimeSeconds)
        self._requests: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        for fault in config.faults:
            self.add_fault(fault)

    def __repr__(self) -> str:
        return f"Simulator(url={self.url!r}, groups={len(self._groups)})"

    # --- Python API for tests ----------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Listen on a real socket; returns the base URL (``port=0``: any free port)."""
        app = web.Application(middlewares=[self._faults_middleware])
        self._routes(app)
        # handler_cancellation: a request whose client gave up (a timeout in the test)
        # stops at once, as a real server's would, instead of holding its connection.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert isinstance(server, asyncio.Server)
        bound = server.sockets[0].getsockname()[1]
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        """Release blackholed requests, close every connection and the socket."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def open_connections(self) -> int:
        """Client connections currently open (tests prove the client leaks none)."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    @property
    def token_lifetime(self) -> float:
        return self._tokens.lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: float) -> None:
        self._tokens.lifetime = seconds

    def add_fault(self, fault: Fault) -> None:
        self._faults.append([fault, fault.count])

    def clear_faults(self) -> None:
        self._faults.clear()

    def requests(self, path: str) -> int:
        """Requests received on ``path`` (faulted ones included)."""
        return self._requests[path]

    def rejected(self, path: str) -> int:
        """Requests on ``path`` refused for their token."""
        return self._rejected[path]

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self._requests),
            "rejected": dict(self._rejected),
            "faults": [
                {**f.model_dump(exclude_none=True), "remaining": n} for f, n in self._faults
            ],
        }

    def reset_stats(self) -> None:
        self._requests.clear()
        self._rejected.clear()

    def revoke_tokens(self) -> None:
        self._tokens.revoke_all()

    def set_account_status(self, user: str, status: AccountStatus) -> None:
        self._accounts[user] = self._accounts[user].model_copy(update={"status": status})

    def put_group(self, limits: NodeLimits) -> None:
        LimitsFile(resourceGroups=(limits,))  # must carry acceleratorType
        self._groups[(limits.resourceGroup, limits.acceleratorType)] = limits

    def issue_token(self, user: str | None = None, cluster_id: str | None = None) -> str:
        """A valid token, as the token endpoints would issue it (e.g. for a token file)."""
        account = self._accounts[user] if user else next(iter(self._accounts.values()))
        return self._tokens.issue(account, cluster_id or self.config.clusters[0].clusterId)

    # --- routing and faults ------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(LIMITS_PATH, self._limits)
        r.add_get(RESOURCE_GROUPS_PATH, self._resource_groups)
        r.add_post(AKSK_TOKENS_PATH, self._aksk_tokens)
        r.add_post(PASSWORD_TOKENS_PATH, self._password_tokens)
        r.add_post(NEXT_TOKEN_PATH, self._next_token)
        r.add_get(TOKEN_STATE_PATH, self._token_state)
        r.add_get(CENTER_PATH, self._center)
        r.add_get(f"{ADMIN_PREFIX}/stats", self._admin_stats)
        r.add_delete(f"{ADMIN_PREFIX}/stats", self._admin_reset_stats)
        r.add_post(f"{ADMIN_PREFIX}/faults", self._admin_add_faults)
        r.add_delete(f"{ADMIN_PREFIX}/faults", self._admin_clear_faults)
        r.add_post(f"{ADMIN_PREFIX}/tokens/revoke", self._admin_revoke)
        r.add_put(f"{ADMIN_PREFIX}/accounts/{{user}}", self._admin_account)
        r.add_put(f"{ADMIN_PREFIX}/groups", self._admin_group)

    def _pick_faults(self, path: str) -> list[Fault]:
        picked: list[Fault] = []
        for slot in list(self._faults):
            fault, remaining = slot
            if not fault.matches(path):
                continue
            if fault.fraction < 1.0 and self._rng.random() >= fault.fraction:
                continue
            picked.append(fault)
            if remaining is not None:
                slot[1] = remaining - 1
                if slot[1] <= 0:
                    self._faults.remove(slot)
        return picked

    @web.middleware
    async def _faults_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith(ADMIN_PREFIX):
            return await handler(request)
        self._requests[path] += 1
        faults = self._pick_faults(path)
        for fault in faults:
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
        terminal = next((f for f in faults if f.kind != "latency"), None)
        if terminal is None:
            return await handler(request)
        return await self._apply(terminal, request, handler)

    async def _apply(
        self, fault: Fault, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "code":
            return _envelope(None, fault.code, "injected fault", fault.status or 200)
        if kind == "status":
            status = fault.status or 503
            return web.Response(status=status, text=f"injected HTTP {status}")
        if kind == "html":
            return web.Response(status=fault.status or 200, text=_HTML, content_type="text/html")
        if kind in ("drop", "blackhole"):
            if kind == "blackhole":
                await self._stopping.wait()
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        response = await handler(request)
        if kind == "truncated":
            body = _body(response)
            return web.Response(
                body=body[: len(body) // 2], status=response.status, content_type="application/json"
            )
        if kind == "null_data":
            return _rewrite(response, lambda b: b.update(data=None))
        if kind == "wrong_types":
            return _rewrite(response, lambda b: b.update(data=_stringify_numbers(b.get("data"))))
        return _rewrite(response, lambda b: b.update(code=int(str(b.get("code", 0)) or 0)))

    # --- auth --------------------------------------------------------------------------

    def _check_token(self, request: web.Request, *, container_api: bool) -> web.Response | None:
        """None when the request may proceed, else the platform's refusal."""
        if container_api and not self.config.requireToken:
            return None
        claims = self._tokens.claims(request.headers.get("token", ""))
        account = self._accounts.get(str(claims.get("user"))) if claims else None
        if claims is None or account is None:
            self._rejected[request.path] += 1
            return _error(ErrorCode.INSUFFICIENT_PERMISSION, _BAD_TOKEN, status=401)
        if account.status != "active":
            self._rejected[request.path] += 1
            return _error(_STATUS_CODES[account.status])
        if container_api and str(claims.get("clusterId")) == "0":
            self._rejected[request.path] += 1
            return _error(ErrorCode.NO_API_ACCESS, "the platform token cannot call container APIs")
        return None

    def _region_tokens(self, account: Account) -> web.Response:
        if account.status == "frozen":
            return _error(ErrorCode.ACCOUNT_FROZEN)
        data: list[dict[str, str | None]] = [
            {"clusterId": "0", "clusterName": "ac", "token": self._tokens.issue(account, "0")}
        ]
        data += [
            {
                "clusterId": c.clusterId,
                "clusterName": c.clusterName,
                "token": self._tokens.issue(account, c.clusterId) if c.enabled else None,
            }
            for c in self.config.clusters
        ]
        return _envelope(data)

    async def _aksk_tokens(self, request: web.Request) -> web.StreamResponse:
        h = request.headers
        user, ak, ts, sig = (h.get(k) for k in ("user", "accessKey", "timestamp", "signature"))
        if not (user and ak and ts and sig):
            return _error(ErrorCode.MISSING_PARAMETERS)
        account = self._accounts.get(user)
        if account is None or account.accessKey != ak or account.secretKey is None:
            return _error(ErrorCode.INSUFFICIENT_PERMISSION, "invalid credentials", status=401)
        want = aksk_signature(access_key=ak, secret_key=account.secretKey, user=user, timestamp=ts)
        fresh = ts.isdigit() and abs(int(ts) - time.time()) <= TIMESTAMP_SKEW
        if not (hmac.compare_digest(want, sig) and fresh):
            return _error(ErrorCode.INSUFFICIENT_PERMISSION, "invalid signature", status=401)
        return self._region_tokens(account)

    async def _password_tokens(self, request: web.Request) -> web.StreamResponse:
        h = request.headers
        user, password, org = (h.get(k) for k in ("user", "password", "orgId"))
        if not (user and password and org):
            return _error(ErrorCode.MISSING_PARAMETERS)
        account = self._accounts.get(user)
        good = (
            account is not None
            and account.password is not None
            and hmac.compare_digest(account.password, password)
            and account.orgId == org
        )
        if not good or account is None:
            return _error(ErrorCode.INSUFFICIENT_PERMISSION, "invalid credentials", status=401)
        return self._region_tokens(account)

    async def _next_token(self, request: web.Request) -> web.StreamResponse:
        claims = self._tokens.claims(request.headers.get("token", ""), grace_ms=RENEWABLE_MS)
        account = self._accounts.get(str(claims.get("user"))) if claims else None
        if claims is None or account is None:
            self._rejected[request.path] += 1
            return _error(ErrorCode.INSUFFICIENT_PERMISSION, _BAD_TOKEN, status=401)
        if account.status == "frozen":
            return _error(ErrorCode.ACCOUNT_FROZEN)
        return _envelope(self._tokens.issue(account, str(claims["clusterId"])))

    async def _token_state(self, request: web.Request) -> web.StreamResponse:
        refused = self._check_token(request, container_api=False)
        return refused or _envelope("token is valid", msg="token is valid")

    async def _center(self, request: web.Request) -> web.StreamResponse:
        refused = self._check_token(request, container_api=False)
        if refused is not None:
            return refused
        base = str(request.url.origin())
        entries = [
            {"enable": "false", "version": "v1", "url": "https://disabled.invalid/ai"},
            {"enable": "true", "version": "v2", "url": f"{base}/ai"},
        ]
        other = [{"enable": "true", "version": "v2", "url": base}]
        return _envelope(
            {"aiUrls": entries, "hpcUrls": other, "efileUrls": other, "eshellUrls": other}
        )

    # --- container APIs ----------------------------------------------------------------

    async def _limits(self, request: web.Request) -> web.StreamResponse:
        refused = self._check_token(request, container_api=True)
        if refused is not None:
            return refused
        group = request.query.get("resourceGroup")
        raw_type = request.query.get("acceleratorType")
        if not group or not raw_type:
            return _error(ErrorCode.MISSING_PARAMETERS)
        try:
            accelerator = AcceleratorType(raw_type)
        except ValueError:
            return _error(ErrorCode.INVALID_PARAMETERS, f"invalid acceleratorType {raw_type}")
        limits = self._groups.get((group, accelerator))
        if limits is None:
            return _error(ErrorCode.INVALID_PARAMETERS, f"invalid resourceGroup {group}")
        data = limits.model_dump(mode="json", exclude={"acceleratorType"})
        claims = self._tokens.claims(request.headers.get("token", ""))
        data["userName"] = claims.get("user") if claims else None
        return _envelope(data)

    async def _resource_groups(self, request: web.Request) -> web.StreamResponse:
        refused = self._check_token(request, container_api=True)
        if refused is not None:
            return refused
        data = [
            {"resourceGroup": g.resourceGroup, "acceleratorType": t.value if t else None}
            for (_, t), g in sorted(self._groups.items(), key=lambda kv: kv[0][0])
        ]
        return _envelope(data)

    # --- admin -------------------------------------------------------------------------

    async def _admin_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _admin_reset_stats(self, request: web.Request) -> web.StreamResponse:
        self.reset_stats()
        return web.json_response(self.stats())

    async def _admin_add_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            items = body if isinstance(body, list) else [body]
            faults = [Fault.model_validate(item) for item in items]
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for fault in faults:
            self.add_fault(fault)
        return web.json_response(self.stats())

    async def _admin_clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.clear_faults()
        return web.json_response(self.stats())

    async def _admin_revoke(self, request: web.Request) -> web.StreamResponse:
        self.revoke_tokens()
        return web.json_response({"revoked": True})

    async def _admin_account(self, request: web.Request) -> web.StreamResponse:
        user = request.match_info["user"]
        try:
            status = (await request.json())["status"]
            if user not in self._accounts or status not in _STATUS_CODES | {"active": None}:
                raise ValueError(f"unknown user {user!r} or status {status!r}")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.set_account_status(user, status)
        return web.json_response({"user": user, "status": status})

    async def _admin_group(self, request: web.Request) -> web.StreamResponse:
        try:
            self.put_group(NodeLimits.model_validate(await request.json()))
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"groups": len(self._groups)})


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context from PEM files (raises ``OSError``/``ssl.SSLError``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(
    config: SimulatorConfig,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    announce: Callable[[str], None],
) -> None:
    """Run until SIGINT or SIGTERM; ``announce`` gets the one "listening" line."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    simulator = Simulator(config)
    url = await simulator.start(host, port, ssl_context)
    announce(f"simulator listening on {url}")
    try:
        await stop.wait()
    finally:
        await simulator.stop()
