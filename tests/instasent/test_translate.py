"""httpcore's transport errors (raised by the lean path) become the same project errors as the
httpx errors httpx would have turned them into."""

from __future__ import annotations

import traceback

import httpcore
import httpx
import pytest

from dispatcher.errors import DispatcherError
from dispatcher.instasent.translate import translate_transport_error

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
def test_an_httpcore_error_becomes_what_its_httpx_counterpart_becomes(core: type[Exception],
                                                                      ours: type[Exception]) -> None:
    message = "Illegal header value " + LEAK if core is httpcore.LocalProtocolError else "boom"
    from_core, from_httpx = translated(core(message)), translated(ours(message))
    assert type(from_core) is type(from_httpx)
    assert str(from_core) == str(from_httpx)
    assert from_core.maybe_processed == from_httpx.maybe_processed


def test_an_httpcore_local_protocol_error_does_not_quote_its_message() -> None:
    error = translated(httpcore.LocalProtocolError("Illegal header value " + LEAK))
    assert "LEAKCANARY" not in "".join(traceback.format_exception(error))
