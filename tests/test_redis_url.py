"""One Redis URL for every part (issue 23): a Sentinel URL is parsed once and each library gets
what it expects; a bad URL is one sentence; no password is ever shown."""

from __future__ import annotations

import pytest
from redbeat.schedulers import RedBeatConfig

from dispatcher.errors import ConfigurationError
from dispatcher.resources import parse_redis_url
from dispatcher.settings import Settings
from tasks.app import make_app

URL = "redis+sentinel://:p%40ss-s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/dispatcher/2"


def test_a_sentinel_url_names_its_sentinels_service_database_and_password() -> None:
    target = parse_redis_url(URL)
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (target.service, target.db, target.password, target.tls) == ("dispatcher", 2, "p@ss-s3cret", False)
    assert "s3cret" not in repr(target) and "s3cret" not in target.describe()


def test_kombu_gets_its_sentinel_broker_url_with_the_master_name() -> None:
    url, options, tls = parse_redis_url(URL).broker()
    assert url == ("sentinel://:p%40ss-s3cret@10.0.0.1:26379/2;sentinel://:p%40ss-s3cret@10.0.0.2:26379/2;"
                   "sentinel://:p%40ss-s3cret@[::1]:26380/2")
    assert options == {"master_name": "dispatcher"} and tls is None


def test_redbeat_gets_its_sentinel_options_and_no_password_in_its_url() -> None:
    app = make_app(Settings(redis_url=URL))
    config = RedBeatConfig(app)
    assert config.redis_url == "redis-sentinel://10.0.0.1:26379/2"
    assert config.redbeat_redis_options["sentinels"][0] == ("10.0.0.1", 26379)
    assert config.redbeat_redis_options["service_name"] == "dispatcher"
    assert app.conf.broker_transport_options["master_name"] == "dispatcher"
    shown = repr(app.conf.table(with_defaults=True)) + app.conf.humanize(with_defaults=True)
    assert "s3cret" not in shown


def test_tls_with_a_ca_file_reaches_every_part() -> None:
    target = parse_redis_url("rediss+sentinel://h1/m", ca_file="/etc/ca.pem")
    _, options, tls = target.broker()
    assert tls == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/etc/ca.pem"}
    assert options["sentinel_kwargs"] == {"ssl": True, "ssl_ca_certs": "/etc/ca.pem"}
    assert target.redbeat()["redbeat_redis_use_ssl"] == {"ssl_ca_certs": "/etc/ca.pem"}
    direct = parse_redis_url("rediss://name:6380/0", ca_file="/etc/ca.pem")
    assert direct.client(connect_timeout_s=1, timeout_s=1).connection_pool.connection_kwargs["ssl_ca_certs"] == \
        "/etc/ca.pem"


@pytest.mark.parametrize(("url", "says"), [
    ("http://h:6379", "must start with redis://"),
    ("redis+sentinel://:pw-s3cret@h1:port/m", "sentinel port"),
    ("redis+sentinel://:pw-s3cret@h1:26379", "must name the Sentinel service"),
    ("redis+sentinel://:pw-s3cret@h1:26379/m/x", "database number"),
    ("redis://:pw-s3cret@h:port/0", "not a valid Redis URL"),
])
def test_a_bad_url_is_one_sentence_without_its_password(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_redis_url(url)
    message = str(raised.value)
    assert says in message and "s3cret" not in message and "\n" not in message


def test_the_settings_repr_stars_url_passwords() -> None:
    text = repr(Settings(redis_url=URL, broker_url="amqp://u:amqp-s3cret@rabbit//"))
    assert "s3cret" not in text and "10.0.0.1:26379" in text
