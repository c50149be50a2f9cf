"""An ``httpx.Client`` that neither keeps nor sends cookies.

Instasent's API is authenticated by a bearer token and sets no cookie we need, but httpx reads
every response's ``Set-Cookie`` headers through ``http.cookiejar`` (building a ``urllib``
request and response for each): about 3 % of a worker's CPU at no latency.
"""

from __future__ import annotations

import httpx


class _NoCookies(httpx.Cookies):
    """An always-empty cookie store: what a response sets is dropped."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Drop the response's cookies."""


class CookielessClient(httpx.Client):
    """``httpx.Client`` whose cookie store is always empty (see the module docstring)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        """Ignored: this client keeps no cookies."""


_NO_COOKIES = _NoCookies()
