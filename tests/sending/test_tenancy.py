"""Campaigns of several accounts in one install, in process on real Redis: lanes per organization,
a 402 that stops only its organization, opt-outs per account (or everywhere), the client of each
campaign's account in a worker thread, and a campaign whose account was removed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import redis

from dispatcher.delivery.optout import handle_optout
from dispatcher.delivery.reports import Report
from dispatcher.errors import InputError, UnknownItem
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import RateLimitInfo
from dispatcher.keys import Keys
from dispatcher.preflight.result import PreflightOptions
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.sending import submission
from dispatcher.sending.accounts import AccountBook
from dispatcher.sending.attempt import send_batch
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.context import SendContext
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.schedules.admin import add_schedule
from dispatcher.sending.schedules.definition import ScheduleDef
from dispatcher.sending.schedules.firing import Firer
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.tenancy import AccountClients, campaign_account, pause_organization
from dispatcher.settings import Settings
from tasks.schedules import Entries
from tests.fakes import FakeInstasent
from tests.helpers import SANDBOX_TOKEN, Queue, SandboxHandle, schedule_csv

PASSPHRASE = "correct horse battery staple, twice over"
KEYS = Keys("dsptest")


def frame(n: int, first: int = 0) -> pd.DataFrame:
    to = [f"+3460000{i:04d}" for i in range(first, first + n)]
    return pd.DataFrame({"row": list(range(2, n + 2)), "to": to, "text": ["hola"] * n, "sender": ["ACME"] * n,
                         "parts": [1] * n, "unicode": [False] * n, "price": [0.05] * n, "country": ["ES"] * n})


def on(sender: SendContext, account: str, organization: str, n: int = 10, first: int = 0) -> str:
    """A queued campaign of ``account`` (of ``organization``) with its first window reserved."""
    cid = sender.store.create(account, frame(n, first), window=4, account=account, organization=organization)
    sender.ops.reserve(cid)
    return cid


def as_account(sender: SendContext, account: str, organization: str) -> SendContext:
    return replace(sender, account=account, organization=organization)


def test_each_organization_has_its_own_lanes_and_the_default_account_keeps_the_old_names(
        sender: SendContext) -> None:
    assert (sender.bulk_lane.name, sender.list_lane.name) == ("POST /sms/bulk", "GET /sms")
    acme = as_account(sender, "a1", "acme")
    assert (acme.bulk_lane.name, acme.list_lane.name) == ("acme:POST /sms/bulk", "acme:GET /sms")
    assert KEYS.rate(acme.bulk_lane.name) == "dsptest:rl:acme:POST /sms/bulk"


def test_an_organizations_lane_takes_the_lower_limit_instasent_answered_and_the_default_lane_keeps_the_setting(
        sender: SendContext) -> None:
    acme = as_account(replace(sender, settings=sender.settings.with_overrides(rate_limit_per_min=600)), "a1", "slow")
    limiter = RateLimiter(sender.store.redis, KEYS)
    limiter.observe(acme.bulk_lane, RateLimitInfo(limit=120, remaining=100, reset=0.0))
    assert acme.bulk_lane.per_minute == 120
    default = replace(acme, account="default", organization="")
    limiter.observe(default.bulk_lane, RateLimitInfo(limit=120, remaining=100, reset=0.0))
    assert default.bulk_lane.per_minute == 600


def test_a_campaign_names_its_account_and_organization_and_old_ones_are_the_default_accounts(
        sender: SendContext, redis_client: redis.Redis) -> None:
    cid = on(sender, "a1", "acme")
    info = sender.store.get(cid)
    assert (info.account, info.organization) == ("a1", "acme")
    assert {"account": "a1", "organization": "acme"}.items() <= info.to_json().items()
    old = sender.store.create("old", frame(3), window=1)
    redis_client.hdel(KEYS.campaign(old), "account", "organization")  # as stored before accounts
    assert (sender.store.get(old).account, sender.store.get(old).organization) == ("default", "")
    assert campaign_account(redis_client, KEYS, cid) == ("a1", "acme")


def test_a_402_pauses_every_campaign_of_that_organization_and_no_other(
        sender: SendContext, fake: FakeInstasent) -> None:
    a1, a2, b, default = on(sender, "a1", "acme"), on(sender, "a2", "acme"), on(sender, "b", "beta"), on(
        sender, "default", "")
    fake.script = ["402"]
    assert send_batch(as_account(sender, "a1", "acme"), a1, 0).action == "paused"
    states = {cid: (sender.store.get(cid).state, sender.store.get(cid).reason) for cid in (a1, a2, b, default)}
    assert states == {a1: ("paused", "insufficient_funds"), a2: ("paused", "insufficient_funds"),
                      b: ("queued", ""), default: ("queued", "")}
    # The default account's organization is unknown: its balance is its own.
    assert pause_organization(sender.store, "default", "", "insufficient_funds") == [default]
    assert sender.store.get(b).state == "queued"


def test_a_stop_reply_suppresses_the_number_for_the_account_that_sent_to_it_only(
        sender: SendContext, redis_client: redis.Redis, fake: FakeInstasent) -> None:
    a1, b = on(sender, "a1", "acme", n=3), on(sender, "b", "beta", n=3)
    reply = Report("in1", f"{a1}-0-1", "stop", 0, "2026-11-23T10:00:00Z", message="STOP", sender="+34600000001",
                   to="ACME")
    assert handle_optout(redis_client, KEYS, reply) == "+34600000001"
    numbers = ["+34600000000", "+34600000001"]
    assert SuppressionList(redis_client, KEYS, account="a1").flags(numbers).tolist() == [False, True]
    assert SuppressionList(redis_client, KEYS, account="b").flags(numbers).tolist() == [False, False]
    assert "+34600000001" not in SuppressionList(redis_client, KEYS)
    # Sending: a1's campaign skips the number, b's sends it.
    send_batch(as_account(sender, "a1", "acme"), a1, 0)
    send_batch(as_account(sender, "b", "beta"), b, 0)
    assert (sender.store.get(a1).counts["suppressed"], sender.store.get(a1).counts["sent"]) == (1, 2)
    assert sender.store.get(b).counts["sent"] == 3
    assert fake.accepted.get(f"{b}-0-1") == 1 and f"{a1}-0-1" not in fake.accepted


def test_with_global_optout_a_stop_reply_suppresses_the_number_for_every_account(
        sender: SendContext, redis_client: redis.Redis) -> None:
    a1 = on(sender, "a1", "acme", n=3)
    reply = Report("in1", f"{a1}-0-2", "stop", 0, "2026-11-23T10:00:00Z", message="baja", sender="34600000002",
                   to="ACME")
    assert handle_optout(redis_client, KEYS, reply, global_optout=True) == "+34600000002"
    assert "+34600000002" in SuppressionList(redis_client, KEYS)
    assert SuppressionList(redis_client, KEYS, account="b").flags(["+34600000002"]).tolist() == [True]


def test_the_preflight_of_an_account_counts_its_own_opt_outs_and_the_global_ones(
        tmp_path: Path, settings: Settings, redis_client: redis.Redis) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone,name\n" + "".join(f"+3461000000{i},n{i}\n" for i in range(5)))
    SuppressionList(redis_client, KEYS, account="a1").add(["+34610000001"])
    SuppressionList(redis_client, KEYS).add(["+34610000002"])
    with InstasentClient.from_settings(settings) as client:
        def suppressed(account: str) -> int:
            options = PreflightOptions(text="Hola {name}", sender="ACME", country="ES", hlr=False, account=account)
            return submission.preflight(path, options, settings=settings, redis=redis_client, client=client).suppressed

        assert (suppressed("a1"), suppressed("b"), suppressed("default")) == (2, 1, 1)


def test_an_unknown_account_is_refused_in_one_sentence_naming_the_command_that_lists_them(
        settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone\n+34610000001\n")
    with pytest.raises(InputError, match=r"no account is named 'nope': see dispatcher account list\.$"):
        options = PreflightOptions(text="x", sender="ACME", country="ES", account="nope")
        submission.preflight(path, options, settings=settings, redis=redis_client)


class Made:
    """Clients made for accounts, by token, in order."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def __call__(self, settings: Settings) -> InstasentClient:
        self.tokens.append(settings.instasent_token.reveal())
        return InstasentClient.from_settings(settings)


