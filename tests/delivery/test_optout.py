"""Opt-outs by reply: the sender's number, however Instasent writes it, is suppressed in E.164."""

from __future__ import annotations

import pandas as pd
import pytest
import redis

from dispatcher.delivery.optout import handle_optout
from dispatcher.delivery.reports import Report
from dispatcher.keys import Keys
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.sending.store import CampaignStore

KEYS = Keys("dsptest")


def stop_reply(sender: str, client_id: str = "") -> Report:
    return Report("in1", client_id, "stop", 0, "2026-11-23T10:00:00Z", message="STOP", sender=sender, to="ACME")


@pytest.mark.parametrize("sender", ["34612345678", "+34612345678", "0034612345678", "+34 612 34 56 78"])
def test_a_stop_reply_suppresses_the_e164_number_the_preflight_matches(redis_client: redis.Redis,
                                                                       sender: str) -> None:
    assert handle_optout(redis_client, KEYS, stop_reply(sender)) == "+34612345678"
    suppressed = SuppressionList(redis_client, KEYS)
    assert suppressed.flags(["+34612345678"]).tolist() == [True] and suppressed.count() == 1


def test_a_national_number_in_a_reply_is_read_in_the_country_of_the_number_we_texted(
        redis_client: redis.Redis) -> None:
    frame = pd.DataFrame({"row": [2], "to": ["+33612345678"], "text": ["x"], "sender": ["ACME"], "parts": [1],
                          "unicode": [False], "price": [0.05], "country": ["FR"]})
    cid = CampaignStore(redis_client, KEYS).create("x", frame, window=1)
    assert handle_optout(redis_client, KEYS, stop_reply("06 12 34 56 78", f"{cid}-0-0")) == "+33612345678"
    assert "+33612345678" in SuppressionList(redis_client, KEYS)


def test_a_reply_from_something_that_is_not_a_number_is_kept_as_given(redis_client: redis.Redis) -> None:
    assert handle_optout(redis_client, KEYS, stop_reply("ACME")) == "ACME"
