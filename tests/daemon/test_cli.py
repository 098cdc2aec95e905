"""The `screenpop` command as a user runs it: exit codes, messages, and output safe for a terminal."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from babel.messages.pofile import read_po

from support import CAPTURES, ROOT, comparable, daemon, expected, free_port, simulator, write_config

_LANGUAGE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "SCREENPOP_CONFIG")


def screenpop(*args: str, lang: str = "C.UTF-8") -> subprocess.CompletedProcess:
    """The command as a terminal whose LANG is lang runs it (no other language variable, no $SCREENPOP_CONFIG)."""
    env = {k: v for k, v in os.environ.items() if k not in _LANGUAGE_VARIABLES}
    return subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**env, "LANG": lang})


def test_calls_json_after_a_replay_carries_the_expected_fields(tmp_path, sqlite_url):
    port = free_port()
    config = write_config(tmp_path / "screenpop.toml", port, sqlite_url)
    sim = simulator(tmp_path, port, "--replay", str(CAPTURES / "transfer.plain.esl"), "--speed", "0", "--linger", "0.3")
    d = daemon(tmp_path, config)
    try:
        assert sim.wait(30) == 0
        assert d.terminate() == 0, d.log()
    finally:
        sim.close()
        d.close()
    out = screenpop("calls", "--json", "--config", str(config))
    assert out.returncode == 0, out.stderr
    (record,) = [json.loads(line) for line in out.stdout.splitlines()]
    exp = expected("transfer")["calls"][0]
    assert comparable(record, exp.keys()) == comparable(exp, exp.keys())
    assert record["customer"] is None and record["uuid"]
    table = screenpop("calls", "--config", str(config), "--extension", "1002")
    assert "INCOMING" in table.stdout and "+3545551234" in table.stdout
    assert screenpop("calls", "--config", str(config), "--extension", "1009").stdout == ""


def test_import_reports_bad_rows_by_line_and_imports_the_rest(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "s.db"}"\n[numbers]\ndefault_region = "IS"\n')
    csv = tmp_path / "customers.csv"
    csv.write_text("external_id,name,category,phones\nc1,Jón,vip,+3545551234\nc2,Bad,weird,\nc3,Ok,,5551000\n")
    out = screenpop("import", "customers", str(csv), "--config", str(config))
    assert out.returncode == 1
    assert "customers: 2 created" in out.stdout
    assert "line 3:" in out.stderr and "weird" in out.stderr
    again = screenpop("import", "customers", str(csv), "--config", str(config))
    assert "0 created" in again.stdout


def test_import_of_employees_is_on_the_audit_trail_by_its_file(tmp_path):
    """Each employee an import adds or renames is one audit line, made by "CSV import of <file>"."""
    from screenpop.db.database import open_database
    from screenpop.db.models import AuditEntry

    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "s.db"}"\n')
    csv = tmp_path / "staff.csv"
    csv.write_text("extension,name\n1001,Anna\n1002,Þóra\n")
    assert screenpop("import", "employees", str(csv), "--config", str(config)).returncode == 0
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    try:
        assert [(e.entity, e.action, e.detail, e.actor) for e in AuditEntry.select().order_by(AuditEntry.id)] == [
            ("employee", "added", "1001 Anna", "CSV import of staff.csv"),
            ("employee", "added", "1002 Þóra", "CSV import of staff.csv")]
    finally:
        db.close()


def test_terminal_output_escapes_control_characters():
    from screenpop.daemon.cli import printable

    assert printable("Jón\x1b[31m red\x07") == "Jón\\x1b[31m red\\x07"
    assert printable(None) == ""
    assert printable("a\u202eb\u2067c\u061c") == "a\\u202eb\\u2067c\\u061c"


def test_calls_shows_bidi_and_control_characters_as_escapes(tmp_path, sqlite_url):
    """A caller name with U+202E must not reverse the rest of the line in `screenpop calls` (table or JSON)."""
    import datetime as dt

    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate
    from screenpop.db.models import Call, Customer

    db = open_database(sqlite_url)
    migrate(db)
    hostile = "Evil\u202eenaJ\u2066\x9b"
    acme = Customer.create(company="Acme\u202e ehf")
    Call.create(uuid="c1", direction="INCOMING", external_number="+3545551234\u202e", external_name=hostile,
                started_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=5))
    Call.create(uuid="c2", direction="INCOMING", external_number="5550000", external_name="", customer=acme,
                started_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=4))
    db.close()
    config = write_config(tmp_path / "screenpop.toml", free_port(), sqlite_url)
    table = screenpop("calls", "--config", str(config))
    as_json = screenpop("calls", "--json", "--config", str(config))
    for out in (table, as_json):
        assert out.returncode == 0, out.stderr
        assert not set(out.stdout) & {"\u202e", "\u2066", "\x9b"}, out.stdout
    assert "Evil\\u202eenaJ\\u2066\\x9b" in table.stdout and "Acme\\u202e ehf" in table.stdout
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["external_name"] for r in records] == [hostile, ""], "the JSON escapes keep the value"


def test_unreadable_config_is_a_clear_error(tmp_path):
    out = screenpop("calls", "--config", str(tmp_path / "missing.toml"))
    assert out.returncode != 0 and "cannot read config" in out.stderr


def test_bad_since_is_a_usage_error(tmp_path):
    out = screenpop("calls", "--since", "yesterday-ish")
    assert out.returncode == 2 and "not a time" in out.stderr


def test_help_lists_the_subcommands():
    out = screenpop("--help")
    for command in ("daemon", "calls", "import", "migrate", "simulate", "demo"):
        assert command in out.stdout
    assert "--replay" in screenpop("simulate", "--help").stdout


def test_daemon_with_an_unreachable_database_says_so(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[database]\nurl = "postgresql://postgres@127.0.0.1:1/nope"\n')
    out = screenpop("daemon", "--config", str(config))
    assert out.returncode == 1 and "cannot open the database" in out.stderr and "Traceback" not in out.stderr


def test_demo_hands_the_tray_its_token_in_a_private_file_not_on_its_command_line(db, tmp_path, monkeypatch):
    """Every local user can read /proc/<pid>/cmdline: the demo's tray gets --token-file, a 0600 file."""
    import dataclasses
    import os
    import stat

    from screenpop.daemon import demo
    from screenpop.daemon.auth import tokens
    from screenpop.tray.cli import build_parser
    from screenpop.tray import config as tray_config

    started = []

    class Started:
        def __init__(self, args, **kwargs) -> None:
            started.append(args)

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
    monkeypatch.setattr(demo.subprocess, "Popen", Started)
    old = os.umask(0)
    try:
        demo._start_tray(tmp_path, 8080, verbose=False)
    finally:
        os.umask(old)
    (argv,) = started
    args = build_parser().parse_args(argv[3:])  # python -m screenpop.tray.cli ...
    assert args.token is None and args.token_file
    assert stat.S_IMODE(os.stat(args.token_file).st_mode) == 0o600
    config = dataclasses.replace(tray_config.load(args.config), server=args.server, extension=args.extension,
                                 token_file=args.token_file)
    check = tokens.verify(config.resolved_token())
    assert check.ok and check.extension == "1001", "the tray reads a working token from the file"
    assert config.resolved_token() not in " ".join(argv)


