"""Who is asking: an Authenticator turns a request's X-Auth-Token into a RequestContext.

    auth_strategy = noauth    NoAuth: the token is "user:project" and is believed as is
                              (labs, tests); the users in noauth_admin_users are admins.
    auth_strategy = keystone  KeystoneAuth: the token is validated by Keystone through
                              keystonemiddleware's auth_token, which we drive as a WSGI
                              middleware around a tiny WSGI app, one call per request, in
                              a worker thread. User, project and roles come from the token;
                              the admin role makes an admin.

One Authenticator per process, built from the settings the first time the API asks
(`authenticator_for`). Every rejection is a Cinder fault: 401 with
`WWW-Authenticate: Keystone uri="..."` for a missing, invalid, expired or revoked token,
503 when Keystone cannot be asked.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from cinderblock import exceptions as exc
from cinderblock.config import ConfigError, KeystoneAuthSettings, Settings
from cinderblock.context import RequestContext
from cinderblock.policy import Enforcer, PolicyFileError, load_enforcer

if TYPE_CHECKING:
    from cinderblock.services.common import ServiceDeps

LOG = logging.getLogger(__name__)
# Longer than any Keystone token (fernet ones are ~200 bytes, JWS ones under 1 KiB).
MAX_TOKEN_LENGTH = 8192
REQUIRES_AUTH = "The request you have made requires authentication."
# noauth user and project ids: at most Keystone's id length.
MAX_NOAUTH_ID = 64


class _URL(Protocol):
    @property
    def path(self) -> str: ...


class IncomingRequest(Protocol):
    """What an Authenticator reads from a request (a Starlette Request fits)."""

    @property
    def headers(self) -> Any: ...  # a case-insensitive mapping

    @property
    def method(self) -> str: ...

    @property
    def url(self) -> _URL: ...


class TokenRejected(exc.NotAuthenticated):
    """401 that tells the client where to get a token (WWW-Authenticate: Keystone uri=...)."""

    def __init__(self, message: str, www_authenticate_uri: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": f'Keystone uri="{www_authenticate_uri}"'}


class IdentityServiceUnavailable(exc.CinderblockError):
    """Keystone did not answer (or answered nonsense): nobody can be authenticated now."""

    code = 503
    message_template = "The identity service is unavailable; try again later."


@dataclass(frozen=True)
class AuthenticatedContext(RequestContext):
    """A caller's context that also names the policy judging it: the Enforcer this
    service loaded (services/policy.py reads it; several services may share a process)."""

    policy: Enforcer | None = field(default=None, compare=False, repr=False)


class Authenticator(ABC):
    """Turns a request into a RequestContext or raises NotAuthenticated (401)."""

    # True when authenticate() may wait on the network: call it from a worker thread.
    blocking: ClassVar[bool] = False
    # The service's policy (None: the defaults); build_authenticator sets it.
    policy: Enforcer | None = None

    @abstractmethod
    def authenticate(self, request: IncomingRequest, request_id: str) -> RequestContext: ...


class NoAuth(Authenticator):
    """Like Cinder's noauth: X-Auth-Token is "user:project" (or just "user")."""

    def __init__(self, admin_users: Iterable[str]) -> None:
        self.admin_users = frozenset(admin_users)

    def authenticate(self, request: IncomingRequest, request_id: str) -> RequestContext:
        token = request.headers.get("x-auth-token")
        if not token:
            raise exc.NotAuthenticated()
        user, _, project = token.partition(":")
        user = user.strip()
        project = project.strip() or user
        if not user or len(user) > MAX_NOAUTH_ID or len(project) > MAX_NOAUTH_ID:
            # (a Keystone token sent to a noauth service is refused, not taken for a name:
            # it would be stored and logged as the caller's user and project id)
            raise exc.NotAuthenticated()
        is_admin = user in self.admin_users
        roles = ("admin", "member", "reader") if is_admin else ("member", "reader")
        return AuthenticatedContext(
            policy=self.policy,
            user_id=user,
            project_id=project,
            roles=roles,
            is_admin=is_admin,
            request_id=request_id,
            global_request_id=request.headers.get("x-openstack-request-id"),
        )


@dataclass(frozen=True)
class Identity:
    """What a valid token says: who, in which project, with which roles."""

    user_id: str
    project_id: str
    roles: tuple[str, ...]


