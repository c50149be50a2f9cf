"""Fixtures shared by the sandbox's tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import SANDBOX_TOKEN, SandboxHandle


@pytest.fixture()
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """A client of the session sandbox that sends the token as a Bearer header."""
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
                      timeout=10) as client:
        yield client
