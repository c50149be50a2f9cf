"""CPU of this process per ``POST /sms/bulk`` of 100 items against a local sandbox, through httpx's
client layer and through the lean path (``dispatcher.instasent.lean``), in blocks of 100 posts
taken in turn so that both see the same machine. A micro-measure, not a benchmark.

Usage: ``.venv/bin/python tools/lean_measure.py [blocks per path, default 20]``
"""

from __future__ import annotations

import statistics
import sys
import time

import httpx

from dispatcher.dev.services import start_sandbox
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import wire_item

TOKEN = "measure-token"
BLOCK = 100


def main(blocks: int) -> None:
    service = start_sandbox("--rate-limit", "0", token=TOKEN)
    admin = httpx.Client(base_url=service.url, timeout=30)
    clients = {lean: InstasentClient(token=TOKEN, base_url=service.url, lean=lean) for lean in (True, False)}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    wall: dict[bool, list[float]] = {True: [], False: []}
    sent = 0
    try:
        for block in range(2 * blocks + 2):  # the first block of each path warms up
            lean = block % 2 == 0
            if block % 10 == 0:  # keep the sandbox's memory small
                admin.post("/_sandbox/reset", json={}).raise_for_status()
            for _ in range(BLOCK):
                sent += 1
                items = [wire_item("Acme", f"+34600{i:04d}00", f"Hello {i}", f"m{sent}-{i}") for i in range(100)]
                cpu0, wall0 = time.process_time(), time.perf_counter()
                result = clients[lean].send_bulk_wire(items, deadline=time.monotonic() + 10)
                cpu1, wall1 = time.process_time(), time.perf_counter()
                assert len(result.accepted) == 100
                if block >= 2:
                    cpu[lean].append(cpu1 - cpu0)
                    wall[lean].append(wall1 - wall0)
    finally:
        for client in clients.values():
            client.close()
        admin.close()
        service.stop()
    for lean in (False, True):
        print(f"{'lean ' if lean else 'httpx'}: {len(cpu[lean])} posts, CPU mean "
              f"{statistics.mean(cpu[lean]) * 1e6:.0f} us, wall median {statistics.median(wall[lean]) * 1e3:.2f} ms")
    saved = statistics.mean(cpu[False]) - statistics.mean(cpu[True])
    print(f"the lean path saves {saved * 1e6:.0f} us of CPU per post ({saved / statistics.mean(cpu[False]):.1%})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
