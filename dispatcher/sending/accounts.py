"""Accounts: named Instasent projects (a token, a base URL, an organization) one install sends for.

``INSTASENT_TOKEN`` (with ``INSTASENT_BASE_URL``) is the account named ``default``: it is resolved
from the settings, never stored, so every command that knows nothing of accounts works as before.
Other accounts live in one Redis hash (:meth:`dispatcher.keys.Keys.accounts`), their tokens
encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256). The Fernet key is derived with HKDF-SHA256
from ``DISPATCHER_SECRET_KEY``, a passphrase of at least 32 characters; a second key derived from it
makes each token's fingerprint (a keyed hash: it identifies a token without revealing it, and means
nothing to whoever lacks the passphrase). A token is never shown again once added.

HKDF does not stretch a passphrase the way scrypt would; the 32-character minimum is what keeps a
guess of the passphrase out of reach. The salt is fixed, so the same passphrase opens the accounts of
any install (and a copy of Redis moved elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

import orjson
import redis
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dispatcher.errors import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionFailed,
    DispatcherError,
    InputError,
    OutcomeUnknown,
    RateLimited,
    UnknownItem,
)
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import Account
from dispatcher.keys import Keys
from dispatcher.schema.names import DEFAULT_ACCOUNT as DEFAULT_ACCOUNT  # defined with the names Redis data shares
from dispatcher.settings import Secret, Settings

#: Fewest characters of ``DISPATCHER_SECRET_KEY``.
MIN_SECRET_CHARS = 32
#: Hex digits of a token's fingerprint.
FINGERPRINT_HEX = 8
#: An account name: a letter or digit, then letters, digits, ``-`` and ``_``, 64 characters at most.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SALT = b"dispatcher accounts v1"
_FERNET_INFO = b"dispatcher/accounts/fernet"
_FINGERPRINT_INFO = b"dispatcher/accounts/fingerprint"


def _derive(passphrase: str, info: bytes) -> bytes:
    """32 bytes of HKDF-SHA256 over ``passphrase`` for the purpose ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(passphrase.encode())