class TokenCache:
    """Bounded LRU of validation results keyed by the token's SHA-256 (never the token).

    A value is an Identity (valid token) or a str (why it was refused). Entries expire
    after their own time to live; the least recently used goes first when full.
    """

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Identity | str]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

    def get(self, key: bytes) -> Identity | str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: bytes, value: Identity | str, ttl: float) -> None:
        if ttl <= 0 or self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


KEYSTONE_GROUP = "keystone_authtoken"
NO_CACHE_KEY = "cinderblock.no_token_cache"


class _NoCache:
    """What keystonemiddleware sees as its memcache-like cache: it forgets everything."""

    def get(self, key: str) -> None:
        return None

    def set(self, key: str, value: Any, time: int = 0, **kwargs: Any) -> bool:
        return True


_NO_CACHE = _NoCache()


class KeystoneAuth(Authenticator):
    """Tokens validated by Keystone through keystonemiddleware.auth_token.

    The middleware wraps `_identified`, a WSGI app that only records the X-User-Id /
    X-Project-Id / X-Roles / X-Identity-Status headers the middleware injected. It
    is called with a minimal environ holding the token, the method and the path (the
    latter two let it check application-credential access rules). It answers 401
    itself for a bad token and 503 when Keystone is unreachable.

    Its own token cache is given one that keeps nothing (it is unbounded without
    memcached); ours is
    bounded and also remembers refused tokens, so a flood of garbage tokens costs
    Keystone one validation each per cache period, not one per request.
    """

    blocking = True

    def __init__(
        self,
        conf: KeystoneAuthSettings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        try:
            from keystoneauth1 import loading
            from keystonemiddleware import auth_token
            from oslo_config import cfg
        except ImportError as err:
            raise ConfigError(
                "auth_strategy = keystone needs keystonemiddleware: "
                "pip install 'cinderblock[keystone]'"
            ) from err
        self.conf = conf
        self.cache_time = conf.token_cache_time
        self.cache = TokenCache(conf.token_cache_size, clock)
        self._wall_clock = wall_clock
        section = dict(conf.options)
        section.update(auth_url=conf.auth_url, auth_type=conf.auth_type)
        if conf.auth_type == "password":
            section.update(
                username=conf.username,
                password=conf.password,
                project_name=conf.project_name,
                user_domain_name=conf.user_domain_name,
                project_domain_name=conf.project_domain_name,
            )
        # A private oslo.config object (nothing global is read or registered) holding the
        # service credentials, where keystonemiddleware looks for its auth plugin's options.
        oslo_conf = cfg.ConfigOpts()
        try:
            plugin_opts = loading.get_auth_plugin_conf_options(conf.auth_type)
        except Exception as err:
            raise ConfigError(f"[keystone_authtoken] auth_type {conf.auth_type!r}: {err}") from err
        oslo_conf.register_opts(plugin_opts, group=KEYSTONE_GROUP)
        for opt in plugin_opts:
            value = section.pop(opt.dest, None)
            if value is not None:
                oslo_conf.set_override(opt.dest, value, group=KEYSTONE_GROUP)
        # The rest of the section goes to the middleware, except what we decide.
        options: dict[str, Any] = {
            k: v for k, v in section.items() if k not in ("token_cache_time", "token_cache_size")
        }
        options.update(
            www_authenticate_uri=conf.www_authenticate_uri,
            delay_auth_decision="false",
            include_service_catalog="false",
            service_token_roles_required="true",
            # Its cache would keep every token ever seen: give it one that keeps nothing.
            cache=NO_CACHE_KEY,
            oslo_config_config=oslo_conf,
        )
        self._middleware = auth_token.AuthProtocol(self._identified, options)

    @staticmethod
    def _identified(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The app behind the middleware: reached only with a token it accepted."""
        environ["cinderblock.result"].update(
            status=environ.get("HTTP_X_IDENTITY_STATUS"),
            user_id=environ.get("HTTP_X_USER_ID"),
            project_id=environ.get("HTTP_X_PROJECT_ID"),
            roles=environ.get("HTTP_X_ROLES", ""),
            token_info=environ.get("keystone.token_info"),
        )
        start_response("204 No Content", [])
        return []

    def _reject(self, message: str = REQUIRES_AUTH) -> TokenRejected:
        return TokenRejected(message, self.conf.www_authenticate_uri)

    def authenticate(self, request: IncomingRequest, request_id: str) -> RequestContext:
        token = (request.headers.get("x-auth-token") or "").strip()
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise self._reject()
        key = TokenCache.key(token)
        found = self.cache.get(key)
        if found is None:
            found, ttl = self._validate(token, request)
            self.cache.put(key, found, ttl)
        if isinstance(found, str):
            raise self._reject(found)
        return AuthenticatedContext(
            policy=self.policy,
            user_id=found.user_id,
            project_id=found.project_id,
            roles=found.roles,
            is_admin="admin" in found.roles,
            request_id=request_id,
            global_request_id=request.headers.get("x-openstack-request-id"),
        )

    def _validate(self, token: str, request: IncomingRequest) -> tuple[Identity | str, float]:
        """Ask Keystone (through the middleware): the result and how long to cache it."""
        result: dict[str, Any] = {}
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return lambda _data: None

        environ = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": request.url.path,
            "QUERY_STRING": "",
            "SERVER_NAME": "cinderblock",
            "SERVER_PORT": "0",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "HTTP_X_AUTH_TOKEN": token,
            "cinderblock.result": result,
            NO_CACHE_KEY: _NO_CACHE,
        }
        try:
            body = self._middleware(environ, start_response)
            try:
                for _chunk in body:
                    pass
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        except Exception as err:
            # Wrong service credentials, no identity endpoint, a malformed answer...
            LOG.error("Cannot validate tokens with Keystone: %s", err, exc_info=True)
            raise IdentityServiceUnavailable() from err
        status = int(statuses[0].split()[0]) if statuses else 500
        if status == 401:
            return "The request you have made requires authentication.", self.cache_time
        if status >= 300 or result.get("status") != "Confirmed":
            if status != 503:  # (the middleware logs why Keystone was unreachable)
                LOG.error("Keystone token validation answered %s", statuses or None)
            raise IdentityServiceUnavailable()
        if not result.get("project_id") or not result.get("user_id"):
            return "A project-scoped token is required.", self.cache_time
        roles = tuple(
            dict.fromkeys(r.strip().lower() for r in result["roles"].split(",") if r.strip())
        )
        identity = Identity(user_id=result["user_id"], project_id=result["project_id"], roles=roles)
        return identity, self._ttl(result.get("token_info"))

    def _ttl(self, token_info: Any) -> float:
        """Cache time, cut to the token's remaining life; 0 (no caching) for tokens whose
        application credential restricts them to some paths: each request is checked."""
        token = (token_info or {}).get("token") or {}
        if (token.get("application_credential") or {}).get("access_rules") is not None:
            return 0
        ttl = float(self.cache_time)
        expires_at = token.get("expires_at")
        if expires_at:
            try:
                expires = datetime.fromisoformat(expires_at)
            except ValueError:
                return 0
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            ttl = min(ttl, (expires - self._wall_clock()).total_seconds())
        return ttl


def build_authenticator(settings: Settings) -> Authenticator:
    """The Authenticator for settings.auth_strategy, holding the policy it hands on to
    every context (a bad policy file is a ConfigError here, at start-up)."""
    try:
        policy = load_enforcer(settings.policy_file)
    except PolicyFileError as err:
        raise ConfigError(str(err)) from err
    authenticator: Authenticator
    if settings.auth_strategy == "keystone":
        if settings.keystone is None:
            raise ConfigError("auth_strategy = keystone needs a [keystone_authtoken] section")
        authenticator = KeystoneAuth(settings.keystone)
    else:
        authenticator = NoAuth(settings.noauth_admin_users)
    authenticator.policy = policy
    return authenticator


_BUILD_LOCK = threading.Lock()


def authenticator_for(deps: ServiceDeps) -> Authenticator:
    """The process' Authenticator, built from deps.settings on first use and kept on deps
    (as `deps.authenticator`; one set there beforehand, e.g. a fake in tests, is used)."""
    found = getattr(deps, "authenticator", None)
    if found is None:
        with _BUILD_LOCK:
            found = getattr(deps, "authenticator", None)
            if found is None:
                found = build_authenticator(deps.settings)
                deps.authenticator = found  # type: ignore[attr-defined]
    return found
