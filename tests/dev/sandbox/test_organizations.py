"""The sandbox plays several organizations (``--project ORG:TOKEN``): the tokens of one organization
share its balance and its rate limits, the account answer names it, and the request log says whose
each request was. Without ``--project`` the sandbox answers as it always has."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dispatcher.dev.services import Service, start_sandbox
from tests.helpers import SANDBOX_TOKEN, SandboxHandle, run

#: Two projects of acme, one of beta (the tokens of the issue's example).
PROJECTS = ("acme:tA1", "acme:tA2", "beta:tB")
ES_PRICE = 0.045


def sms(i: int) -> dict[str, Any]:
    return {"from": "Acme", "to": f"+34600{i:04d}00", "text": "hi", "clientId": f"org-{i}"}


def away_from_a_minute_boundary(margin_s: float = 3.0) -> None:
    """Wait, if needed, until the current wall-clock minute has ``margin_s`` seconds left at least."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.05)


@pytest.fixture(scope="module")
def orgs_service() -> Iterator[Service]:
    options = [arg for project in PROJECTS for arg in ("--project", project)]
    service = start_sandbox(*options, "--rate-limit", "4", "--balance", "1", token=SANDBOX_TOKEN)
    yield service
    service.stop()


@pytest.fixture()
def orgs(orgs_service: Service) -> Iterator[SandboxHandle]:
    handle = SandboxHandle(orgs_service)
    handle.reset()
    yield handle
    handle.close()


