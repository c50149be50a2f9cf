"""Three accounts of two organizations sending at once through real workers, checked from the
sandbox's request log: each organization's lane stays under its own limit, the two accounts of one
organization share its lane half and half, nothing is answered 429, and no token is left in clear
text in Redis or in a worker's log.

The suite runs a scaled-down scenario (a few thousand messages, 240 requests a minute); the issue's
own (30,000 messages per campaign at 600 a minute, with the pace assertions) runs with
``DISPATCHER_FULL_ACCOUNTS=1``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from dispatcher.dev.services import start_worker
from dispatcher.keys import Keys
from dispatcher.sending.accounts import AccountBook
from dispatcher.settings import Settings
from tests.helpers import Harness, SandboxHandle, finished, over_the_limit, recipients, worker_env
from tests.sending.test_accounts import every_value

pytestmark = pytest.mark.slow

PASSPHRASE = "correct horse battery staple, twice over"
#: Tokens long and odd enough that finding one by accident is impossible.
TOKENS = {"a1": "tA1-5e0c93b1f7d24a68be31", "a2": "tA2-0b7d1e4c9a3f42d6a8c5", "b": "tB-3f8a6c2e1d9b47f0e2a7"}
ORGS = {"a1": "acme", "a2": "acme", "b": "beta"}
BULK = "POST /sms/bulk"


@dataclass
class Run:
    """What the sandbox saw of one run: bulk request times by organization, and the order in which
    each organization's bulks arrived, by account."""

    stamps: dict[str, list[float]]
    order: dict[str, list[str]]
    statuses: list[int]
    #: Account -> (first, last) Unix s one of its messages was accepted.
    span: dict[str, tuple[float, float]]

    def both_run(self) -> list[float]:
        """acme's bulk times while a1 and a2 both send."""
        start = max(self.span["a1"][0], self.span["a2"][0])
        end = min(self.span["a1"][1], self.span["a2"][1])
        return sorted(t for t in self.stamps["acme"] if start <= t <= end)


