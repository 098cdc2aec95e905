"""Sources in process (docs/sources.md): an HTTP service and SQLite, PostgreSQL and MariaDB databases as the other
systems, real each; the push hub sending the pop at once and the update after; failures, sizes, timeouts, the pause."""
from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import time

import gevent
import pytest

from screenpop.daemon.config import ConfigError, SourceConfig
from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.record.pops import PopRow
from screenpop.daemon.sources.fetch import Sources
from screenpop.db.models import Customer

from erp import HOSTILE_VALUE, MARIADB_URL, Service, erp, erp_query, service  # noqa: F401 - service is a fixture
from support import RULES, start_hub, stop_hub

NUMBER = "+3545551234"


def sources(*configs: SourceConfig) -> Sources:
    return Sources(list(configs), lambda: RULES)


def http(service, route: str, **kwargs) -> SourceConfig:
    fields = kwargs.pop("fields", {"Tier": "customer.tier", "Invoice": "invoices.0.number", "Name": "customer.name"})
    return SourceConfig(name=kwargs.pop("name", route), type="http", url=f"{service.url}/{route}/{{e164}}",
                        fields=fields, **kwargs)


def only(source: Sources, number: str = NUMBER):
    (result,) = source.answer([number])
    return result


# ---- http ---------------------------------------------------------------------------------------------


def test_http_fields_by_path_the_number_url_encoded_and_the_secret_from_its_file(service, tmp_path):
    secret = tmp_path / "crm-token"
    secret.write_text("s3cr3t\n", encoding="utf-8")
    crm = sources(SourceConfig(
        name="crm", type="http", url=f"{service.url}/ok/{{e164}}?n={{national}}&d={{digits}}",
        headers={"Authorization": "Bearer {secret}"}, secret_file=str(secret), external_id="customer.id",
        fields={"Tier": "customer.tier", "Invoice": "invoices.0.number", "Amount": "invoices.0.amount",
                "Nowhere": "customer.nope", "Past the end": "invoices.3.number"}))
    result = only(crm, "555 1234")
    assert result.fields == (("Tier", "gold"), ("Invoice", "F-17"), ("Amount", "1250.5"))
    assert result.external_id == "C-1" and result.error == ""
    assert service.paths == ["/ok/%2B3545551234?n=5551234&d=3545551234"]
    assert service.headers[0]["Authorization"] == "Bearer s3cr3t"
    assert only(crm, "555 1234") == result and service.hits["ok"] == 1, "answered from the cache"


def test_http_post_sends_the_number_forms_as_json(service):
    result = only(sources(http(service, "ok", method="POST")))
    assert result.fields[0] == ("Tier", "gold")
    assert json.loads(service.bodies[0]) == {"e164": NUMBER, "national": "5551234", "digits": "3545551234"}


def test_http_keeps_its_connection_between_lookups_and_replaces_one_closed_while_idle():
    kept = Service(keep_alive=True)
    try:
        crm = sources(http(kept, "ok", cache_seconds=0), http(kept, "once", cache_seconds=0))
        for number in ("555 1234", "555 1235", "555 1236"):
            ok, once = crm.answer([number])
            assert ok.fields[0] == ("Tier", "gold") and once.fields[0] == ("Tier", "gold"), (ok, once)
        assert kept.hits == {"ok": 3, "once": 3}
        assert len(kept.clients) == 1 + 3, "one connection for /ok's three lookups, a new one after each /once"
    finally:
        kept.close()


def test_slow_erring_oversized_and_garbled_answers_fail_alone_within_the_timeout(service):
    """Each failure is the source's alone: the others answer, nothing waits past a timeout, 404 is no record."""
    service.slow_seconds = 5.0
    patient = {"timeout": 2.0}  # the others answer at once, but a busy machine can take more than 0.3 s to say so
    all_of_them = sources(http(service, "ok", **patient), http(service, "slow"), http(service, "error", **patient),
                          http(service, "big", **patient), http(service, "notjson", **patient),
                          http(service, "missing", **patient))
    started = time.monotonic()
    results = {r.source: r for r in all_of_them.answer([NUMBER])}
    assert time.monotonic() - started < 2.5, "a slow source is given up at its timeout (0.3 s), not waited for"
    assert results["ok"].fields and not results["ok"].error
    assert results["slow"].error == "no answer within 300 ms"
    assert results["error"].error == "HTTP 500"
    assert results["big"].error == "answer larger than max_bytes (65536)"
    assert results["notjson"].error.startswith("the answer is not JSON")
    assert results["missing"] == type(results["missing"])("missing"), "404: no record of the number, not a failure"
    assert all(not r.fields for name, r in results.items() if name != "ok")


