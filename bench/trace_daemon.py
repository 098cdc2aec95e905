"""`screenpop daemon` with a timestamp at each stage of every pop's way through it, for bench/pop_latency.py --trace.

Bench only: the stamps are taken by wrapping the daemon's own functions from outside (the product carries no
tracing code). Each pop that reaches an SSE stream gets one JSON line in the file named by $SCREENPOP_TRACE when
the daemon stops, with wall-clock times (time.time(), comparable with the bench's relay and SSE reader):

    recv      its event frame decoded by the ESL reader (queued for dispatch)
    dispatch  the tracker starts on that event
    queued    the pop queued for the writer
    flush     the writer's transaction holding it starts
    commit    that transaction committed (the writer hands the pops to the hub)
    build     the database worker starts building its card (after commit, or where the writer draws the pops'
              ids itself, as soon as it is queued)
    built     its frame queued to the streams
    taken     the stream greenlet takes it (first stream to; `stream` says which extension's)
    sent      that stream's write of it returned

    python bench/trace_daemon.py --config FILE     (then as `screenpop daemon --config FILE`)
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from screenpop.daemon import cli, runtime  # noqa: E402
from screenpop.daemon.pbx import esl  # noqa: E402
from screenpop.daemon.push import hub  # noqa: E402
from screenpop.daemon.push.card import CardBuilder  # noqa: E402
from screenpop.daemon.record import writer  # noqa: E402
from screenpop.daemon.web import server  # noqa: E402

now = time.time
received: dict[int, float] = {}  # id(event) -> recv
current: dict[str, float] = {}  # the event being dispatched: recv, dispatch
pending: dict[int, dict] = {}  # id(PendingPop) -> stamps
stamps: dict[int, dict] = {}  # pop id -> stamps
flush_started = [0.0]
taken: dict[int, list[int]] = {}  # id(Subscriber) -> pop ids taken, not yet written (Subscriber has slots)


def wrap(owner, name: str, make) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def _event_in(orig):
    def inner(self, event):
        received[id(event)] = now()
        return orig(self, event)
    return inner


def _on_event(orig):
    def inner(self, event):
        current["recv"] = received.pop(id(event), 0.0)
        current["dispatch"] = now()
        try:
            return orig(self, event)
        finally:
            current.clear()
    return inner


def _queue_pop(orig):
    def inner(self, call, extension, event, *args, **kwargs):
        t = now()
        before = self._pops[-1] if self._pops else None
        orig(self, call, extension, event, *args, **kwargs)
        if self._pops and self._pops[-1] is not before:
            pop = self._pops[-1]
            s = {"recv": current.get("recv", 0.0), "dispatch": current.get("dispatch", 0.0), "queued": t,
                 "extension": extension, "event": event}
            if pop.id is not None:  # the writer drew its id: its card may be built before it is stored
                stamps[pop.id] = s
            else:
                pending[id(pop)] = s
    return inner


def _flush_once(orig):
    def inner(self):
        flush_started[0] = now()
        return orig(self)
    return inner


def _push_committed(orig):
    def inner(self, pops):
        t = now()
        for pop in pops:
            s = pending.pop(id(pop), None)
            if s is not None and pop.id is not None:
                stamps[pop.id] = s
            s = stamps.get(pop.id)
            if s is not None:
                s["flush"], s["commit"] = flush_started[0], t
        return orig(self, pops)
    return inner


def _frame(orig):
    def inner(self, pop, *args, **kwargs):
        s = stamps.get(pop.id) if pop.id is not None and not kwargs.get("update") and len(args) < 3 else None
        if s is not None and "build" not in s:
            s["build"] = now()
        out = orig(self, pop, *args, **kwargs)
        if s is not None and "built" not in s:
            s["built"] = now()
        return out
    return inner


def _take(orig):
    def inner(self):
        out = orig(self)
        t = now()
        for pop_id, _ in out:
            s = stamps.get(pop_id) if pop_id is not None else None
            if s is not None and "taken" not in s:
                s["taken"], s["stream"] = t, self.extension
                taken.setdefault(id(self), []).append(pop_id)
        return out
    return inner


def _stream(orig):
    def inner(hub_, sub, *args):
        for chunk in orig(hub_, sub, *args):
            yield chunk
            t = now()
            for pop_id in taken.pop(id(sub), ()):
                stamps[pop_id].setdefault("sent", t)
    return inner


def dump() -> None:
    path = os.environ.get("SCREENPOP_TRACE")
    if not path:
        return
    with open(path, "w", encoding="utf-8") as out:
        for pop_id, s in stamps.items():
            out.write(json.dumps({"id": pop_id, **s}) + "\n")


wrap(esl.GuardedInboundESL, "_event_in", _event_in)
wrap(runtime.Daemon, "_on_event", _on_event)
wrap(writer.Writer, "queue_pop", _queue_pop)
wrap(writer.Writer, "flush_once", _flush_once)
wrap(hub.PushHub, "push_committed", _push_committed)
wrap(CardBuilder, "frame", _frame)
wrap(hub.Subscriber, "take", _take)
wrap(server, "_stream", _stream)
atexit.register(dump)

if __name__ == "__main__":
    sys.exit(cli.main(["daemon", *sys.argv[1:]]))
