"""The console's campaign form and API with accounts: the field ``account`` picks the account a
campaign sends for; the API, the listing and ``/metrics`` show it; an unknown one is a 400."""

from __future__ import annotations

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.sending.accounts import AccountBook
from dispatcher.settings import Settings
from tests.helpers import SANDBOX_TOKEN, UPLOAD_OPTIONS, ConsoleHandle, SandboxHandle, small_csv, upload_campaign

PASSPHRASE = "correct horse battery staple, twice over"
TOKEN = "tA1-7d2c9e0b4a1f46e3c8b5"


@pytest.fixture()
def console_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(max_upload_mb=1.0, console_data_dir=str(tmp_path_factory.mktemp("console-data")),
                                   secret_key=PASSPHRASE)


def test_the_campaign_form_takes_an_account_and_the_api_listing_and_metrics_show_it(
        api: ConsoleHandle, sandbox: SandboxHandle, redis_client: redis.Redis) -> None:
    sandbox.reset(projects=[f"acme:{TOKEN}", f"beta:{SANDBOX_TOKEN}"])
    AccountBook(redis_client, api.console.store.keys, api.console.settings).add("a1", TOKEN)
    created = upload_campaign(api, account="a1")
    assert (created["account"], created["organization"]) == ("a1", "acme")
    default = upload_campaign(api)
    assert (default["account"], default["organization"]) == ("default", "beta")  # its balance answer names beta
    shown = api.http.get(f"/api/campaigns/{created['id']}", headers=api.as_viewer()).json()
    assert shown["account"] == "a1"
    listed = api.http.get("/api/campaigns", headers=api.as_viewer()).json()["campaigns"]
    assert {c["id"]: c["account"] for c in listed} == {created["id"]: "a1", default["id"]: "default"}
    metrics = api.http.get("/metrics", headers=api.as_viewer()).text
    series = [s.labels for family in text_string_to_metric_families(metrics) for s in family.samples
              if "campaign" in s.labels]
    assert series and all(s["account"] == {created["id"]: "a1", default["id"]: "default"}[s["campaign"]]
                          for s in series)
    assert TOKEN not in metrics + str(listed) + str(shown)


@pytest.mark.parametrize("route", ["/api/campaigns", "/api/preflight"])
def test_an_unknown_account_is_a_400_naming_the_command_that_lists_them(api: ConsoleHandle, route: str) -> None:
    response = api.http.post(route, headers=api.as_admin(), data={**UPLOAD_OPTIONS, "account": "nope"},
                             files={"file": ("list.csv", small_csv(), "text/csv")})
    assert response.status_code == 400
    assert response.json()["error"] == "no account is named 'nope': see dispatcher account list."
