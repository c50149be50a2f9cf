"""Redis loses its last seconds of writes while Instasent keeps what it accepted (issue 23): Redis
is SIGKILLed and restarted from a copy of its append-only files taken a few seconds earlier, so the
claims and records of the POSTs sent in those seconds are gone. The campaign must still complete
with every clientId accepted exactly once: the run-id check of ``lua/claim.lua`` (its ``rc = '1'``)
reconciles every batch last touched before the restart. Without that line this test fails."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import SandboxHandle, assert_exactly_once, finished, recipients
from tests.helpers import wait_through_restarts as wait_for
from tests.sending.test_redis_restart import DurableRedis, harness_on, worker_settings

pytestmark = pytest.mark.slow

#: Seconds of writes lost: between the copy of the AOF and the crash.
LOST_S = 3.0


@pytest.fixture()
def aof_redis() -> Iterator[DurableRedis]:
    server = DurableRedis()
    server.start()
    yield server
    server.stop()


def test_redis_restarted_from_an_aof_copied_seconds_before_the_crash_sends_nothing_twice(
        aof_redis: DurableRedis, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    sandbox = start_own_sandbox("--no-enforce-unique-client-id", "--rate-limit", "0", "--latency-ms", "20")
    h = harness_on(aof_redis, sandbox, aof_redis.url)
    # 3,000 messages at 240 requests/min: 4 POSTs a second, so the lost seconds hold about 1,200
    # accepted messages whose records Redis forgets.
    try:
        for _ in range(2):
            h.start_worker(concurrency=2, **worker_settings(h, DISPATCHER_RATE_LIMIT="240"))
        cid = h.submit(recipients(3000))
        wait_for(lambda: h.store.get(cid).counts["sent"] >= 1000, 120, "1,000 messages sent")
        aof = aof_redis.dir / "appendonlydir"
        copy = aof_redis.dir.parent / (aof_redis.dir.name + "-aof-copy")
        shutil.copytree(aof, copy)
        sent_at_copy = h.store.get(cid).counts["sent"]
        time.sleep(LOST_S)
        sent_at_crash = h.store.get(cid).counts["sent"]
        aof_redis.kill()
        shutil.rmtree(aof)
        shutil.copytree(copy, aof)
        shutil.rmtree(copy)
        aof_redis.start()
        assert sent_at_crash > sent_at_copy, "no POST was made in the seconds the crash loses"
        assert h.store.get(cid).counts["sent"] < sent_at_crash, "the restart lost nothing"
        wait_for(lambda: finished(h.store.get(cid)), 240, "the campaign to finish by itself")
        info = h.store.get(cid)
        assert info.state == "completed", info
        assert_exactly_once(h, cid, info)
        assert info.counts["sent"] == 3000
    finally:
        h.stop()