def test_a_failing_source_is_logged_once_paused_after_failures_in_a_row_and_logged_once_back(service, caplog):
    caplog.set_level(logging.INFO, logger="screenpop.sources")
    flaky = sources(http(service, "flaky", failures=2, pause=0.5, cache_seconds=0))
    for i in range(6):
        assert only(flaky, f"+354555000{i}").fields == ()
    assert service.hits["flaky"] == 2, "after 2 failures in a row the source is paused, not asked"
    assert only(flaky).error == "paused after failures in a row"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "source flaky failed: HTTP 500" in warnings[0].getMessage()
    service.failing = False
    gevent.sleep(0.6)  # the pause ends (0.5 s); the next lookup is tried again
    assert only(flaky).fields[0] == ("Tier", "gold")
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and infos[0].startswith("source flaky answers again") and "after 2 failure(s)" in infos[0]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_hostile_values_are_kept_verbatim_bounded_and_only_for_numbers(service):
    markup = sources(http(service, "markup", fields={"Name": "customer.name"}))
    assert only(markup).fields == (("Name", HOSTILE_VALUE),)
    assert markup.answer(["anonymous", "1001"]) == [], "withheld numbers and extensions are never looked up"
    assert markup.peek("anonymous") is None and service.hits["markup"] == 1


