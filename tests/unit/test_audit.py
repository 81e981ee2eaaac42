"""The audit trail: a line for each grant event and each refused SPA datagram, with
its fields, escaped, and bounded under a flood."""

from __future__ import annotations

import io
import json
import logging
import os
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesame.basics import Port
from sesame.engine import Closed, Grant, Opened
from sesame.errors import RemoteError
from sesame.logs import FORMAT, Clock, Escaping, Json
from sesame.service import audit
from sesame.wire import spa

A, B = ip_address("198.51.100.7"), ip_address("2001:db8::7")
GRANT = Grant("ssh", A, (Port("tcp", 22),), 30.0, "alice")


@pytest.fixture
def lines():
    """What the "sesame" logger writes, as text and as JSON."""
    text, machine = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(text), logging.StreamHandler(machine)]
    handlers[0].setFormatter(Escaping(FORMAT))
    handlers[1].setFormatter(Json())
    logger = logging.getLogger("sesame")
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def read() -> tuple[list[str], list[dict]]:
        return text.getvalue().splitlines(), [
            json.loads(x) for x in machine.getvalue().splitlines()
        ]

    yield read
    for handler in handlers:
        logger.removeHandler(handler)


def test_each_grant_event_is_a_line_with_its_fields(lines):
    audit.decision(Opened(GRANT))
    audit.decision(Closed(GRANT, "revoked"))
    text, machine = lines()
    assert text[0].endswith("opened door ssh to 198.51.100.7: 22/tcp (user alice)")
    assert text[1].endswith("closed door ssh for 198.51.100.7 (revoked) (user alice)")
    assert machine[1] | {"time": "", "pid": 0} == {
        "time": "",
        "pid": 0,
        "level": "info",
        "message": "closed door ssh for 198.51.100.7 (revoked) (user alice)",
        "event": "closed",
        "reason": "revoked",
        "door": "ssh",
        "address": "198.51.100.7",
        "user": "alice",
        "ports": ["22/tcp"],
    }


def test_a_forged_user_name_cannot_start_a_line_of_its_own(lines):
    name = "ev\nil 2026-01-01 sesame[1]: opened door ssh to 6.6.6.6\x1b[31m"[:32]
    payload = spa.encode(name, spa.cipher(bytes(32)), "ssh", A, 0, os.urandom(12))
    audit.Refusals().refused("spa", A, RemoteError("unknown user"), payload, 0.0)
    text, machine = lines()
    assert len(text) == 1 and "\\x0a" in text[0] and "\x1b" not in text[0]
    assert text[0].split(": ", 1)[1].startswith("refused SPA from 198.51.100.7: unknown user (user")
    assert machine[0]["user"] == name and machine[0]["source"] == "198.51.100.7"


def test_ten_lines_a_minute_for_a_source_then_how_many_more(lines):
    refusals = audit.Refusals()
    for i in range(25):
        refusals.refused("fwknop", A, RemoteError("fwknop bad hmac"), b"", i * 0.1)
    refusals.refused("spa", B, RemoteError("spa header"), b"", 3.0)
    refusals.tick(61.0)
    text, machine = lines()
    assert sum("refused fwknop SPA from 198.51.100.7: fwknop bad hmac" in x for x in text) == 10
    assert text[-1].endswith("refused 15 more datagrams from 198.51.100.7 in a minute")
    assert machine[-1]["count"] == 15 and machine[10]["source"] == "2001:db8::7"


def test_a_flood_from_forged_sources_writes_a_bounded_number_of_lines(lines):
    refusals = audit.Refusals()
    for i in range(5000):
        source = ip_address(0x64400000 + i)
        refusals.refused("spa", source, RemoteError("spa header"), b"", 1.0 + i * 1e-5)
    refusals.tick(2.0)
    text, _ = lines()
    assert len(text) == audit.BURST + 1
    assert text[-1].endswith(
        f"refused {5000 - audit.BURST} more datagrams, from too many sources to write each"
    )
    assert len(refusals.sources) <= audit.SOURCES


def test_under_systemd_records_go_to_the_journal_with_their_fields(tmp_path):
    """The native journal protocol, to a socket the test owns: the message, its
    priority and the event's fields as SESAME_* fields, escaped."""
    import socket

    from sesame.logs import Journal, under_journal

    path = str(tmp_path / "journal")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(path)
    journal.settimeout(2.0)
    handler = Journal(path)
    logger = logging.getLogger("sesame")
    logger.addHandler(handler)
    try:
        payload = spa.encode("ev\nil", spa.cipher(bytes(32)), "ssh", A, 0, os.urandom(12))
        audit.Refusals().refused("spa", A, RemoteError("unknown user"), payload, 0.0)
        sent = journal.recv(65536).decode()
    finally:
        logger.removeHandler(handler)
        handler.close()
        journal.close()
    fields = dict(line.split("=", 1) for line in sent.splitlines())
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "sesame"
    assert fields["SESAME_EVENT"] == "refused" and fields["SESAME_SOURCE"] == "198.51.100.7"
    assert fields["SESAME_USER"] == "ev\\x0ail" and fields["SESAME_REASON"] == "unknown user"
    assert fields["MESSAGE"].startswith("refused SPA from 198.51.100.7: unknown user")
    stream = os.fstat(2)
    assert under_journal({"JOURNAL_STREAM": f"{stream.st_dev}:{stream.st_ino}"})
    assert not under_journal({"JOURNAL_STREAM": "1:2"}) and not under_journal({})


def test_held_lines_are_written_when_the_loop_turns_and_at_close():
    """The daemon's stderr and log file hold their lines until the loop writes them
    out (one write a turn), and nothing is lost when the handler closes."""
    import os

    from sesame import logs

    read, write = os.pipe()
    os.set_blocking(read, False)
    held = logs.Held(write)
    logger = logging.getLogger("sesame.test-held")
    logger.addHandler(held)
    logger.propagate = False
    try:
        for i in range(3):
            logger.warning("line %d", i)
        with pytest.raises(BlockingIOError):
            os.read(read, 4096)
        logs.write_held()
        assert os.read(read, 4096) == b"line 0\nline 1\nline 2\n"
        logger.warning("last")
    finally:
        logger.removeHandler(held)
        held.close()
    assert os.read(read, 4096) == b"last\n"
    assert held not in logs.HELD
    os.close(read)


@given(
    st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20),
    st.sampled_from([None, "%Y-%m-%dT%H:%M:%S", "%H:%M"]),
)
def test_the_clock_read_once_a_second_writes_what_logging_writes(times, datefmt):
    """Times in any order, some within one second of each other: each line's time is
    the one logging.Formatter writes for it."""
    clock, plain = Clock(FORMAT), logging.Formatter(FORMAT)
    for created in sorted(times) + times + [t + 0.5 for t in times]:
        record = logging.makeLogRecord({"msg": "m"})
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert clock.formatTime(record, datefmt) == plain.formatTime(record, datefmt)
