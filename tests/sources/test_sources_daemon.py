"""Sources end to end (docs/sources.md): the real daemon fed by the simulator, a MariaDB ERP and an HTTP service of
which some routes are slow, err, answer 10 MB or markup; the pop over SSE at once, the update after it, the failures
logged once by name, and the record page showing the fields escaped."""
from __future__ import annotations

import time

import pytest

from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.lookup import add_phone
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Customer

from erp import HOSTILE_VALUE, erp, service, sources_toml  # noqa: F401 - service is a fixture
from sse import Stream
from support import RULES, daemon, free_port, http_ready, page, simulator, wait_for, write_config

ROUTES = ("ok", "slow", "error", "big", "markup")


@pytest.mark.mariadb
def test_the_pop_at_once_the_update_with_every_answering_source_and_the_record_page(tmp_path, sqlite_url, service):
    db = open_database(sqlite_url)
    migrate(db)
    known = Customer.create(name="Jón", company="Norðurljós ehf.", external_id="C-1")
    add_phone(known, "+3545551234", "office", RULES)
    _, op = tokens.create("1001")
    db.close()
    esl_port, http_port = free_port(), free_port()
    with erp({"5551234": "Norðurljós (ERP)"}) as prefix:
        config = write_config(tmp_path / "screenpop.toml", esl_port, sqlite_url, http_port=http_port,
                              sources=sources_toml(service, prefix, ROUTES))
        d = daemon(tmp_path, config)
        stream = None
        try:
            wait_for(lambda: http_ready(f"http://127.0.0.1:{http_port}") or d.popen.poll() is not None, 30, "the daemon")
            stream = Stream(http_port, op)
            numbers = tmp_path / "numbers.txt"
            numbers.write_text("+3545551234\n", encoding="utf-8")
            sim = simulator(tmp_path, esl_port, "--generate", "--calls", "1", "--rate", "10", "--extensions", "1001",
                            "--numbers", str(numbers), "--mix", "inbound_answered=1", "--speed", "1", "--linger", "2")
            pop = stream.wait_count(1, 30)[0]
            popped = time.monotonic()
            assert pop.event == "pop" and pop.card["event"] == "ringing" and pop.id is not None
            assert pop.card["sources"] == {"pending": True, "external_id": None, "fields": []}
            wait_for(lambda: any(m.event == "update" for m in stream.messages), 10, "the update")
            updated = time.monotonic()
            at = next(i for i, m in enumerate(stream.messages) if m.event == "update")
            update, before = stream.messages[at], stream.messages[at - 1]
            # no id line: Last-Event-ID stays where it was (the pop, or the answered pop if that came first on a busy
            # machine, as it did at load 10+)
            assert update.id == before.id, "no id line: Last-Event-ID stays on the pop"
            assert update.card["id"] == pop.id and update.card["call_uuid"] == pop.card["call_uuid"]
            fields = [(f["source"], f["name"], f["value"]) for f in update.card["sources"]["fields"]]
            assert fields == [("erp", "ERP name", "Norðurljós (ERP)"), ("erp", "Open invoices", "1250.50"),
                              ("ok", "Tier", "gold"), ("ok", "Name", "Norðurljós ehf."), ("ok", "Invoice", "F-17"),
                              ("markup", "Name", HOSTILE_VALUE)]
            assert update.card["sources"]["external_id"] == "C-1" and update.card["customer"]["id"] == known.id
            assert updated - popped >= 0.15, "the pop went out before the slow source's timeout (0.3 s) was up"
            assert sim.wait(60) == 0, sim.log()
            for name, reason in (("slow", "no answer within 300 ms"), ("error", "HTTP 500"),
                                 ("big", "answer larger than max_bytes (65536)")):
                assert d.log().count(f"source {name} failed: {reason}") == 1, d.log()[-3000:]
            status, html = page(f"http://127.0.0.1:{http_port}", op, f"/customers/{known.id}")
            assert status == 200, d.log()[-3000:]
            section = html.split('id="sources"', 1)[1].split("</section>", 1)[0]
            assert "ERP name" in section and "Norðurljós (ERP)" in section and "1250.50" in section
            assert "&lt;b&gt;VIP&lt;/b&gt;" in section and "<b>VIP" not in section and "<img" not in section
            assert "no answer within 300 ms" in section or "paused" in section, section
            assert "Traceback" not in d.log(), d.log()[-3000:]
        finally:
            if stream is not None:
                stream.close()
            assert d.terminate() == 0, d.log()[-3000:]
            d.close()
