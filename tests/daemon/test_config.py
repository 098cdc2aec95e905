"""The configuration file: defaults, the documented copies of them, and clear errors."""
from __future__ import annotations

import re

import pytest

from screenpop.daemon.config import Config, ConfigError, load, parse

from support import ROOT



def _uncommented(text: str) -> str:
    return "\n".join(re.sub(r"^# ?(?=[a-z_]+ =)", "", line) for line in text.splitlines())


def test_defaults_need_no_file():
    config = load(None)
    assert config.freeswitch.port == 8021 and config.numbers.suffix_digits == 8
    assert config.database.resolved_url().startswith("sqlite:///")


def test_packaged_template_spells_out_the_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(_uncommented((ROOT / "packaging" / "screenpop.toml").read_text()), encoding="utf-8")
    assert load(path) == Config()


def test_documented_block_spells_out_the_defaults(tmp_path):
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = doc.split("```toml", 1)[1].split("```", 1)[0]
    path = tmp_path / "c.toml"
    path.write_text(_uncommented(block), encoding="utf-8")
    assert load(path) == Config()


@pytest.mark.parametrize(
    "text, message",
    [
        ("[freeswitch]\nprot = 1\n", "unknown option 'prot'"),
        ("[freeswich]\n", "unknown section [freeswich]"),
        ('[freeswitch]\nport = "8021"\n', "port must be int"),
        ('[numbers]\nextension_pattern = "(["\n', "not a regular expression"),
        ("[numbers]\nsuffix_digits = 2\n", "between 4 and 15"),
        ('[log]\nlevel = "loud"\n', "[log] level"),
        ("not toml at all = = =", "not valid TOML"),
        ('[http]\nlisten = "localhost"\n', "[http] listen must be host:port"),
        ('[http]\ncertfile = "/etc/c.pem"\n', "certfile and keyfile go together"),
        ("[http]\nheartbeat = 0\n", "[http] heartbeat"),
        ("[http]\nheader_timeout = 0.5\n", "[http] header_timeout"),
        ("[http]\nidle_timeout = 7200\n", "[http] idle_timeout"),
        ("[http]\nmax_connections = 5\n", "[http] max_connections"),
        ("[cluster]\npoll_interval = 2\n", "[cluster] poll_interval"),
        ("[cluster]\nhang_timeout = 10\n", "[cluster] hang_timeout"),
        ("[database]\nqueue_max = 10\n", "[database] queue_max"),
        ("[freeswitch]\nkeepalive = 0\n", "[freeswitch] keepalive"),
        ('[recordings]\nlisten = "everyone"\n', "[recordings] listen must be one of admin, manager, operator"),
        ('[recordings.paths]\n"relative/dir" = "/srv/rec"\n', "must map an absolute path to an absolute path"),
        ('[recordings]\nroots = ["rec"]\n', "[recordings] roots: 'rec' must be an absolute path"),
        ("[recordings]\nkeep_days = -1\n", "[recordings] keep_days"),
        ("[recordings]\ncheck_interval = 0\n", "[recordings] check_interval"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert message in str(info.value)


def test_password_file_wins_and_is_stripped(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    config = parse({"freeswitch": {"password": "inline", "password_file": str(secret)}})
    assert config.freeswitch.secret() == "s3cret"


def test_missing_password_file_is_a_clear_error(tmp_path):
    config = parse({"freeswitch": {"password_file": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="password_file"):
        config.freeswitch.secret()


def test_integers_are_accepted_for_seconds():
    assert parse({"freeswitch": {"connect_timeout": 3}}).freeswitch.connect_timeout == 3.0


def test_http_listen_forms():
    assert parse({"http": {"listen": "[::1]:8443"}}).http.address() == ("::1", 8443)
    assert parse({"http": {"listen": ":8080"}}).http.address() == ("0.0.0.0", 8080)
    assert parse({}).database.resolved_photo_dir().name == "photos"