def start(h: Harness, sandbox: SandboxHandle, per_minute: int, size: int) -> dict[str, str]:
    """Reset the sandbox to three projects of two organizations, add the accounts, store one
    campaign of ``size`` messages on each, then start the workers: they all begin at once."""
    sandbox.reset(projects=[f"{ORGS[a]}:{t}" for a, t in TOKENS.items()], rate_limit_per_min=per_minute)
    book = AccountBook(h.store.redis, h.store.keys, h.settings)
    for name, token in TOKENS.items():
        assert book.add(name, token).organization == ORGS[name]
    campaigns = {}
    for i, name in enumerate(TOKENS):
        cid = h.store.create(name, recipients(size, start=i * size), window=h.settings.effective_queue_window,
                             account=name, organization=ORGS[name])
        campaigns[cid] = name
    for cid in campaigns:
        h.enqueuer.enqueue(cid, h.ops.reserve(cid))
    # A worker as `dispatcher worker` starts it (no tuning): task slots enough for every lane.
    h.workers.append(start_worker(worker_env(h.settings, DISPATCHER_SECRET_KEY=PASSPHRASE), concurrency=None))
    for cid in campaigns:
        assert h.wait(cid, finished, timeout_s=max(120, size // 50)).state == "completed"
    return campaigns


def observed(sandbox: SandboxHandle, campaigns: dict[str, str]) -> Run:
    rows = sandbox.http.get("/_sandbox/requests").json()["requests"]
    stamps: dict[str, list[float]] = {"acme": [], "beta": []}
    for row in rows:
        if row["endpoint"] == BULK and row["status"] == 201:
            stamps[row["org"]].append(float(row["t"]))
    # Accepted messages come oldest first; a bulk's messages are together, so each change of
    # batch is one request (a clean run neither splits nor resends).
    order: dict[str, list[str]] = {"acme": [], "beta": []}
    span: dict[str, tuple[float, float]] = {}
    last = ""
    for message in sandbox.messages():
        cid, batch, _ = str(message["clientId"]).split("-")
        account, at = campaigns[cid], float(message["acceptedAt"])
        span[account] = (min(span.get(account, (at, at))[0], at), at)
        if f"{cid}-{batch}" != last:
            last = f"{cid}-{batch}"
            order[ORGS[account]].append(account)
    return Run(stamps, order, [int(r["status"]) for r in rows], span)


def shares_while_both_run(order: list[str]) -> dict[str, float]:
    """Each account's share of its organization's bulks from when both have sent to when one has
    sent its last."""
    first = max(order.index("a1"), order.index("a2"))
    last = min(len(order) - 1 - order[::-1].index(name) for name in ("a1", "a2"))
    both = order[first:last + 1]
    return {name: both.count(name) / len(both) for name in ("a1", "a2")}


def pace(stamps: list[float]) -> float:
    """Requests per minute from the first to the last."""
    return (len(stamps) - 1) * 60 / (stamps[-1] - stamps[0])


@pytest.fixture()
def harness(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[Harness]:
    h = Harness(settings.with_overrides(queue_window=8, secret_key=PASSPHRASE), redis_client, sandbox)
    yield h
    h.stop()


def check(h: Harness, run: Run, per_minute: int) -> None:
    """The properties that hold on any machine, however loaded."""
    assert 429 not in run.statuses
    for org in ("acme", "beta"):
        # Every window up to 60 s, each stamp taken as uncertain by +-250 ms: the sandbox stamps a
        # request when it arrives, and a default worker's dozens of threads on a loaded 2-core
        # machine delay some by 100 ms or more. A lane per account instead of per organization
        # (twice acme's rate) would still overflow every window longer than a second or two.
        assert over_the_limit([(t - 0.25, t + 0.25) for t in run.stamps[org]], per_minute)[:5] == [], org
        stamps = sorted(run.stamps[org])
        assert max(sum(1 for t in stamps if s <= t < s + 60.0) for s in stamps) <= per_minute
    shares = shares_while_both_run(run.order["acme"])
    assert all(0.4 <= share <= 0.6 for share in shares.values()), shares
    assert set(run.order["beta"]) == {"b"}
    tokens = [t.encode() for t in TOKENS.values()]
    forms = {form for t in tokens for form in (t, base64.b64encode(t), base64.urlsafe_b64encode(t))}
    assert not any(form in value for value in every_value(h.store.redis) for form in forms)
    logs = "".join(worker.log_tail(100_000) for worker in h.workers)
    assert not any(t in logs for t in TOKENS.values())


def test_two_organizations_send_at_once_each_in_its_own_lane_and_one_organizations_accounts_share_it(
        harness: Harness, sandbox: SandboxHandle) -> None:
    per_minute = 300
    harness.settings = harness.settings.with_overrides(rate_limit_per_min=per_minute)
    campaigns = start(harness, sandbox, per_minute, size=4000)
    run = observed(sandbox, campaigns)
    assert (len(run.stamps["acme"]), len(run.stamps["beta"])) == (80, 40)
    check(harness, run, per_minute)
    print(f"acme {pace(run.both_run()):.0f}/min while both run, beta {pace(sorted(run.stamps['beta'])):.0f}/min, "
          f"a1/a2 shares {shares_while_both_run(run.order['acme'])}")
    lanes = {k.decode() for k in harness.store.redis.scan_iter(f"{harness.settings.key_prefix}:rl:*")}
    assert {Keys(harness.settings.key_prefix).rate(f"{org}:{BULK}") for org in ("acme", "beta")} <= lanes


@pytest.mark.skipif(os.environ.get("DISPATCHER_FULL_ACCOUNTS") != "1",
                    reason="the issue's full scenario takes minutes: set DISPATCHER_FULL_ACCOUNTS=1")
def test_the_issues_three_campaigns_of_30000_reach_each_organizations_limit_without_passing_it(
        harness: Harness, sandbox: SandboxHandle) -> None:
    per_minute = 600
    harness.settings = harness.settings.with_overrides(rate_limit_per_min=per_minute)
    campaigns = start(harness, sandbox, per_minute, size=30_000)
    run = observed(sandbox, campaigns)
    check(harness, run, per_minute)
    paces = {"acme": pace(run.both_run()), "beta": pace(sorted(run.stamps["beta"]))}
    print(f"paces {paces} per minute, a1/a2 shares {shares_while_both_run(run.order['acme'])}")
    assert all(p >= 0.95 * per_minute for p in paces.values()), paces
