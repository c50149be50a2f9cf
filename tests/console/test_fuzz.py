"""The console's API fuzzed from its own OpenAPI document by schemathesis, with both roles.

A real ``dispatcher console`` process runs on the session's Redis, and Instasent is the test
sandbox (``INSTASENT_BASE_URL`` points at it), so a fuzzed admin request that submits a campaign or
pays for HLR lookups spends sandbox credit only. No worker runs: campaigns created by the fuzzer are
queued and never sent. The checks: no 5xx answer, every status and body and content type as
documented. The budget is ``FUZZ_MAX_EXAMPLES`` cases per operation (25 unless set; ``make fuzz``
sets more).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from dispatcher.console.auth import TokenStore
from dispatcher.dev.services import free_port, http_ready, spawn, wait_until
from dispatcher.keys import Keys
from dispatcher.sending.health import WorkerRegistry
from dispatcher.settings import Settings
from tests.helpers import SandboxHandle, small_csv, worker_env

pytestmark = pytest.mark.slow  # real console processes (and a fuzzer), seconds each

pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency: pip install -e '.[dev]'")

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture()
def running_console(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle,
                    tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``dispatcher console`` as a process on the sandbox, with an admin and a viewer token."""
    env = worker_env(settings, DISPATCHER_CONSOLE_DATA_DIR=str(tmp_path / "console-data"),
                     DISPATCHER_MAX_UPLOAD_MB="2")
    assert env["INSTASENT_BASE_URL"] == sandbox.url  # nothing the fuzzer does can pay outside the sandbox
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    console = spawn("console", [sys.executable, "-m", "dispatcher", "console", "--port", str(port)], url,
                    env=env)
    try:
        wait_until(http_ready(f"{url}/healthz"), console, timeout_s=30)
        tokens = TokenStore(redis_client, Keys(settings.key_prefix))
        # A live worker heartbeat, so that GET /readyz is 200 here (its 503 means "not ready", by design)
        # and the fuzzer still checks it never answers 5xx to any query.
        WorkerRegistry(redis_client, Keys(settings.key_prefix)).beat("fuzz-worker@test", ttl_s=3600)
        admin = tokens.create("fuzz-admin", "admin")
        # One real campaign (with a reject) so that the {cid} routes are reached past their 404.
        created = httpx.post(f"{url}/api/campaigns", headers={"Authorization": f"Bearer {admin}"}, timeout=60,
                             data={"text": "Hola {name}", "from": "ACME", "country": "ES", "no_hlr": "1"},
                             files={"file": ("list.csv", small_csv(20), "text/csv")})
        assert created.status_code == 201, created.text
        yield {"url": url, "admin": admin, "viewer": tokens.create("fuzz-viewer", "viewer"), "service": console,
               "campaign": created.json()["id"]}
    finally:
        console.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_every_operation_fuzzed_from_the_openapi_document_answers_as_documented_and_never_5xx(
        running_console: dict[str, Any], sandbox: SandboxHandle, role: str, tmp_path: Path) -> None:
    examples = os.environ.get("FUZZ_MAX_EXAMPLES", "25")
    # Half the generated campaign ids are the real one, the other half anything the schema allows.
    campaign = running_console["campaign"]
    (tmp_path / "schemathesis.toml").write_text(
        f'[dictionaries.campaigns]\nvalues = ["{campaign}"]\n\n'
        '[parameters]\n"path.cid" = { dictionary = "campaigns", probability = 0.5 }\n', encoding="utf-8")
    argv = [sys.executable, "-m", "schemathesis.cli", "run", f"{running_console['url']}/api/openapi.json",
            "--header", f"Authorization: Bearer {running_console[role]}", "--checks", CHECKS,
            "--max-examples", examples, "--seed", "21", "--workers", "2", "--no-color",
            "--phases", "examples,coverage,fuzzing", "--request-timeout", "30",
            "--generation-database", "none", "--suppress-health-check", "all",
            "--report", "junit", "--report-dir", str(tmp_path / "report")]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=570, cwd=tmp_path)
    # The token is a secret even in a test's output: schemathesis prints the headers of a failing case.
    output = (run.stdout + run.stderr).replace(running_console[role], "<token>")
    assert run.returncode == 0, output[-12_000:] + "\n--- console log ---\n" + running_console["service"].log_tail(60)
    assert "No operations" not in output
    assert running_console["service"].alive