@pytest.mark.parametrize("config, message", [
    (dict(url="http://x/{number}"), "unknown placeholder {number}"),
    (dict(url="http://x/{e164}", fields={"A": "a..b"}), "is not a path"),
    (dict(url="http://x/{e164}", headers={"X": "{token}"}), "unknown placeholder {token}"),
])
def test_templates_and_paths_are_checked_at_start(config, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{")):
        sources(SourceConfig(name="crm", type="http", **{"fields": {"A": "a"}, **config}))


# ---- sql ----------------------------------------------------------------------------------------------


def test_sqlite_by_the_number_as_stored_with_the_external_id_read_only_and_interrupted_at_the_timeout(tmp_path):
    path = tmp_path / "erp.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (ref TEXT, name TEXT, phone TEXT, balance NUMERIC, since DATE)")
        conn.execute("INSERT INTO customers VALUES ('C-7', 'Ása', '5551234', 99.5, '2020-01-02')")
    url = f"sqlite:///{path}"
    erp_source = sources(SourceConfig(name="erp", type="sql", url=url, external_id="ref", query=(
        "SELECT ref, name AS Name, balance AS Balance, NULL AS Empty FROM customers "
        "WHERE phone IN ({e164}, {national}, {digits}) AND '%' = '%'")))
    result = only(erp_source, "+354 555 1234")
    assert result.fields == (("Name", "Ása"), ("Balance", "99.5")) and result.external_id == "C-7"
    assert only(erp_source, "+3545550000").fields == ()
    writer = sources(SourceConfig(name="w", type="sql", url=url, query="DELETE FROM customers WHERE phone = {e164}"))
    assert "readonly" in only(writer).error
    slow = sources(SourceConfig(name="slow", type="sql", url=url, timeout=0.2, query=(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n "
        "WHERE i > length({e164}) LIMIT 1")))
    started = time.monotonic()
    assert only(slow).error == "no answer within 200 ms"
    assert time.monotonic() - started < 2.0
    assert only(erp_source, "+354 555 1234") == result, "the interrupted query left the others alone"


@pytest.mark.postgres
def test_postgresql_by_national_and_digits_read_only(pg_url):
    import psycopg

    base, _, query = pg_url.partition("?")
    schema = query.removeprefix("schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".erp (ref text, name text, phone text, owed numeric(12,2))')
        conn.execute(f'INSERT INTO "{schema}".erp VALUES (%s, %s, %s, %s)', ("P-1", "Björk", "3545551234", "12.30"))
    pg = sources(SourceConfig(name="pg", type="sql", url=base, external_id="ref", query=(
        f'SELECT ref, name AS "Name", owed AS "Owed", now()::date - now()::date AS "Days" FROM "{schema}".erp '
        "WHERE phone IN ({national}, {digits})")))
    result = only(pg)
    assert result.fields == (("Name", "Björk"), ("Owed", "12.30"), ("Days", "0")) and result.external_id == "P-1"
    writer = sources(SourceConfig(name="w", type="sql", url=base,
                                  query=f'DELETE FROM "{schema}".erp WHERE phone = {{digits}}'))
    assert "read-only" in only(writer).error
    assert only(pg) == result


@pytest.mark.mariadb
def test_mariadb_erp_matched_in_each_stored_form_with_open_invoices_and_a_slow_query_cut():
    with erp({"5551234": "Norðurljós ehf.", "+3545559999": "Hekla hf.", "3545558888": "<b>Katla</b>"}) as prefix:
        mariadb = sources(SourceConfig(name="erp", type="sql", url=MARIADB_URL, external_id="ref",
                                       query=erp_query(prefix)))
        assert only(mariadb).fields == (("ERP name", "Norðurljós ehf."), ("Open invoices", "1250.50"))
        assert only(mariadb).external_id == "C-1"
        assert only(mariadb, "5559999").fields[0] == ("ERP name", "Hekla hf.")
        assert only(mariadb, "+354 555 8888").fields[0] == ("ERP name", "<b>Katla</b>")
        assert only(mariadb, "5550000").fields == ()
        slow = sources(SourceConfig(name="slow", type="sql", url=MARIADB_URL, query="SELECT SLEEP(3) AS x, {e164}"))
        started = time.monotonic()
        assert only(slow).error and time.monotonic() - started < 2.0
        writer = sources(SourceConfig(name="w", type="sql", url=MARIADB_URL,
                                      query=f"DELETE FROM {prefix}_customers WHERE phone = {{e164}}"))
        assert "READ ONLY" in only(writer).error
        assert only(mariadb, "5559999").fields[0] == ("ERP name", "Hekla hf.")


# ---- the push hub: the pop at once, the update after ---------------------------------------------------


def _pop(pop_id: int, number: str = NUMBER, event: str = "ringing", call: str = "call-1") -> PopRow:
    return PopRow(pop_id, event, call, "INCOMING", dt.datetime(2026, 12, 1, 9), "1001", number, "", None, 0)


def _frames(sub, n: int, timeout: float = 10.0) -> list[tuple[int | None, bytes]]:
    got: list[tuple[int | None, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        sub.wake.wait(0.1)
        got += sub.take()
    return got


def _card(frame: bytes) -> dict:
    return json.loads(frame.decode().split("data: ", 1)[1])


def test_the_pop_goes_out_at_once_and_the_update_follows_with_the_same_card(sqlite_url, service):
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    db = open_database(sqlite_url)
    migrate(db)
    linked = Customer.create(name="Linked", external_id="C-1")
    service.slow_seconds = 0.15
    hub = start_hub(db, lambda: Lookup(db, RULES), sources=sources(http(service, "slow", external_id="customer.id")))
    try:
        sub = hub.subscribe("1001", None)
        started = time.monotonic()
        hub.push_stored([_pop(1)])
        ((pop_id, frame),) = _frames(sub, 1)
        assert time.monotonic() - started < 0.1, "the pop does not wait for the source"
        assert frame.startswith(b"id: 1\nevent: pop\n")
        card = _card(frame)
        assert card["sources"] == {"pending": True, "external_id": None, "fields": []}
        assert card["record_url"].startswith("/customers/new?")
        ((update_id, update),) = _frames(sub, 1)
        assert update_id is None and update.startswith(b"event: update\ndata: "), "no id: not a pop of its own"
        card = _card(update)
        assert card["id"] == 1 and card["call_uuid"] == "call-1" and card["event"] == "ringing"
        assert card["sources"] == {"pending": False, "external_id": "C-1", "fields": [
            {"source": "slow", "name": "Tier", "value": "gold"}, {"source": "slow", "name": "Invoice", "value": "F-17"},
            {"source": "slow", "name": "Name", "value": "Norðurljós ehf."}]}
        assert card["record_url"] == f"/customers/{linked.id}", "the source named the customer by its external id"
        assert card["customer"] is None and card["matches"] == 0, "the stored answer stays the lookup's"
        hub.push_stored([_pop(2, event="answered"), _pop(3, call="call-2")])
        (answered, again) = _frames(sub, 2)
        assert _card(answered[1])["sources"]["fields"] and _card(again[1])["sources"]["pending"] is False
        assert _frames(sub, 1, timeout=0.5) == [], "a cached answer goes with the pop; no update"
        hub.push_stored([_pop(4, number="1002", call="internal")._replace(direction="INTERNAL"), _pop(5, number="anonymous")])
        assert [_card(f)["sources"] for _, f in _frames(sub, 2)] == [None, None]
        assert service.hits["slow"] == 1
    finally:
        stop_hub(hub)
        db.close()


def test_sources_that_add_nothing_send_no_update(sqlite_url, service):
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    db = open_database(sqlite_url)
    migrate(db)
    hub = start_hub(db, lambda: Lookup(db, RULES), sources=sources(http(service, "error"), http(service, "missing")))
    try:
        sub = hub.subscribe("1001", None)
        hub.push_stored([_pop(1)])
        assert len(_frames(sub, 1)) == 1
        gevent.sleep(0.5)
        assert sub.take() == [] and service.hits["error"] == service.hits["missing"] == 1
    finally:
        stop_hub(hub)
        db.close()


def test_a_source_name_must_be_unique_and_each_kind_needs_its_own_options():
    from screenpop.daemon.config import parse

    base = {"name": "erp", "type": "sql", "url": "sqlite:///x.db", "query": "SELECT 1 WHERE {e164}"}
    assert parse({"sources": [base]}).sources[0].timeout == 0.3
    for bad, message in [
        ([base, base], "another source has this name"),
        ([{**base, "type": "ldap"}], "type must be sql or http"),
        ([{**base, "url": "oracle://x"}], "url must start with"),
        ([{**base, "query": ""}], "needs a query"),
        ([{**base, "type": "http", "url": "http://x/{e164}", "query": ""}], "needs fields"),
        ([{**base, "timeout": 0}], "timeout must be between"),
        ([{**base, "secret_file": "/nonexistent/secret"}], "cannot read /nonexistent/secret"),
        ([{**base, "headers": {"X": 1}}], "must be table of strings"),
        ({"name": "x"}, "array of tables"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse({"sources": bad})
    with pytest.raises(ConfigError, match="must use the number"):
        sources(SourceConfig(**{**base, "query": "SELECT 1"}))

