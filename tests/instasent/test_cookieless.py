"""The Instasent client's HTTP client keeps no cookies (``dispatcher.instasent.cookieless``)."""

from __future__ import annotations

import httpx

from dispatcher.instasent.cookieless import CookielessClient


def test_a_cookie_set_by_a_response_is_neither_kept_nor_sent_back() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"})

    client = CookielessClient(transport=httpx.MockTransport(answer))
    client.get("http://instasent.test/a")
    client.get("http://instasent.test/b")
    assert seen == [None, None] and len(client.cookies) == 0