# ---- the reader's language (issue 18, docs/i18n.md) ---------------------------------------------------------------


def _english_sentences() -> set[str]:
    """Every run of three words or more between the placeholders of a message whose Icelandic differs: what an
    Icelandic terminal must not show."""
    with (ROOT / "daemon/locale/is/LC_MESSAGES/screenpop.po").open("rb") as fh:
        catalog = read_po(fh)
    runs = set()
    for m in catalog:
        if isinstance(m.id, str) and m.id and m.string != m.id:
            runs |= {" ".join(run.split()) for run in re.split(r"%\(\w+\)[sr]|%[sd]", m.id) if len(run.split()) >= 3}
    return runs


def _english_left(out: subprocess.CompletedProcess) -> list[str]:
    text = " ".join((out.stdout + out.stderr).split())  # argparse wraps help at the terminal's width
    return sorted(run for run in _english_sentences() if run in text)


def _config(tmp_path, *lines: str):
    path = tmp_path / "c.toml"
    path.write_text("\n".join([f'[database]\nurl = "sqlite:///{tmp_path / "s.db"}"', *lines, ""]))
    return str(path)


def test_help_usage_errors_config_errors_and_messages_in_icelandic(tmp_path):
    """An Icelandic terminal: the help, argparse's own words, a wrong argument, a bad configuration and a command's
    message are Icelandic, with no English sentence of the catalogue left."""
    is_ = "is_IS.UTF-8"
    top = screenpop("--help", lang=is_)
    assert top.returncode == 0 and "notkun: screenpop" in top.stdout and "valkostir:" in top.stdout
    assert "sýna þessa hjálp og hætta" in top.stdout and "uppfæra skipan gagnagrunnsins" in top.stdout
    sub = screenpop("user", "create", "--help", lang=is_)
    assert "NOTANDANAFN" in sub.stdout and "lesa lykilorðið úr staðalinntaki" in sub.stdout
    wrong = screenpop("calls", "--format", "xml", lang=is_)
    assert wrong.returncode == 2 and "villa: viðfang --format: ógilt val: 'xml'" in wrong.stderr
    missing = screenpop("token", lang=is_)
    assert missing.returncode == 2 and "þessi viðföng vantar: AÐGERÐ" in missing.stderr
    late = screenpop("calls", "--since", "í gær", lang=is_)
    assert late.returncode == 2 and "ekki tími: 'í gær'" in late.stderr
    bad = screenpop("migrate", "--config", _config(tmp_path, "[http]", "heartbeat = 0"), lang=is_)
    assert bad.returncode == 1 and "[http] heartbeat verður að vera á bilinu 0,1 til 300 sekúndur" in bad.stderr
    unknown = screenpop("migrate", "--config", _config(tmp_path, "[http]", "port = 1"), lang=is_)
    assert "[http] óþekktur valkostur 'port' (þekktir: " in unknown.stderr
    url = screenpop("migrate", "--config", str(_url_config(tmp_path)), lang=is_)
    assert "[database] url: gagnagrunnsslóð 'mysql://x' er ekki studd" in url.stderr
    done = screenpop("migrate", "--config", _config(tmp_path), lang=is_)
    assert done.returncode == 0 and done.stdout.startswith("útgáfa gagnagrunnsskipanar ")
    token = screenpop("token", "create", "--role", "admin", "--config", _config(tmp_path), lang=is_)
    assert "hann birtist aðeins í þetta eina sinn" in token.stderr
    for out in (top, sub, wrong, missing, late, bad, unknown, url, done, token):
        assert _english_left(out) == [], (out.args, out.stdout, out.stderr)