def test_a_worker_thread_keeps_one_client_per_account_and_sees_a_token_change_or_a_removal_after_its_ttl(
        sender: SendContext, redis_client: redis.Redis) -> None:
    settings = sender.settings.with_overrides(secret_key=PASSPHRASE)
    book = AccountBook(redis_client, KEYS, settings)
    book.add("a1", "token-one-0123456789", organization="acme")
    now = [0.0]
    made = Made()
    clients = AccountClients(book, sender.client, made, ttl_s=30, clock=lambda: now[0])
    assert clients.client("default") is sender.client
    first = clients.client("a1")
    assert clients.client("a1") is first and made.tokens == ["token-one-0123456789"]
    book.remove("a1")
    book.add("a1", "token-two-0123456789", organization="acme")
    assert clients.client("a1") is first  # within the TTL
    now[0] = 31.0
    second = clients.client("a1")
    assert second is not first and made.tokens[-1] == "token-two-0123456789"
    now[0] = 62.0
    assert clients.client("a1") is second  # same token: kept
    book.remove("a1")
    now[0] = 93.0
    with pytest.raises(UnknownItem):
        clients.client("a1")
    clients.close()


def test_a_campaign_whose_account_was_removed_fails_as_a_configuration_error_and_sends_nothing(
        sender: SendContext, redis_client: redis.Redis, fake: FakeInstasent) -> None:
    settings = sender.settings.with_overrides(secret_key=PASSPHRASE)
    book = AccountBook(redis_client, KEYS, settings)
    worker = replace(sender, settings=settings, accounts=AccountClients(book, sender.client, Made()))
    cid = on(sender, "gone", "acme")
    outcome = send_batch(worker, cid, 0)
    info = sender.store.get(cid)
    assert outcome.retry_in is None and info.state == "failed"
    assert info.reason == "configuration error: no account is named 'gone': see dispatcher account list."
    assert fake.bulk_requests == 0 and info.counts["pending"] == 10


