"""Who may use the console: API tokens (stored as hashes) and dashboard sessions (cookie + CSRF).

A token is 32 random bytes shown once by ``dispatcher token create``; Redis keeps only its
SHA-256 (a token has far more entropy than a password, so a fast hash is enough) with a name and
a role: ``admin`` may change things, ``viewer`` may only read. A token may also be scoped to some
accounts: it then reaches only their campaigns, schedules, reports and metrics (see
:mod:`dispatcher.console.scope`); a token without accounts reaches everything. The dashboard
exchanges a token for a session: a random id in an HttpOnly, SameSite=Strict cookie, stored
(hashed) with a CSRF token that every state change must echo in ``X-CSRF-Token``. A session has its
token's role and scope. Revoking a token ends its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from dispatcher.errors import InputError, UnknownItem
from dispatcher.keys import Keys

#: Roles a token may have: admins change things, viewers only read.
ROLES = ("admin", "viewer")
#: Seconds a dashboard session lasts after sign-in.
SESSION_TTL_S = 12 * 3600
#: Name of the dashboard's session cookie.
SESSION_COOKIE = "dsp_session"
#: Header that carries the session's CSRF token on state changes.
CSRF_HEADER = "x-csrf-token"

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def token_hash(token: str) -> str:
    """Hex SHA-256 of a token or session id: what Redis stores instead of the secret."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token, without the token: its name, role, creation time (Unix s) and the accounts
    it is scoped to (empty: every account)."""

    name: str
    role: str
    created_at: float
    accounts: tuple[str, ...] = ()

    @property
    def can_change(self) -> bool:
        """True for admins: they may submit, pause, resume, cancel and edit schedules."""
        return self.role == "admin"

    @property
    def scoped(self) -> bool:
        """True when the token reaches only some accounts."""
        return bool(self.accounts)

    def sees(self, account: str) -> bool:
        """True when the token reaches the campaigns and schedules of ``account``."""
        return not self.accounts or account in self.accounts

    def to_json(self) -> dict[str, Any]:
        """Name, role, creation time and ``accounts`` (a list, or null for every account)."""
        return {"name": self.name, "role": self.role, "created_at": self.created_at,
                "accounts": list(self.accounts) or None}


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in dashboard: the token it was opened with and the CSRF token it must echo."""

    token: TokenInfo
    csrf: str

    def csrf_ok(self, given: str | None) -> bool:
        """True when ``given`` is this session's CSRF token (compared in constant time)."""
        return bool(given) and hmac.compare_digest(str(given).encode(), self.csrf.encode())


class TokenStore:
    """API tokens and dashboard sessions in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys

    def create(self, name: str, role: str = "viewer", now: float | None = None, *, accounts: Sequence[str] = (),
               known: Collection[str] | None = None) -> str:
        """Store a new token called ``name`` and return it; it cannot be shown again.

        With ``accounts``, the token reaches only those accounts' campaigns and schedules; each
        must be in ``known`` (the install's account names) when that is given.

        Raises:
            InputError: for a malformed name, an unknown role, an account not in ``known``, or a
                name already in use.
        """
        if not _NAME.fullmatch(name):
            raise InputError("a token name uses 1 to 64 letters, digits, '.', '-' and '_'.")
        if role not in ROLES:
            raise InputError(f"--role is admin or viewer, got {role!r}.")
        unknown = [a for a in accounts if known is not None and a not in known]
        if unknown:
            raise InputError(f"there is no account named {unknown[0][:70]!r}; `dispatcher account list` shows them.")
        token = "dsp_" + secrets.token_urlsafe(32)
        digest = token_hash(token)
        record = orjson.dumps({"hash": digest, "role": role, "created_at": time.time() if now is None else now,
                               "accounts": sorted(set(accounts))})
        if not self.redis.hsetnx(self.keys.console_tokens(), name, record):
            raise InputError(f"a token named {name!r} exists; revoke it first or choose another name.")
        self.redis.hset(self.keys.console_token_hashes(), digest, name)
        return token

    def list(self) -> list[TokenInfo]:
        """Every token's name, role, creation time and accounts, by name."""
        raw = self.redis.hgetall(self.keys.console_tokens())
        return sorted((_info(k.decode(), v) for k, v in raw.items()), key=lambda t: t.name)

    def revoke(self, name: str) -> None:
        """Delete token ``name``; requests and sessions that use it are refused from now on.

        Raises:
            UnknownItem: when no token has that name.
        """
        raw = self.redis.hget(self.keys.console_tokens(), name)
        if raw is None:
            raise UnknownItem(f"no token named {name!r}; `dispatcher token list` shows them.")
        pipe = self.redis.pipeline()
        pipe.hdel(self.keys.console_tokens(), name)
        pipe.hdel(self.keys.console_token_hashes(), orjson.loads(raw)["hash"])
        pipe.execute()

    def authenticate(self, token: str | None) -> TokenInfo | None:
        """The token's info when ``token`` is a live token, else None."""
        if not token:
            return None
        return self._by_hash(token_hash(token))

    def open_session(self, token: str) -> tuple[str, Session] | None:
        """Exchange a live token for a new session; returns ``(session id, session)`` or None."""
        info = self.authenticate(token)
        if info is None:
            return None
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        record = orjson.dumps({"token_hash": token_hash(token), "csrf": csrf})
        self.redis.set(self.keys.console_session(token_hash(session_id)), record, ex=SESSION_TTL_S)
        return session_id, Session(info, csrf)

    def session(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, expired, or its token was revoked)."""
        if not session_id:
            return None
        raw = self.redis.get(self.keys.console_session(token_hash(session_id)))
        if raw is None:
            return None
        record = orjson.loads(raw)
        info = self._by_hash(record["token_hash"])
        return Session(info, record["csrf"]) if info is not None else None

    def close_session(self, session_id: str | None) -> None:
        """End a session (signing out); an unknown id is fine."""
        if session_id:
            self.redis.delete(self.keys.console_session(token_hash(session_id)))

    def _by_hash(self, digest: str) -> TokenInfo | None:
        name = self.redis.hget(self.keys.console_token_hashes(), digest)
        if name is None:
            return None
        raw = self.redis.hget(self.keys.console_tokens(), name)
        if raw is None:
            return None
        return _info(name.decode(), raw)


def _info(name: str, raw: bytes) -> TokenInfo:
    record = orjson.loads(raw)
    # Tokens created before scopes have no "accounts": they reach every account, as they always did.
    return TokenInfo(name=name, role=str(record["role"]), created_at=float(record["created_at"]),
                     accounts=tuple(str(a) for a in record.get("accounts") or ()))
