"""protocol.FrameSplitter, the one ESL frame splitter of the daemon's reader, the simulator's command reader and
capture reading: byte-exact however the bytes arrive, and each odd frame handled as those three need."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from screenpop.daemon.pbx.protocol import FrameError, FrameSplitter
from screenpop.simulator.capture import split_frames

CAPTURES = sorted(Path("/work/shared/esl-captures").glob("*.esl"))


def split_in_chunks(data: bytes, sizes: list[int], **options) -> tuple[list, bytes]:
    """Feed data in chunks of the given sizes (cycled), taking frames after each; the frames and the tail."""
    splitter = FrameSplitter(keep_raw=True, **options)
    frames, at, i = [], 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        splitter.feed(data[at:at + size])
        frames.extend(splitter.frames())
        at, i = at + size, i + 1
    return frames, splitter.tail()


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_captures_split_alike_in_any_chunks_and_byte_exact(path: Path) -> None:
    data = path.read_bytes()
    whole, tail = split_in_chunks(data, [len(data)])
    assert b"".join(f.raw for f in whole) + tail == data
    assert whole and not tail
    rng = random.Random(path.name)
    for sizes in ([1], [2, 3], [rng.randint(1, 5000) for _ in range(50)], [65536]):
        frames, rest = split_in_chunks(data, sizes)
        assert [(f.headers, f.body, f.raw) for f in frames] == [(f.headers, f.body, f.raw) for f in whole]
        assert rest == tail


def test_stray_blank_lines_are_skipped_and_kept_in_the_next_frames_raw() -> None:
    data = b"\n\nContent-Type: auth/request\n\n\n\nContent-Type: command/reply\nReply-Text: +OK\n\n"
    frames, tail = split_in_chunks(data, [1])
    assert [f.headers["Content-Type"] for f in frames] == ["auth/request", "command/reply"]
    assert b"".join(f.raw for f in frames) == data and tail == b""


def test_a_content_length_that_is_no_number_gives_a_problem_and_its_body_is_read_as_frames() -> None:
    data = b"Content-Type: api/response\nContent-Length: 1x\n\nContent-Type: auth/request\n\n"
    frames, _ = split_in_chunks(data, [3])
    assert "'1x'" in frames[0].problem and frames[0].body == b""
    assert frames[1].headers == {"Content-Type": "auth/request"} and not frames[1].problem


def test_a_body_over_the_limit_stops_the_stream() -> None:
    splitter = FrameSplitter(max_body=10)
    splitter.feed(b"Content-Type: api/response\nContent-Length: 11\n\n")
    with pytest.raises(FrameError, match="11-byte body, over the 10-byte limit"):
        list(splitter.frames())


def test_a_long_header_block_is_discarded_once_or_refused() -> None:
    data = b"X-Long: " + b"a" * 300 + b"\n\nContent-Type: auth/request\n\n"
    frames, _ = split_in_chunks(data, [7], max_head=100)
    assert [bool(f.problem) for f in frames] == [True, False]
    assert "discarding" in frames[0].problem and frames[1].headers == {"Content-Type": "auth/request"}
    with pytest.raises(FrameError):
        split_in_chunks(data, [7], max_head=100, discard_long=False)


def test_a_long_body_in_many_reads_says_what_is_missing_and_comes_out_whole() -> None:
    body = bytes(range(256)) * 40
    splitter = FrameSplitter()
    splitter.feed(b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body[:100])
    assert list(splitter.frames()) == [] and splitter.missing == len(body) - 100
    splitter.feed(body[100:1100])
    assert splitter.missing == len(body) - 1100
    for at in range(1100, len(body), 1000):
        splitter.feed(body[at:at + 1000])
    (frame,) = splitter.frames()
    assert frame.body == body and splitter.missing == 0 and splitter.tail() == b""


def test_unread_splits_the_end_of_a_body_again_as_the_next_frame() -> None:
    splitter = FrameSplitter()
    splitter.feed(b"Content-Type: text/event-plain\nContent-Length: 30\n\n"
                  b"Event-Name: HEARTBEAT\n\nContent-Type: auth/request\n\n")
    taken = []
    for frame in splitter.frames():
        taken.append(frame.headers["Content-Type"])
        if len(taken) == 1:
            splitter.unread(7)  # 'Content' belongs to the next frame
    assert taken == ["text/event-plain", "auth/request"]


def test_crlf_ends_a_command_block_when_asked() -> None:
    data = b"api status\r\n\r\nsendmsg\r\nContent-Length: 2\r\n\r\nhi"
    frames, tail = split_in_chunks(data, [1], crlf=True)
    assert [f.body for f in frames] == [b"", b"hi"] and tail == b""
    assert split_in_chunks(data, [len(data)])[0] == []


def test_capture_reading_keeps_a_truncated_last_frame() -> None:
    data = b"Content-Type: auth/request\n\nContent-Type: api/response\nContent-Length: 10\n\nabc"
    frames = split_frames(data)
    assert b"".join(f.raw for f in frames) == data
    assert frames[-1].headers["Content-Type"] == "api/response" and frames[-1].body == b"abc"