def test_a_schedule_of_an_account_fires_campaigns_of_that_account_with_its_token(
        settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle, tmp_path: Path) -> None:
    token = "tA1-2c8e5a0d7b3f41e9a6c4"
    sandbox.reset(projects=[f"acme:{token}", f"beta:{SANDBOX_TOKEN}"])
    chosen = settings.with_overrides(secret_key=PASSPHRASE)
    AccountBook(redis_client, KEYS, chosen).add("a1", token)
    firer = Firer(settings=chosen, schedules=ScheduleStore(redis_client, KEYS), store=CampaignStore(redis_client, KEYS),
                  ops=BatchOps(redis_client, KEYS), enqueuer=Queue(),
                  client_factory=lambda: InstasentClient.from_settings(chosen))
    definition = ScheduleDef(name="weekly", file=str(schedule_csv(tmp_path / "l.csv")), every_s=3600,
                             options={"text": "Hola {name}", "sender": "ACME", "hlr": False}, account="a1")
    add_schedule(firer.schedules, Entries(chosen), definition, known_accounts=["default", "a1"])
    firing = firer.fire("weekly", manual=True)
    assert firing is not None and firing.outcome == "created", firing
    info = firer.store.get(firing.campaign)
    assert (info.account, info.organization) == ("a1", "acme")
    asked = {r["org"] for r in sandbox.http.get("/_sandbox/requests").json()["requests"]}
    assert asked == {"acme"}  # prices and balance with a1's token, not the default one's
    with pytest.raises(InputError, match="no account is named 'nope'"):
        add_schedule(firer.schedules, Entries(chosen), replace(definition, account="nope"),
                     known_accounts=["default", "a1"])


def test_a_default_account_campaign_takes_the_organization_its_balance_answer_names_and_shares_that_lane(
        settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle, tmp_path: Path) -> None:
    """INSTASENT_TOKEN belongs to acme too: its campaigns must pace in acme's lane, not a second one."""
    sandbox.reset(projects=["acme:tA1-2c8e5a0d7b3f41e9a6c4", f"acme:{SANDBOX_TOKEN}"])
    store, ops = CampaignStore(redis_client, KEYS), BatchOps(redis_client, KEYS)
    options = submission.SubmitOptions(PreflightOptions(text="Hola {name}", sender="ACME", hlr=False))
    cid, _, _ = submission.submit(store, ops, Queue(), settings, schedule_csv(tmp_path / "l.csv"), options)
    info = store.get(cid)
    assert (info.account, info.organization) == ("default", "acme")
    assert Keys.lane(info.organization, "POST /sms/bulk") == "acme:POST /sms/bulk"