class Vault:
    """Encrypts, decrypts and fingerprints tokens with keys derived from one passphrase."""

    def __init__(self, passphrase: Secret) -> None:
        """Raises:
            ConfigurationError: when the passphrase is missing or shorter than 32 characters.
        """
        if not passphrase:
            raise ConfigurationError("DISPATCHER_SECRET_KEY is not set: accounts need a passphrase of at least "
                                     f"{MIN_SECRET_CHARS} characters to encrypt their tokens.")
        if len(passphrase.reveal()) < MIN_SECRET_CHARS:
            raise ConfigurationError(f"DISPATCHER_SECRET_KEY is too short: use a passphrase of at least "
                                     f"{MIN_SECRET_CHARS} characters.")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(passphrase.reveal(), _FERNET_INFO)))
        self._fingerprint_key = _derive(passphrase.reveal(), _FINGERPRINT_INFO)

    def __repr__(self) -> str:
        return "Vault(********)"

    def encrypt(self, token: str) -> str:
        """``token`` as a Fernet ciphertext (URL-safe base64 text)."""
        return self._fernet.encrypt(token.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str | None:
        """The token ``ciphertext`` holds, or None when this passphrase did not encrypt it."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            return None

    def fingerprint(self, token: str) -> str:
        """The first :data:`FINGERPRINT_HEX` hex digits of HMAC-SHA256(token) under the fingerprint key."""
        return hmac.new(self._fingerprint_key, token.encode(), hashlib.sha256).hexdigest()[:FINGERPRINT_HEX]


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What can be shown of an account: never its token. ``organization`` is None when unknown (the
    ``default`` account names none until asked); ``created_at`` is Unix seconds (None for ``default``)."""

    name: str
    organization: str | None
    base_url: str
    fingerprint: str
    created_at: float | None
    #: False for ``default`` (it comes from ``INSTASENT_TOKEN``, not from Redis).
    stored: bool


@dataclass(frozen=True, slots=True)
class ResolvedAccount:
    """An account ready to send with: its settings point the Instasent client at its base URL and token."""

    name: str
    organization: str | None
    settings: Settings

    def client(self) -> InstasentClient:
        """A new Instasent client for this account (the caller closes it).

        Raises:
            ConfigurationError: when its token is unusable.
        """
        return InstasentClient.from_settings(self.settings)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def check_name(name: str) -> str:
    """``name`` when it is a valid account name.

    Raises:
        InputError: when it is not.
    """
    if not NAME.fullmatch(name):
        raise InputError(f"{name[:70]!r} is not an account name: use letters, digits, - and _ (at most 64, "
                         "starting with a letter or digit).")
    return name


def check_token(token: str) -> str:
    """``token`` when it could be an API token (never echoes it).

    Raises:
        InputError: when it is empty or holds a space, a control or a non-ASCII character.
    """
    if not token:
        raise InputError("the token is empty: give the project's api_sms token with --token.")
    if not all("!" <= char <= "~" for char in token):
        raise InputError("the token holds a character no API token has (a space, a control or a non-ASCII "
                         "character); check its value.")
    return token


class AccountBook:
    """The install's accounts: ``default`` from the settings, the others in Redis (tokens encrypted).

    The vault is built on first use, so resolving ``default`` never needs ``DISPATCHER_SECRET_KEY``.
    """

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.redis = client
        self.keys = keys
        self.settings = settings
        self._vault: Vault | None = None

    @property
    def vault(self) -> Vault:
        """The vault of ``DISPATCHER_SECRET_KEY``.

        Raises:
            ConfigurationError: when the passphrase is missing or too short.
        """
        if self._vault is None:
            self._vault = Vault(self.settings.secret_key)
        return self._vault

    # -- reading ------------------------------------------------------------------------------
    def _stored(self) -> dict[str, dict[str, object]]:
        raw = self.redis.hgetall(self.keys.accounts())
        return {_text(name): orjson.loads(value) for name, value in sorted(raw.items())}

    def _token_of(self, name: str, record: dict[str, object]) -> str:
        token = self.vault.decrypt(str(record.get("token", "")))
        if token is None:
            raise ConfigurationError(f"the token of account {name} cannot be decrypted: DISPATCHER_SECRET_KEY "
                                     "is not the passphrase it was stored with.")
        return token

    def check_passphrase(self) -> None:
        """Make sure the passphrase opens the stored accounts (trying the first one).

        Raises:
            ConfigurationError: when the passphrase is missing, too short or not the one they were stored with.
        """
        vault = self.vault
        first = next(iter(self.redis.hvals(self.keys.accounts())), None)  # a few accounts: read them all
        if first is not None and vault.decrypt(str(orjson.loads(first).get("token", ""))) is None:
            raise ConfigurationError("DISPATCHER_SECRET_KEY does not open the stored accounts: use the "
                                     "passphrase they were added with.")

    def names(self) -> list[str]:
        """Every account name: ``default`` first when ``INSTASENT_TOKEN`` is set, then the stored ones."""
        stored = sorted(_text(name) for name in self.redis.hkeys(self.keys.accounts()))
        return ([DEFAULT_ACCOUNT] if self.settings.instasent_token else []) + stored

    def infos(self) -> list[AccountInfo]:
        """What can be shown of every account (see :meth:`names` for the order).

        Raises:
            ConfigurationError: when the passphrase is missing, too short or does not open a token.
        """
        out = []
        if self.settings.instasent_token:
            out.append(AccountInfo(DEFAULT_ACCOUNT, None, self.settings.instasent_base_url,
                                   self.vault.fingerprint(self.settings.instasent_token.reveal()), None, False))
        for name, record in self._stored().items():
            created = record.get("created_at")
            out.append(AccountInfo(name, str(record.get("organization") or "") or None, str(record.get("base_url")),
                                   self.vault.fingerprint(self._token_of(name, record)),
                                   float(created) if isinstance(created, int | float) else None, True))
        return out

    def resolve(self, name: str = DEFAULT_ACCOUNT) -> ResolvedAccount:
        """The account ``name`` with settings whose token and base URL are its own (the other
        settings, timeouts included, are the install's). ``default`` is ``INSTASENT_TOKEN`` and
        ``INSTASENT_BASE_URL`` and needs no passphrase.

        Raises:
            UnknownItem: when no account has that name.
            ConfigurationError: for ``default`` without ``INSTASENT_TOKEN``, or when the passphrase is
                missing, too short or does not open the account's token.
        """
        if name == DEFAULT_ACCOUNT:
            self.settings.require_token()
            return ResolvedAccount(DEFAULT_ACCOUNT, None, self.settings)
        raw = self.redis.hget(self.keys.accounts(), name)
        if raw is None:
            raise UnknownItem(f"no account is named {name[:70]!r}: see dispatcher account list.")
        record = orjson.loads(raw)
        settings = self.settings.with_overrides(instasent_token=self._token_of(name, record),
                                                instasent_base_url=str(record["base_url"]))
        return ResolvedAccount(name, str(record.get("organization") or "") or None, settings)

    def client(self, name: str = DEFAULT_ACCOUNT) -> InstasentClient:
        """A new Instasent client for the account ``name`` (the caller closes it); see :meth:`resolve`.

        Raises:
            UnknownItem, ConfigurationError: as :meth:`resolve`.
        """
        return self.resolve(name).client()

    # -- changing -----------------------------------------------------------------------------
    def add(self, name: str, token: str, base_url: str | None = None, organization: str | None = None) -> AccountInfo:
        """Store the account ``name`` (the token encrypted). ``base_url`` defaults to the install's
        ``INSTASENT_BASE_URL``; ``organization`` to the one Instasent's account answer names for the
        token, which is asked (one ``GET /organization/account``) only then.

        Raises:
            InputError: for a bad name or token, ``default``, a name already taken, or when the account
                answer names no organization and none was given.
            ConfigurationError: when the passphrase is missing, too short or not the accounts' one, or
                Instasent refuses the token.
            DispatcherError: when Instasent cannot be asked (see :mod:`dispatcher.instasent.client`).
        """
        check_name(name)
        check_token(token)
        if name == DEFAULT_ACCOUNT:
            raise InputError("the account default is INSTASENT_TOKEN: choose another name.")
        self.check_passphrase()
        if self.redis.hexists(self.keys.accounts(), name):
            raise InputError(f"an account is already named {name}: remove it first to change it.")
        url = (base_url or self.settings.instasent_base_url).rstrip("/")
        if not re.match(r"https?://[^/\s]+", url):
            raise InputError(f"--base-url {url[:70]!r} is not an http(s) URL.")
        if organization is not None and not organization.strip():
            raise InputError("--organization is empty: give the organization's id or name, or leave it out.")
        org = organization.strip() if organization else self._ask_organization(name, token, url)
        created = round(time.time(), 3)
        record = {"organization": org, "base_url": url, "token": self.vault.encrypt(token), "created_at": created}
        if not self.redis.hsetnx(self.keys.accounts(), name, orjson.dumps(record)):
            raise InputError(f"an account is already named {name}: remove it first to change it.")
        return AccountInfo(name, org, url, self.vault.fingerprint(token), created, True)

    def _ask_organization(self, name: str, token: str, base_url: str) -> str:
        settings = self.settings.with_overrides(instasent_token=token, instasent_base_url=base_url)
        try:
            with InstasentClient.from_settings(settings) as client:
                org = client.account().organization
        except AuthenticationFailed:
            raise ConfigurationError(f"Instasent refused the token of account {name} (401): check --token and "
                                     "--base-url.") from None
        if org is None:
            raise InputError("Instasent's account answer names no organization for this token: give it with "
                             "--organization.")
        return org

    def remove(self, name: str) -> None:
        """Forget the account ``name`` (its campaigns, if any, keep their records).

        Raises:
            InputError: for ``default``.
            UnknownItem: when no account has that name.
        """
        if name == DEFAULT_ACCOUNT:
            raise InputError("the account default is INSTASENT_TOKEN and cannot be removed: unset it instead.")
        if not self.redis.hdel(self.keys.accounts(), name):
            raise UnknownItem(f"no account is named {name[:70]!r}: see dispatcher account list.")


def ask_account(account: ResolvedAccount) -> Account | str:
    """Instasent's account answer for ``account`` (balance, currency, organization), asked live; or,
    when that fails, a short reason (never a token)."""
    try:
        with account.client() as client:
            return client.account()
    except DispatcherError as exc:
        for kind, reason in _SHORT_REASONS:
            if isinstance(exc, kind):
                return reason
        return str(exc).split(";")[0].rstrip(".")[:60]


#: What a list shows, in a few words, for an account answer that could not be had (first match wins).
_SHORT_REASONS: tuple[tuple[type[DispatcherError], str], ...] = (
    (AuthenticationFailed, "token refused (401)"),
    (ConnectionFailed, "unreachable"),
    (RateLimited, "rate limited (429)"),
    (OutcomeUnknown, "no readable answer"),
)
