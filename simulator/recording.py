"""Call recordings for the simulator: where FreeSWITCH's record_session would write a call's file, and the stereo
WAV file itself (docs/recordings.md, "The simulator").

FreeSWITCH with RECORD_STEREO=true writes the recorded leg's own audio (what its endpoint sent) on the left
channel and what that leg heard (the other side) on the right. `Recorder` gives each recorded call its path as
FreeSWITCH names it in RECORD_START / RECORD_STOP (under `fs_dir`) and as written here (under `write_dir`: the two
differ to exercise the daemon's [recordings] paths mapping), and writes the file when the recording stops.

The audio content belongs to the conversation-analysis work (NAME=analysis): `write_recording` is the one function
that decides what is heard; everything else here only calls it.
"""
from __future__ import annotations

import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screenpop.simulator import speech
from screenpop.simulator.events import SimEvent

RATE = 8000  # FreeSWITCH records a PCMU call at the channel's 8 kHz


@dataclass(frozen=True)
class RecordedCall:
    """What the audio of one recorded call is made from: who is on which channel, for how long, which call."""

    seconds: float
    scenario: str  # the generator's scenario (inbound_answered, outbound, ...)
    seq: int  # the call's number in the run
    a_leg: str  # the recorded leg's UUID
    left: str  # who is on the left channel: "customer" or "operator"
    extension: str  # the operator's extension
    number: str  # the customer's number (another extension's on an internal call)


# ---- owned by the conversation-analysis work (NAME=analysis) ----
def write_recording(path: Path, call: RecordedCall) -> int:
    """Write the call's stereo 16-bit 8 kHz WAV file at path; its size in bytes.

    The audio is real speech: espeak-ng speaking the simulator's scripted conversation (simulator/speech.py), the
    recorded leg's own party on the left channel; cut where the call ended, or silence after the script's end."""
    frames = max(1, int(call.seconds * RATE))
    stereo = speech.stereo(speech.CONVERSATION, RATE)[:frames]
    if call.left == "operator":
        stereo = stereo[:, ::-1]
    audio = np.zeros((frames, 2), dtype="<i2")
    audio[:len(stereo)] = stereo
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(audio.tobytes())
    return path.stat().st_size
# ---- end of the part owned by the analysis work ----


class Recorder:
    """Where recorded calls go: fs_dir as FreeSWITCH names the files, write_dir where they are written here."""

    def __init__(self, write_dir: str | Path, fs_dir: str | None = None) -> None:
        self.write_dir = Path(write_dir)
        self.fs_dir = (fs_dir or str(self.write_dir)).rstrip("/") or "/"
        self.written = 0

    def paths(self, a_leg: str, start_us: int) -> tuple[str, Path]:
        """The file of a call recorded from start_us: FreeSWITCH's path (a date folder, the a-leg's UUID, as
        FusionPBX names them) and the path written here."""
        day = time.strftime("%Y/%m/%d", time.gmtime(start_us / 1_000_000))
        relative = f"{day}/{a_leg}.wav"
        return f"{self.fs_dir}/{relative}", self.write_dir / relative

    def finish(self, path: Path, call: RecordedCall) -> int:
        """The recording stopped: write its file; its size."""
        size = write_recording(path, call)
        self.written += 1
        return size


def _record_event(name: str, template: SimEvent, extra: list[tuple[str, str]], calling: tuple[str, str]) -> SimEvent:
    """A RECORD_* event from one of the leg's recorded events: its channel data, this event's name and calling
    site, then `extra` (FreeSWITCH adds Record-File-Path and the cause after the channel's data)."""
    drop = {"Bridge-A-Unique-ID", "Bridge-B-Unique-ID", "Hangup-Cause"} if name == "RECORD_START" else {
        "Bridge-A-Unique-ID", "Bridge-B-Unique-ID"}
    items = []
    for key, value in template.items():
        if key in drop:
            continue
        if key == "Event-Name":
            value = name
        elif key == "Event-Calling-Function":
            value = calling[0]
        elif key == "Event-Calling-Line-Number":
            value = calling[1]
        elif key == "Event-Calling-File":
            value = "switch_ivr_async.c"
        items.append((key, value))
    return SimEvent(name, "", template.ts_us, [items + extra])


def with_recordings(events: list[SimEvent], recorder: Recorder) -> list[SimEvent]:
    """A replayed capture's events with the recordings FreeSWITCH would have made of its answered calls: each
    a-leg's RECORD_START just before its first bridge, RECORD_STOP in its hangup state (before its
    CHANNEL_HANGUP_COMPLETE), with the channel's data of the leg's own events there; each file written."""
    out: list[SimEvent] = []
    started: dict[str, tuple] = {}
    hangups: dict[str, SimEvent] = {}
    for ev in events:
        uuid = ev.get("Unique-ID")
        if ev.name == "CHANNEL_BRIDGE" and uuid and ev.get("Bridge-A-Unique-ID") == uuid and uuid not in started:
            fs_path, local = recorder.paths(uuid, ev.ts_us)
            customer_left = ev.get("Channel-Name").startswith("sofia/external/")
            ext = ev.get("Other-Leg-Destination-Number") if customer_left else ev.get("Caller-Caller-ID-Number")
            number = ev.get("Caller-Caller-ID-Number") if customer_left else ev.get("Other-Leg-Destination-Number")
            started[uuid] = (fs_path, local, ev.ts_us, "customer" if customer_left else "operator", ext, number)
            out.append(_record_event("RECORD_START", ev, [("variable_RECORD_STEREO", "true"),
                                                          ("Record-File-Path", fs_path)], ("record_callback", "1485")))
        elif ev.name == "CHANNEL_HANGUP" and uuid in started:
            hangups[uuid] = ev
        elif ev.name == "CHANNEL_HANGUP_COMPLETE" and uuid in started and uuid in hangups:
            fs_path, local, start_us, left, ext, number = started.pop(uuid)
            ms = max(0, (ev.ts_us - start_us) // 1000)
            recorder.finish(local, RecordedCall(ms / 1000, "replay", 0, uuid, left, ext, number))
            cause = "success-silence"
            out.append(_record_event("RECORD_STOP", hangups.pop(uuid), [
                ("variable_RECORD_STEREO", "true"), ("variable_record_samples", str(ms * RATE // 1000)),
                ("variable_record_seconds", str(ms // 1000)), ("variable_record_ms", str(ms)),
                ("variable_record_completion_cause", cause), ("Record-File-Path", fs_path),
                ("Record-Completion-Cause", cause)], ("send_record_stop_event", "1243")))
        out.append(ev)
    return out
