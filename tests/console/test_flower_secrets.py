"""Flower and `celery inspect conf` show no password, and Flower refuses to listen openly without one."""

from __future__ import annotations

from redbeat.schedulers import RedBeatConfig

from dispatcher.settings import Settings
from tasks.app import batch_label, make_app, redbeat_connection
from tests.helpers import one_sentence_error, run


def test_the_celery_config_workers_report_to_flower_masks_every_password() -> None:
    settings = Settings(redis_url="redis://:s3cret-redis@redis.internal:6380/2",
                        broker_url="amqp://user:s3cret-amqp@rabbit.internal:5672//")
    conf = make_app(settings).conf
    shown = repr(conf.table(with_defaults=True)) + conf.humanize(with_defaults=True)
    assert "s3cret" not in shown
    assert "redis.internal:6380/2" in shown  # the rest of the URL stays readable


def test_redbeat_still_gets_the_password_it_needs() -> None:
    app = make_app(Settings(redis_url="redis://beat:p%40ss@127.0.0.1:6379/3"))
    config = RedBeatConfig(app)
    assert config.redis_url == "redis://127.0.0.1:6379/3"
    assert config.redbeat_redis_options == {"password": "p@ss", "username": "beat"}
    assert redbeat_connection("redis://127.0.0.1:6379/0") == {
        "redbeat_redis_url": "redis://127.0.0.1:6379/0", "redbeat_redis_options": {}}


def test_batch_tasks_are_labelled_with_the_campaign_name_and_number() -> None:
    assert batch_label("spring sale", 7) == "send_batch spring sale #7"


def test_flower_on_an_open_address_without_credentials_refuses_in_one_sentence() -> None:
    result = run({}, "flower", "--address", "0.0.0.0")
    assert result.returncode == 2
    message = one_sentence_error(result)
    assert "FLOWER_USER" in message and "FLOWER_PASSWORD" in message
