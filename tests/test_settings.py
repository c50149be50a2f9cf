"""Settings from the environment and ``.env``; secrets that never show themselves."""

from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path

import pytest

from dispatcher.errors import ConfigurationError
from dispatcher.settings import DEFAULT_BASE_URL, DEFAULT_REDIS_URL, ENV_VARS, Secret, Settings, read_env_file

TOKEN = "tok-Zq8vX31-secret-4f7c"


def test_defaults_need_nothing_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    s = Settings.from_env(environ={})
    assert s == Settings()
    assert s.instasent_base_url == DEFAULT_BASE_URL == "https://api.instasent.com/transactional/v1"
    assert s.redis_url == DEFAULT_REDIS_URL
    assert s.effective_broker_url == DEFAULT_REDIS_URL
    assert not s.instasent_token
    assert (s.connect_timeout_s, s.read_timeout_s, s.write_timeout_s) == (5.0, 30.0, 10.0)
    assert s.rate_limit_per_min == 6000
    assert s.key_prefix == "dsp"


def test_os_environ_is_read_when_no_mapping_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSTASENT_TOKEN", TOKEN)
    monkeypatch.setenv("DISPATCHER_RATE_LIMIT", "120")
    s = Settings.from_env()
    assert s.require_token() == TOKEN
    assert s.rate_limit_per_min == 120


def test_environment_variables_override_every_kind_of_field() -> None:
    s = Settings.from_env(environ={
        "INSTASENT_TOKEN": f"  {TOKEN}\n",
        "INSTASENT_BASE_URL": "http://127.0.0.1:9999/transactional/v1",
        "REDIS_URL": "redis://example:6380/3",
        "CELERY_BROKER_URL": "amqp://guest@rabbit//",
        "DISPATCHER_KEY_PREFIX": "acme",
        "DISPATCHER_READ_TIMEOUT": "2.5",
        "DISPATCHER_RATE_LIMIT": " 600 ",
        "DISPATCHER_MESSAGE_RATE": "0",
        "DISPATCHER_MAX_ATTEMPTS": "3",
        "DISPATCHER_WEBHOOK_SECRET": "hook-secret",
        "FLOWER_USER": "admin",
        "FLOWER_PASSWORD": "pw",
    }, env_file=None)
    assert s.require_token() == TOKEN  # surrounding whitespace dropped
    assert isinstance(s.instasent_token, Secret)
    assert s.instasent_base_url == "http://127.0.0.1:9999/transactional/v1"
    assert s.redis_url == "redis://example:6380/3"
    assert s.effective_broker_url == "amqp://guest@rabbit//"
    assert s.key_prefix == "acme"
    assert s.read_timeout_s == 2.5 and isinstance(s.read_timeout_s, float)
    assert s.rate_limit_per_min == 600 and isinstance(s.rate_limit_per_min, int)
    assert s.message_rate_per_s == 0.0
    assert s.max_attempts == 3
    assert s.webhook_secret == Secret("hook-secret")
    assert (s.flower_user, s.flower_password.reveal()) == ("admin", "pw")


def test_an_empty_variable_keeps_the_default() -> None:
    s = Settings.from_env(environ={"DISPATCHER_READ_TIMEOUT": "", "REDIS_URL": ""}, env_file=None)
    assert s.read_timeout_s == 30.0
    assert s.redis_url == DEFAULT_REDIS_URL


def test_the_env_file_is_read_and_real_environment_variables_win_over_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\n"
        "\n"
        f"INSTASENT_TOKEN={TOKEN}\n"
        "export DISPATCHER_KEY_PREFIX='quoted'\n"
        'REDIS_URL="redis://from-file:6379/1"\n'
        "DISPATCHER_RATE_LIMIT=100\n"
        "not a setting line\n",
        encoding="utf-8",
    )
    s = Settings.from_env(environ={"DISPATCHER_RATE_LIMIT": "250"}, env_file=env_file)
    assert s.require_token() == TOKEN
    assert s.key_prefix == "quoted"
    assert s.redis_url == "redis://from-file:6379/1"
    assert s.rate_limit_per_min == 250


