"""``dispatcher token create|list|revoke`` as a user runs them."""

from __future__ import annotations

import orjson
import pytest
import redis

from dispatcher.console.auth import TokenStore
from dispatcher.keys import Keys
from tests.helpers import one_sentence_error, run


@pytest.mark.slow
def test_a_token_is_printed_once_stored_only_as_a_hash_listed_and_revoked(
        redis_url: str, redis_client: redis.Redis) -> None:
    env = {"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsptest"}
    created = run(env, "token", "create", "ci-bot", "--role", "admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("dsp_") and len(token) > 40
    dump = b"".join(k + b"".join(redis_client.hgetall(k).keys()) + b"".join(redis_client.hgetall(k).values())
                    for k in redis_client.keys("dsptest:console:*"))
    assert token.encode() not in dump  # only its hash is kept
    assert TokenStore(redis_client, Keys("dsptest")).authenticate(token).role == "admin"
    listed = orjson.loads(run(env, "token", "list", "--json").stdout)
    assert [(t["name"], t["role"]) for t in listed] == [("ci-bot", "admin")]
    assert token not in run(env, "token", "list").stdout
    again = run(env, "token", "create", "ci-bot")
    assert again.returncode == 2 and "exists" in one_sentence_error(again)
    assert run(env, "token", "revoke", "ci-bot").returncode == 0
    assert TokenStore(redis_client, Keys("dsptest")).authenticate(token) is None
    missing = run(env, "token", "revoke", "ci-bot")
    assert missing.returncode == 2 and "no token named" in one_sentence_error(missing)
    bad_role = run(env, "token", "create", "x", "--role", "root")
    assert bad_role.returncode == 2 and "Traceback" not in bad_role.stderr


@pytest.mark.slow
def test_a_token_scoped_to_accounts_is_listed_with_them_and_an_unknown_account_is_one_sentence(
        redis_url: str, redis_client: redis.Redis) -> None:
    env = {"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dspscope"}
    keys = Keys("dspscope")
    redis_client.hset(keys.accounts(), "b", orjson.dumps({}))  # an account as `account add` lists it
    created = run(env, "token", "create", "agency-b", "--role", "admin", "--account", "b", "--account", "default")
    assert created.returncode == 0, created.stderr
    info = TokenStore(redis_client, keys).authenticate(created.stdout.strip())
    assert info is not None and info.accounts == ("b", "default")
    TokenStore(redis_client, keys).create("everyone")
    listed = orjson.loads(run(env, "token", "list", "--json").stdout)
    assert [(t["name"], t["accounts"]) for t in listed] == [("agency-b", ["b", "default"]), ("everyone", None)]
    table = run(env, "token", "list").stdout
    assert "b, default" in table and "all" in table
    unknown = run(env, "token", "create", "x", "--account", "nope")
    assert unknown.returncode == 2
    assert one_sentence_error(unknown) == ("error: there is no account named 'nope'; `dispatcher account list` "
                                           "shows them.")
    assert [t.name for t in TokenStore(redis_client, keys).list()] == ["agency-b", "everyone"]
