"""Accounts: tokens encrypted at rest under DISPATCHER_SECRET_KEY, keyed fingerprints, the account
``default`` from INSTASENT_TOKEN, and resolving a name to a client, on real Redis against a sandbox
that plays several organizations."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import redis

from dispatcher.dev.services import Service, start_sandbox
from dispatcher.errors import ConfigurationError, InputError, UnknownItem
from dispatcher.keys import Keys
from dispatcher.sending.accounts import DEFAULT_ACCOUNT, AccountBook, Vault, ask_account
from dispatcher.settings import Secret, Settings
from tests.helpers import SANDBOX_TOKEN, SandboxHandle

PASSPHRASE = "correct horse battery staple, twice over"
#: Tokens long and odd enough that finding one by accident is impossible.
TOKENS = {"a1": "tA1-8f3e2b7c9d0a41e6b5f2", "a2": "tA2-1c9e7f5a3b2d40e8c6a1", "b": "tB-6d4a2c8e0f1b43a7d9e5"}
ORGS = {"a1": "acme", "a2": "acme", "b": "beta"}


@pytest.fixture(scope="module")
def orgs_sandbox() -> Iterator[Service]:
    options = [arg for name, token in TOKENS.items() for arg in ("--project", f"{ORGS[name]}:{token}")]
    service = start_sandbox(*options, "--rate-limit", "0", token=SANDBOX_TOKEN)
    yield service
    service.stop()


@pytest.fixture()
def book_settings(redis_url: str, orgs_sandbox: Service) -> Settings:
    return Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=TOKENS["a1"], instasent_base_url=orgs_sandbox.url, redis_url=redis_url,
        key_prefix="dsptest", read_timeout_s=5.0, secret_key=PASSPHRASE)


@pytest.fixture()
def book(book_settings: Settings, redis_client: redis.Redis) -> AccountBook:
    return AccountBook(redis_client, Keys("dsptest"), book_settings)


def every_value(client: redis.Redis) -> Iterator[bytes]:
    """Every key name and every value of every key, whatever its type."""
    for key in client.scan_iter(count=1000):
        yield key
        kind = client.type(key).decode()
        if kind == "string":
            yield client.get(key) or b""
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                yield field
                yield value
        elif kind == "list":
            yield from client.lrange(key, 0, -1)
        elif kind == "set":
            yield from client.smembers(key)
        elif kind == "zset":
            yield from (member for member, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            for _, fields in client.xrange(key):
                for field, value in fields.items():
                    yield field
                    yield value
        else:
            raise AssertionError(f"a key of type {kind} the scan does not read")


def test_no_token_is_in_redis_in_clear_text_once_accounts_are_added(
        book: AccountBook, redis_client: redis.Redis) -> None:
    for name, token in TOKENS.items():
        book.add(name, token)
    values = list(every_value(redis_client))
    assert values  # the accounts are there
    for token in TOKENS.values():
        forms = {token.encode(), base64.b64encode(token.encode()), base64.urlsafe_b64encode(token.encode())}
        assert not any(form in value for form in forms for value in values), token
    assert PASSPHRASE.encode() not in b"".join(values)


def test_an_added_account_takes_the_organization_its_token_belongs_to(book: AccountBook) -> None:
    infos = {name: book.add(name, token) for name, token in TOKENS.items()}
    assert {name: info.organization for name, info in infos.items()} == ORGS
    listed = {info.name: (info.organization, info.fingerprint) for info in book.infos()}
    assert listed == {DEFAULT_ACCOUNT: (None, book.vault.fingerprint(TOKENS["a1"])),
                      **{name: (ORGS[name], infos[name].fingerprint) for name in TOKENS}}
    assert listed[DEFAULT_ACCOUNT][1] == listed["a1"][1] != listed["a2"][1]  # one token, one fingerprint


def test_an_organization_given_is_stored_without_asking_instasent(book: AccountBook, orgs_sandbox: Service) -> None:
    handle = SandboxHandle(orgs_sandbox)
    before = len(handle.http.get("/_sandbox/requests").json()["requests"])
    assert book.add("b", TOKENS["b"], organization="Beta Ltd").organization == "Beta Ltd"
    assert len(handle.http.get("/_sandbox/requests").json()["requests"]) == before
    handle.close()


def test_a_name_resolves_to_a_client_on_its_own_token_and_base_url(book: AccountBook, orgs_sandbox: Service) -> None:
    book.add("b", TOKENS["b"], base_url=orgs_sandbox.url + "/transactional/v1/")
    resolved = book.resolve("b")
    assert (resolved.name, resolved.organization) == ("b", "beta")
    assert resolved.settings.instasent_base_url == orgs_sandbox.url + "/transactional/v1"
    assert resolved.settings.instasent_token.reveal() == TOKENS["b"]
    assert resolved.settings.read_timeout_s == 5.0  # the install's other settings
    with book.client("b") as client:
        assert client.account().organization == "beta"
    assert TOKENS["b"] not in repr(resolved) + repr(book.vault)


def test_the_default_account_is_instasent_token_and_needs_no_passphrase(
        book_settings: Settings, redis_client: redis.Redis) -> None:
    without_key = AccountBook(redis_client, Keys("dsptest"), book_settings.with_overrides(secret_key=""))
    resolved = without_key.resolve()
    assert (resolved.name, resolved.organization, resolved.settings) == (DEFAULT_ACCOUNT, None, without_key.settings)
    with without_key.client(DEFAULT_ACCOUNT) as client:
        assert client.account().organization == "acme"
    no_token = AccountBook(redis_client, Keys("dsptest"), book_settings.with_overrides(instasent_token=""))
    with pytest.raises(ConfigurationError, match="INSTASENT_TOKEN is not set"):
        no_token.resolve(DEFAULT_ACCOUNT)


@pytest.mark.parametrize("passphrase", ["", "x" * 31])
def test_a_missing_or_short_passphrase_is_refused_in_one_sentence(
        book_settings: Settings, redis_client: redis.Redis, passphrase: str) -> None:
    book = AccountBook(redis_client, Keys("dsptest"), book_settings.with_overrides(secret_key=passphrase))
    with pytest.raises(ConfigurationError) as refused:
        book.add("b", TOKENS["b"])
    message = str(refused.value)
    assert message.startswith("DISPATCHER_SECRET_KEY is") and "32 characters" in message
    assert message.count(".") == 1 and message.endswith(".")
    assert redis_client.exists(Keys("dsptest").accounts()) == 0


def test_a_passphrase_that_did_not_store_the_accounts_opens_none_of_them(
        book: AccountBook, book_settings: Settings, redis_client: redis.Redis) -> None:
    book.add("b", TOKENS["b"])
    other = AccountBook(redis_client, Keys("dsptest"), book_settings.with_overrides(secret_key=PASSPHRASE + "!"))
    with pytest.raises(ConfigurationError, match="does not open the stored accounts"):
        other.add("a2", TOKENS["a2"])
    with pytest.raises(ConfigurationError, match="account b cannot be decrypted"):
        other.resolve("b")
    assert redis_client.hkeys(Keys("dsptest").accounts()) == [b"b"]


def test_unknown_default_duplicate_and_malformed_names_are_refused_in_one_sentence(book: AccountBook) -> None:
    book.add("b", TOKENS["b"])
    cases = [(lambda: book.resolve("nope"), UnknownItem, "no account is named 'nope'"),
             (lambda: book.remove("nope"), UnknownItem, "no account is named 'nope'"),
             (lambda: book.remove(DEFAULT_ACCOUNT), InputError, "cannot be removed"),
             (lambda: book.add(DEFAULT_ACCOUNT, TOKENS["a2"]), InputError, "choose another name"),
             (lambda: book.add("b", TOKENS["a2"]), InputError, "already named b"),
             (lambda: book.add("bad name", TOKENS["a2"]), InputError, "is not an account name"),
             (lambda: book.add("c", "has space"), InputError, "a character no API token has"),
             (lambda: book.add("c", ""), InputError, "the token is empty"),
             (lambda: book.add("c", TOKENS["a2"], base_url="ftp://x"), InputError, "not an http"),
             (lambda: book.add("c", TOKENS["a2"], organization=" "), InputError, "--organization is empty")]
    for call, kind, words in cases:
        with pytest.raises(kind) as refused:
            call()
        assert words in str(refused.value)
        assert "\n" not in str(refused.value) and TOKENS["a2"] not in str(refused.value)


def test_a_token_instasent_refuses_is_not_added_and_not_echoed(book: AccountBook, redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigurationError) as refused:
        book.add("c", "not-a-known-token-5e1f")
    assert "refused the token of account c (401)" in str(refused.value)
    assert "not-a-known-token-5e1f" not in str(refused.value)
    assert redis_client.exists(Keys("dsptest").accounts()) == 0


def test_an_account_answer_that_names_no_organization_asks_for_one(
        book: AccountBook, sandbox: SandboxHandle) -> None:
    with pytest.raises(InputError, match="names no organization for this token: give it with --organization"):
        book.add("single", SANDBOX_TOKEN, base_url=sandbox.url)
    assert book.add("single", SANDBOX_TOKEN, base_url=sandbox.url, organization="solo").organization == "solo"


def test_asking_an_unreachable_account_gives_a_short_reason(book: AccountBook) -> None:
    book.add("gone", TOKENS["b"], base_url="http://127.0.0.1:9", organization="beta")
    assert ask_account(book.resolve("gone")) == "unreachable"
    book.add("stranger", "tUnknown-77aa", organization="nobody")
    assert ask_account(book.resolve("stranger")) == "token refused (401)"
    assert ask_account(book.resolve(DEFAULT_ACCOUNT)).organization == "acme"  # type: ignore[union-attr]


def test_a_removed_account_is_gone_and_the_others_stay(book: AccountBook, redis_client: redis.Redis) -> None:
    book.add("a2", TOKENS["a2"])
    book.add("b", TOKENS["b"])
    book.remove("a2")
    assert [info.name for info in book.infos()] == [DEFAULT_ACCOUNT, "b"]
    with pytest.raises(UnknownItem):
        book.resolve("a2")


def test_the_vault_decrypts_only_what_its_passphrase_encrypted_and_fingerprints_are_keyed() -> None:
    vault, other = Vault(Secret(PASSPHRASE)), Vault(Secret(PASSPHRASE[::-1]))
    sealed = vault.encrypt(TOKENS["b"])
    assert vault.decrypt(sealed) == TOKENS["b"] and other.decrypt(sealed) is None
    assert vault.decrypt("not a fernet token") is None
    assert vault.encrypt(TOKENS["b"]) != sealed  # a fresh IV each time
    fingerprint = vault.fingerprint(TOKENS["b"])
    assert len(fingerprint) == 8 and int(fingerprint, 16) >= 0
    assert fingerprint == vault.fingerprint(TOKENS["b"]) != other.fingerprint(TOKENS["b"])
    assert fingerprint not in TOKENS["b"]


def test_the_secret_key_setting_is_read_as_a_secret_and_never_printed() -> None:
    settings = Settings.from_env(environ={"DISPATCHER_SECRET_KEY": f"  {PASSPHRASE} "}, env_file=None)
    assert settings.secret_key.reveal() == PASSPHRASE
    assert PASSPHRASE not in repr(settings) and PASSPHRASE not in str(settings)
    assert settings.with_overrides(secret_key="x" * 40).secret_key == Secret("x" * 40)