def as_token(handle: SandboxHandle, token: str) -> httpx.Client:
    return httpx.Client(base_url=handle.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_the_account_answer_names_the_organization_of_the_token(orgs: SandboxHandle) -> None:
    answers = {}
    for token in ("tA1", "tA2", "tB"):
        with as_token(orgs, token) as client:
            answers[token] = client.get("/organization/account").json()["entity"]
    assert answers["tA1"] == answers["tA2"] == {"available": 1.0, "currency": "EUR",
                                                "organization": {"id": "acme", "name": "acme"}}
    assert answers["tB"]["organization"] == {"id": "beta", "name": "beta"}


def test_with_projects_only_their_tokens_are_accepted(orgs: SandboxHandle) -> None:
    for token in (SANDBOX_TOKEN, "tA", "acme", "tA1x"):
        with as_token(orgs, token) as client:
            assert client.get("/organization/account").status_code == 401, token


def test_the_tokens_of_one_organization_share_its_balance_and_not_anothers(orgs: SandboxHandle) -> None:
    with as_token(orgs, "tA1") as a1, as_token(orgs, "tA2") as a2, as_token(orgs, "tB") as b:
        assert a1.post("/sms/bulk", json=[sms(i) for i in range(20)]).status_code == 201  # 0.90 of 1.00
        assert a2.get("/organization/account").json()["entity"]["available"] == pytest.approx(1 - 20 * ES_PRICE)
        assert a2.post("/sms/bulk", json=[sms(i) for i in range(20, 23)]).status_code == 402  # 0.135 > 0.10
        assert b.post("/sms/bulk", json=[sms(i) for i in range(20, 23)]).status_code == 201
        assert b.get("/organization/account").json()["entity"]["available"] == pytest.approx(1 - 3 * ES_PRICE)
    stats = orgs.stats()
    assert stats["organizations"] == {"acme": {"balance": pytest.approx(0.1)},
                                      "beta": {"balance": pytest.approx(1 - 3 * ES_PRICE)}}
    assert stats["balance"] == pytest.approx(0.1 + 1 - 3 * ES_PRICE)


def test_the_tokens_of_one_organization_share_its_rate_limit_and_not_anothers(orgs: SandboxHandle) -> None:
    away_from_a_minute_boundary()
    with as_token(orgs, "tA1") as a1, as_token(orgs, "tA2") as a2, as_token(orgs, "tB") as b:
        statuses = [client.get("/sms").status_code for client in (a1, a2, a1, a2)]
        assert statuses == [200, 200, 200, 200]
        refused = a2.get("/sms")
        assert (refused.status_code, refused.content) == (429, b"")
        assert a1.get("/sms").status_code == 429
        other = b.get("/sms")
        assert other.status_code == 200 and other.headers["x-ratelimit-remaining"] == "3"
        assert a1.get("/organization/account").status_code == 200  # another endpoint, its own window


def test_every_request_log_row_names_the_organization_of_its_token(orgs: SandboxHandle) -> None:
    with as_token(orgs, "tA1") as a1, as_token(orgs, "tA2") as a2, as_token(orgs, "tB") as b:
        a1.post("/sms/bulk", json=[sms(0), sms(1)])
        a2.get("/sms")
        b.get("/organization/account")
    orgs.http.get("/sms")  # no token: no organization
    rows = orgs.http.get("/_sandbox/requests").json()["requests"]
    assert [(r["endpoint"], r["status"], r["items"], r["org"]) for r in rows] == [
        ("POST /sms/bulk", 201, 2, "acme"), ("GET /sms", 200, 0, "acme"),
        ("GET /organization/account", 200, 0, "beta"), ("GET /sms", 401, 0, None)]


def test_the_config_names_the_organizations_and_shows_no_token(orgs: SandboxHandle) -> None:
    config = orgs.http.get("/_sandbox/config").json()
    assert config["organizations"] == ["acme", "beta"]
    assert "projects" not in config and "token" not in config
    shown = orgs.http.get("/_sandbox/config").text + orgs.http.get("/_sandbox/stats").text
    assert not any(token in shown for token in ("tA1", "tA2", "tB"))


def test_a_reset_restores_every_organizations_balance(orgs: SandboxHandle) -> None:
    with as_token(orgs, "tB") as b:
        b.post("/sms/bulk", json=[sms(0)])
        orgs.reset(balance=2)
        assert b.get("/organization/account").json()["entity"]["available"] == 2.0
    assert orgs.stats()["organizations"] == {"acme": {"balance": 2.0}, "beta": {"balance": 2.0}}


def test_a_reset_can_give_the_projects_it_plays(sandbox: SandboxHandle) -> None:
    sandbox.reset(projects=["gamma:tG"])
    with as_token(sandbox, "tG") as g, as_token(sandbox, SANDBOX_TOKEN) as default:
        assert g.get("/organization/account").json()["entity"]["organization"]["id"] == "gamma"
        assert default.get("/organization/account").status_code == 401
    sandbox.reset()
    with as_token(sandbox, SANDBOX_TOKEN) as default:
        assert "organization" not in default.get("/organization/account").json()["entity"]


@pytest.mark.parametrize("projects", [["nocolon"], [":tX"], ["acme:"], "acme:tX", ["acme:tX", "beta:tX"]])
def test_a_reset_with_a_malformed_project_is_400(sandbox: SandboxHandle, projects: Any) -> None:
    response = sandbox.http.post("/_sandbox/reset", json={"projects": projects})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "ORG:TOKEN" in message or "given to two organizations (acme and beta)" in message
    assert "tX" not in message


def test_without_projects_the_log_rows_carry_no_organization_and_the_account_names_none(
        sandbox: SandboxHandle) -> None:
    with as_token(sandbox, SANDBOX_TOKEN) as client:
        assert client.get("/organization/account").json() == {"entity": {"available": 100000.0, "currency": "EUR"}}
    assert [r["org"] for r in sandbox.http.get("/_sandbox/requests").json()["requests"]] == [None]
    assert "organizations" not in sandbox.stats() and "organizations" not in sandbox.http.get("/_sandbox/config").json()


@pytest.mark.parametrize(("projects", "words"), [(["secret-token-value"], "ORG:TOKEN, both non-empty"), (
    ["acme:secret-token-value", "beta:secret-token-value"], "given to two organizations (acme and beta)")])
def test_a_malformed_project_option_is_refused_without_echoing_its_token(projects: list[str], words: str) -> None:
    result = run({}, "sandbox", "--port", "1", *(arg for p in projects for arg in ("--project", p)))
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert "secret-token-value" not in result.stdout + result.stderr
