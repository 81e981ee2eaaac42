"""Log lines that no packet can forge: every character of a message that is not
printable (a newline, a carriage return, a terminal escape, any other control) is
written as an escape, whatever part of the message it came from. Remote bytes that
reach a log (an address a client claims, a name) can then never start a line of
their own or rewrite the terminal."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import TextIO

FORMAT = "%(asctime)s sesame[%(process)d]: %(message)s"


def escape(text: str) -> str:
    """``text`` with every non-printable character as ``\\xNN`` or ``\\uNNNN``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plural(count: int, word: str) -> str:
    """``1 door``, ``2 doors``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Clock(logging.Formatter):
    """A formatter that reads the calendar once a second, not once a line (a flood
    of grants writes thousands of lines a second, each with the same time to the
    second); what it writes is the same as logging.Formatter writes."""

    _second: tuple[int, str | None] | None = None
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = (int(record.created), datefmt)
        if second != self._second:
            when = self.converter(record.created)
            self._text = time.strftime(datefmt or self.default_time_format, when)
            self._second = second
        if datefmt or not self.default_msec_format:
            return self._text
        return self.default_msec_format % (self._text, record.msecs)


class Escaping(Clock):
    """A formatter whose messages are escaped (tracebacks, sesame's own, are not)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class Json(Clock):
    """One JSON object a line, for machines (``[server] log_format = "json"``): the
    time, the level, the message (escaped as in text) and the event's own fields
    (``extra={"fields": {...}}``: the source address, the door, the user, the reason).
    JSON's own escaping keeps every field on its line."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix  # for syslog: "sesame[%(process)d]: " before the object

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "pid": record.process,
            "message": escape(record.getMessage()),
        }
        fields.update(getattr(record, "fields", {}))
        head = self.prefix % {"process": record.process} if self.prefix else ""
        return head + json.dumps(fields, ensure_ascii=True, default=str)


JOURNAL = "/run/systemd/journal/socket"
PRIORITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def under_journal(env: Mapping[str, str], stderr_fd: int = 2) -> bool:
    """Is stderr systemd's journal stream (``$JOURNAL_STREAM`` names it)?"""
    stream = env.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        info = os.fstat(stderr_fd)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class Journal(logging.Handler):
    """Records sent to journald in its native protocol, with their fields as journal
    fields (``SESAME_EVENT``, ``SESAME_SOURCE``, ``SESAME_USER``, ...): the same
    fields as the JSON log format, each escaped (no value holds a newline)."""

    def __init__(self, path: str = JOURNAL) -> None:
        super().__init__()
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "MESSAGE": escape(record.getMessage()),
                "PRIORITY": str(PRIORITIES.get(record.levelname, 6)),
                "SYSLOG_IDENTIFIER": "sesame",
            }
            for key, value in getattr(record, "fields", {}).items():
                text = json.dumps(value) if isinstance(value, list) else str(value)
                fields[f"SESAME_{key.upper().replace(' ', '_')}"] = escape(text)
            data = "".join(f"{k}={v}\n" for k, v in fields.items()).encode()
            self.sock.sendto(data, self.path)
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


class Held(logging.StreamHandler[TextIO]):
    """A stream (the daemon's stderr, its log file) whose lines wait in its buffer
    until :func:`write_held`, which the daemon's loop calls before it waits: a burst of
    grants and refusals costs one write, not one each. A kill -9 loses what one turn
    of the loop logged and had not written."""

    def __init__(self, fd: int) -> None:
        stream = open(  # noqa: SIM115 - closed with the handler
            fd, "a", buffering=1 << 16, encoding="utf-8", errors="backslashreplace"
        )
        super().__init__(stream)
        self.holding = False  # lines not written yet
        HELD.append(self)

    def flush(self) -> None:  # emit() calls it after every line: not yet
        self.holding = True

    def write_out(self) -> None:
        self.holding = False
        with contextlib.suppress(OSError, ValueError):
            super().flush()

    def close(self) -> None:
        self.write_out()
        if self in HELD:
            HELD.remove(self)
        with contextlib.suppress(OSError, ValueError):
            self.stream.close()
        super().close()


HELD: list[Held] = []


def write_held() -> None:
    """Write what the held outputs hold."""
    for handler in HELD:
        if handler.holding:
            handler.write_out()
