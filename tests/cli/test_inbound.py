"""``dispatcher inbound``: replies to a campaign, and replies that name no campaign."""

from __future__ import annotations

import orjson
import pytest
import redis

from dispatcher.delivery.optout import keep_inbound
from dispatcher.delivery.reports import Report
from dispatcher.keys import Keys
from tests.helpers import run


def reply(client: redis.Redis, sender: str, message: str, client_id: str = "") -> None:
    keep_inbound(client, Keys("dsptest"), Report("in-1", client_id, "received", 0, "2026-11-23T10:00:00Z",
                                                 message=message, sender=sender, to="ACME"))


@pytest.mark.slow
def test_inbound_without_an_id_lists_the_replies_that_carry_no_client_id(redis_url: str,
                                                                         redis_client: redis.Redis) -> None:
    env = {"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsptest"}
    reply(redis_client, "+34612340001", "¿Quién es?")
    reply(redis_client, "+34612340002", "STOP")
    listed = run(env, "inbound", "--json")
    assert listed.returncode == 0, listed.stderr
    messages = orjson.loads(listed.stdout)
    assert [(m["from"], m["message"], m["stop"]) for m in messages] == [
        ("+34612340001", "¿Quién es?", False), ("+34612340002", "STOP", True)]
    table = run(env, "inbound")
    assert table.returncode == 0 and "+34612340002" in table.stdout and "no campaign" in table.stdout
    assert orjson.loads(run(env, "inbound", "--json", "--limit", "1").stdout)[0]["from"] == "+34612340002"


def test_inbound_without_an_id_says_when_there_is_nothing(redis_url: str, redis_client: redis.Redis) -> None:
    listed = run({"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsptest"}, "inbound")
    assert listed.returncode == 0 and "No replies" in listed.stdout
