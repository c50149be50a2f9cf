"""httpcore's transport errors become their httpx counterparts in the transport, as httpx's own
transport maps them, and so the same project errors."""

from __future__ import annotations

import traceback

import httpcore
import httpx
import pytest

from dispatcher.errors import DispatcherError
from dispatcher.instasent.translate import translate_transport_error
from dispatcher.instasent.transport import as_httpx_error

LEAK = "Bearer tok-LEAKCANARY"

#: Every httpcore exception httpx maps, with what it maps it to (httpx._transports.default).
PAIRS = [
    (httpcore.ConnectError, httpx.ConnectError), (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout), (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.WriteError, httpx.WriteError), (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ReadTimeout, httpx.ReadTimeout), (httpcore.ReadError, httpx.ReadError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError), (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException), (httpcore.ProtocolError, httpx.ProtocolError),
]


def translated(exc: Exception) -> DispatcherError:
    with pytest.raises(DispatcherError) as info, translate_transport_error("POST /sms/bulk"):
        raise exc
    return info.value


@pytest.mark.parametrize(("core", "ours"), PAIRS, ids=[core.__name__ for core, _ in PAIRS])
def test_an_httpcore_error_becomes_its_httpx_counterpart(core: type[Exception], ours: type[Exception]) -> None:
    mapped = as_httpx_error(core("boom"))
    assert type(mapped) is ours and str(mapped) == "boom"


def test_an_error_that_is_not_httpcores_is_left_alone() -> None:
    assert as_httpx_error(ValueError("boom")) is None


def test_a_local_protocol_error_does_not_quote_its_message() -> None:
    error = translated(httpx.LocalProtocolError("Illegal header value " + LEAK))
    assert "LEAKCANARY" not in "".join(traceback.format_exception(error))