def _url_config(tmp_path):
    path = tmp_path / "url.toml"
    path.write_text('[database]\nurl = "mysql://x"\n')
    return path


def test_a_terminal_without_a_language_of_ours_speaks_the_configured_default(tmp_path):
    """LANG=C (or a language we have no catalogue for): [i18n] default_language, for --help and usage errors too;
    a terminal's own language we have wins over the default."""
    icelandic = _config(tmp_path, "[i18n]", 'default_language = "is"')
    for lang in ("C", "de_DE.UTF-8"):
        done = screenpop("migrate", "--config", icelandic, lang=lang)
        assert done.stdout.startswith("útgáfa gagnagrunnsskipanar "), done
    assert "valkostir:" in screenpop("calls", "--help", "-c", icelandic, lang="C").stdout
    assert "villa: óþekkt viðföng: --bogus" in screenpop("calls", "-c", icelandic, "--bogus", lang="C").stderr
    english = screenpop("migrate", "--config", icelandic, lang="en_US.UTF-8")
    assert english.stdout.startswith("schema version ") and _english_left(english)
    helped = screenpop("--help", lang="en_US.UTF-8")
    assert "usage: screenpop" in helped.stdout and "options:" in helped.stdout and "show this help" in helped.stdout
    assert "bring the database schema up to date" in helped.stdout


def test_the_daemon_speaks_the_configured_default_whatever_its_environment(tmp_path):
    """systemd hands the service the machine's LANG: `screenpop daemon` speaks [i18n] default_language."""
    unreachable = '[database]\nurl = "postgresql://postgres@127.0.0.1:1/nope"\n'
    icelandic = tmp_path / "is.toml"
    icelandic.write_text(unreachable + '[i18n]\ndefault_language = "is"\n')
    english = tmp_path / "en.toml"
    english.write_text(unreachable)
    out = screenpop("daemon", "--config", str(icelandic), lang="en_US.UTF-8")
    assert out.returncode == 1 and "get ekki opnað gagnagrunninn" in out.stderr, out.stderr
    out = screenpop("daemon", "--config", str(english), lang="is_IS.UTF-8")
    assert out.returncode == 1 and "cannot open the database" in out.stderr, out.stderr


def test_argparse_words_are_the_ones_this_python_asks_for():
    """ARGPARSE_WORDS are argparse's own msgids (a Python that rewords one leaves it English, not broken), and the
    catalogue has each in Icelandic."""
    import argparse
    import inspect

    from screenpop.daemon import i18n
    from screenpop.daemon.cli import ARGPARSE_WORDS

    source = inspect.getsource(argparse)
    for word in ARGPARSE_WORDS:
        assert f"_({word!r})" in source.replace('"', "'"), word
        with i18n.use("is"):
            assert i18n.gettext(word) != word, word