def test_the_default_env_file_is_dot_env_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("DISPATCHER_MAX_ATTEMPTS=4\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env(environ={}).max_attempts == 4
    assert Settings.from_env(environ={}, env_file=None).max_attempts == Settings().max_attempts


def test_a_missing_env_file_is_the_same_as_an_empty_one(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "nope.env") == {}
    assert Settings.from_env(environ={}, env_file=tmp_path / "nope.env") == Settings()


def test_inline_comments_after_unquoted_env_file_values_are_ignored(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "DISPATCHER_READ_TIMEOUT=12  # seconds\n"
        "DISPATCHER_KEY_PREFIX=a#b\n"
        'FLOWER_USER="me # not a comment" # a comment\n',
        encoding="utf-8",
    )
    values = read_env_file(env_file)
    assert values == {"DISPATCHER_READ_TIMEOUT": "12", "DISPATCHER_KEY_PREFIX": "a#b",
                      "FLOWER_USER": "me # not a comment"}
    assert Settings.from_env(environ={}, env_file=env_file).read_timeout_s == 12.0


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("DISPATCHER_READ_TIMEOUT", "soon"),
        ("DISPATCHER_CONNECT_TIMEOUT", "0"),
        ("DISPATCHER_WRITE_TIMEOUT", "-1"),
        ("DISPATCHER_RATE_LIMIT", "1.5"),
        ("DISPATCHER_RATE_LIMIT", "0"),
        ("DISPATCHER_MAX_ATTEMPTS", "many"),
        ("DISPATCHER_QUEUE_WINDOW", "0"),
        ("DISPATCHER_RETRY_BACKOFF", "-0.5"),
        ("DISPATCHER_READ_TIMEOUT", "nan"),
        ("DISPATCHER_READ_TIMEOUT", "inf"),
        ("DISPATCHER_MESSAGE_RATE", "infinity"),
    ],
)
def test_a_bad_number_is_a_configuration_error_naming_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(environ={var: raw}, env_file=None)
    assert var in str(info.value)
    assert info.value.exit_code == 2


def test_a_bad_number_in_the_env_file_names_the_variable_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISPATCHER_HLR_CONCURRENCY=lots\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="DISPATCHER_HLR_CONCURRENCY"):
        Settings.from_env(environ={}, env_file=tmp_path / ".env")


def test_zero_is_allowed_where_zero_has_a_meaning() -> None:
    s = Settings.from_env(environ={"DISPATCHER_MESSAGE_RATE": "0", "DISPATCHER_BATCH_LEASE": "0"}, env_file=None)
    assert s.message_rate_per_s == 0.0
    assert s.batch_lease_s == 0.0
    assert s.lease_s == s.max_slot_wait_s + 2 * (5.0 + 10.0 + 30.0) + 5.0
    assert s.with_overrides(batch_lease_s=7.0).lease_s == 7.0


def test_require_token_names_instasent_token_when_it_is_missing() -> None:
    s = Settings.from_env(environ={}, env_file=None)
    with pytest.raises(ConfigurationError, match="INSTASENT_TOKEN") as info:
        s.require_token()
    assert info.value.exit_code == 2
    with pytest.raises(ConfigurationError, match="INSTASENT_TOKEN"):
        Settings.from_env(environ={"INSTASENT_TOKEN": "   "}, env_file=None).require_token()


def test_with_overrides_wraps_plain_strings_as_secrets() -> None:
    s = Settings().with_overrides(instasent_token=TOKEN, webhook_secret="w", flower_password="p", read_timeout_s=1.0)
    assert isinstance(s.instasent_token, Secret) and s.require_token() == TOKEN
    assert isinstance(s.webhook_secret, Secret) and isinstance(s.flower_password, Secret)
    assert s.read_timeout_s == 1.0
    assert Settings().read_timeout_s == 30.0  # the original is untouched


def test_every_field_has_a_documented_environment_variable() -> None:
    assert len(ENV_VARS) == len(set(ENV_VARS)) == len(Settings.__dataclass_fields__)
    assert "INSTASENT_TOKEN" in ENV_VARS


def test_a_secret_never_shows_itself(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(TOKEN)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret!s}", f"{[secret]}",
             f"{ {'token': secret} }", "%s" % secret, "{}".format(secret)]  # noqa: UP031, UP032
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("dispatcher.test").debug("token %s %r", secret, secret)
    shown.append(caplog.text)
    for text in shown:
        assert TOKEN not in text
        assert "Zq8vX31" not in text
    assert secret.reveal() == TOKEN
    assert bool(secret) and not Secret("")
    assert repr(Secret("")) == "Secret('')"
    assert secret == Secret(TOKEN) and secret != Secret("other") and secret != TOKEN
    assert hash(secret) == hash(Secret(TOKEN))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_secret_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret(TOKEN), protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps(Settings().with_overrides(instasent_token=TOKEN), protocol=protocol)
    with pytest.raises(TypeError):
        copy.deepcopy(Secret(TOKEN))


def test_the_settings_repr_hides_every_secret() -> None:
    s = Settings().with_overrides(instasent_token=TOKEN, webhook_secret="hook-Qw9", flower_password="flw-Pz7")
    for text in (repr(s), str(s), f"{s}"):
        assert TOKEN not in text
        assert "hook-Qw9" not in text
        assert "flw-Pz7" not in text
        assert "instasent_token=Secret('********')" in text


def test_the_readme_documents_every_environment_variable() -> None:
    table = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = table[table.index("## Configuration"):table.index("## How it works")]
    # Related variables share a row, later ones by suffix: `DISPATCHER_RETRY_BACKOFF` / `_RETRY_BACKOFF_MAX`.
    missing = [var for var in ENV_VARS
               if f"`{var}`" not in table and f"`{var.removeprefix('DISPATCHER')}`" not in table]
    assert missing == []
