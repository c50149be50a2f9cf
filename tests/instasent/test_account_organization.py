"""The account answer's organization: read when the answer names one (as the multi-organization
sandbox does), None when it carries only the balance (as Instasent documents it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dispatcher.instasent.client import InstasentClient
from tests.loopback import Handler


@pytest.mark.parametrize(("organization", "read"), [
    ({"id": "acme", "name": "Acme Ltd"}, "acme"), ({"name": "Acme Ltd"}, "Acme Ltd"), ({"id": 42}, "42"),
    ("beta", "beta"), (" ", None), ({}, None), (None, None), ([1], None), (True, None)])
def test_the_account_answer_names_the_organization_when_it_can_be_read(
        serve: Callable[[Handler], InstasentClient], organization: Any, read: str | None) -> None:
    entity = {"available": 3.5, "currency": "EUR", "organization": organization}
    client = serve(lambda request: httpx.Response(200, json={"entity": entity}))
    account = client.account()
    assert (account.available, account.currency, account.organization) == (3.5, "EUR", read)


def test_an_account_answer_without_an_organization_reads_as_none(serve: Callable[[Handler], InstasentClient]) -> None:
    client = serve(lambda request: httpx.Response(200, json={"entity": {"available": 1, "currency": "EUR"}}))
    assert client.account().organization is None
