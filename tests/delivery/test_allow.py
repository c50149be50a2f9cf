"""``DISPATCHER_WEBHOOK_ALLOW``: parsed once into networks, and matched against the client address
the server resolved (the end-to-end checks, X-Forwarded-For included, are in tests/abuse)."""

from __future__ import annotations

import ipaddress

import pytest

from dispatcher.errors import ConfigurationError
from dispatcher.settings import Settings
from dispatcher.webhook.app import allowed


def networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return Settings.from_env({"DISPATCHER_WEBHOOK_ALLOW": value}, env_file=None).webhook_allow_networks


def test_the_allow_list_takes_networks_and_bare_addresses_and_is_empty_by_default() -> None:
    assert Settings.from_env({}, env_file=None).webhook_allow_networks == ()
    assert networks(" 203.0.113.0/24, 198.51.100.7 ,2001:db8::/32,") == (
        ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("198.51.100.7/32"),
        ipaddress.ip_network("2001:db8::/32"))
    assert networks("203.0.113.9/24") == (ipaddress.ip_network("203.0.113.0/24"),)  # host bits are forgiven


@pytest.mark.parametrize("value", ["instasent.com", "203.0.113.0/33", "10.0.0.0/8;10.1.0.0/16", "*"])
def test_an_entry_that_is_not_an_address_or_a_network_is_one_sentence(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        networks(value)
    assert str(caught.value).startswith("DISPATCHER_WEBHOOK_ALLOW: ") and "\n" not in str(caught.value)


def test_a_client_is_allowed_only_inside_the_list_and_any_client_without_one() -> None:
    inside = networks("203.0.113.0/24, 2001:db8::/32")
    assert allowed(("203.0.113.9", 5000), inside)
    assert allowed(("2001:db8::1", 5000), inside)
    assert allowed(("::ffff:203.0.113.9", 5000), inside)  # an IPv4 client on a dual-stack socket
    assert not allowed(("127.0.0.1", 5000), inside)
    assert not allowed(("198.51.100.7", 5000), inside)
    assert not allowed(None, inside)  # no address (a Unix socket): not in any network
    assert not allowed(("not-an-address", 0), inside)
    assert allowed(None, ()) and allowed(("127.0.0.1", 1), ())
