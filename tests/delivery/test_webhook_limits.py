"""The receiver's limits, on a real process: the secret before the body, a capped body, flat memory."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import redis

from dispatcher.dev.services import Service, start_webhook
from dispatcher.settings import Settings
from dispatcher.webhook.app import MAX_BODY_BYTES

pytestmark = pytest.mark.slow
SECRET = "s3cret-webhook-limits-0123456789"
MB = 1024 * 1024


@pytest.fixture()
def receiver(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start_webhook({"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
                             "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"})
    yield service
    service.stop()


def raw_post(url: str, path: str, headers: dict[str, str], parts: list[bytes], timeout_s: float = 15.0) -> str:
    """Send a request's headers and ``parts`` of its body (maybe not all of it), then return the status
    line of the answer. The socket waits at most ``timeout_s`` for it: a server that waits for the
    rest of the body never answers, and ``socket.timeout`` fails the test."""
    where = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": where.netloc, **headers}.items())
    with socket.create_connection((where.hostname, where.port), timeout=timeout_s) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
        for part in parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def chunked(data: bytes, size: int = 16 * 1024) -> list[bytes]:
    """``data`` as HTTP/1.1 chunks, without the terminating empty chunk (the body never ends)."""
    return [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def report(i: int) -> dict[str, object]:
    return {"id": f"i{i}", "clientId": f"abcdef0123-0-{i}", "status": "delivered", "code": 0,
            "eventAt": "2026-11-23T10:00:00Z"}


def test_a_wrong_secret_is_refused_before_the_body_is_read(receiver: Service, redis_client: redis.Redis) -> None:
    status = raw_post(receiver.url, "/dlr/wrong-secret", {"Content-Length": str(500 * MB)}, [b"{" * 1024])
    assert status.startswith("HTTP/1.1 401")
    assert redis_client.keys("dsptest:*") == []


def test_a_body_declared_over_the_cap_is_413_without_being_read(receiver: Service) -> None:
    status = raw_post(receiver.url, f"/dlr/{SECRET}", {"Content-Length": str(MAX_BODY_BYTES + 1)}, [b"["])
    assert status.startswith("HTTP/1.1 413")


def test_a_streamed_body_is_413_as_soon_as_it_passes_the_cap(receiver: Service, redis_client: redis.Redis) -> None:
    body = orjson.dumps([report(i) for i in range(2000)])  # about 200 KB, valid reports
    assert len(body) > 2 * MAX_BODY_BYTES
    status = raw_post(receiver.url, f"/dlr/{SECRET}", {"Transfer-Encoding": "chunked"},
                      chunked(body[: MAX_BODY_BYTES + 32 * 1024]))
    assert status.startswith("HTTP/1.1 413")
    assert redis_client.keys("dsptest:*") == []


def test_a_body_under_the_cap_is_applied(receiver: Service, redis_client: redis.Redis) -> None:
    reports = [report(i) for i in range(400)]
    body = orjson.dumps(reports)
    assert MAX_BODY_BYTES / 2 < len(body) < MAX_BODY_BYTES
    answer = httpx.post(f"{receiver.url}/dlr/{SECRET}", content=body, timeout=30)
    assert answer.status_code == 200 and answer.json()["outcomes"] == ["held"] * 400


def test_the_receiver_memory_stays_flat_under_a_flood_of_large_bodies(receiver: Service) -> None:
    junk = b"[" + b" " * (16 * MB)

    def flood(path: str, streamed: bool) -> None:
        with httpx.Client(timeout=60) as client:
            for _ in range(4):
                content = iter([junk[i:i + MB] for i in range(0, len(junk), MB)]) if streamed else junk
                # The receiver may close the connection while we are still sending: that is the point.
                with contextlib.suppress(httpx.HTTPError):
                    client.post(f"{receiver.url}{path}", content=content)

    httpx.post(f"{receiver.url}/dlr/{SECRET}", json=report(0)).raise_for_status()  # warm up: first-use imports
    assert httpx.post(f"{receiver.url}/dlr/wrong-secret", json=report(0)).status_code == 401
    before = memory_kb(receiver.pid)
    threads = [threading.Thread(target=flood, args=(path, streamed))
               for path in ("/dlr/wrong-secret", f"/dlr/{SECRET}") for streamed in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    after = memory_kb(receiver.pid)
    assert receiver.alive() and httpx.get(f"{receiver.url}/healthz").status_code == 200
    # 16 bodies of 16 MB were sent (256 MB); reading even one of them in full would add 16 MB or more.
    assert after["VmHWM"] - before["VmHWM"] < 8 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 8 * 1024, (before, after)
