"""The control socket: ``sesame status``, ``revoke``, ``reload`` and ``counters`` ask
the running daemon (``sesame serve --control /run/sesame/control``).

Protocol, version 1: one request a connection, a JSON object on one line of at most
64 KiB::

    {"version": 1, "command": "status"}
    {"version": 1, "command": "revoke", "who": "alice"}      (a user or an address)
    {"version": 1, "command": "reload"}
    {"version": 1, "command": "counters"}

The answer is one JSON object on one line, ``{"version": 1, "ok": true, ...}`` or
``{"version": 1, "ok": false, "error": "..."}``, and the daemon closes the
connection. A request that is not such JSON, too long, of another version or an
unknown command is answered ``ok: false`` and changes nothing. The socket is mode
0660: the daemon's user and group may ask (membership of its group is the admin
right); the kernel refuses the others. At most 16 clients at once, each for 5 s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

from sesame.basics import Address, Port
from sesame.errors import SesameError

log = logging.getLogger("sesame")
VERSION = 1
MAX_REQUEST = 65536
MAX_CLIENTS = 16
IDLE = 5.0  # seconds a client may take to send its request
COMMANDS = {"status": (), "revoke": ("who",), "reload": (), "counters": ()}
DEFAULT = "/run/sesame/control"


def grant_row(
    address: Address, port: Port, door: str, user: str, seconds_left: float
) -> dict[str, Any]:
    """One row of ``status``: a grant's port (another host's, rewritten to ``to``)."""
    return {
        "address": str(address),
        "proto": port.proto,
        "port": port.number,
        **({"host": port.host} if port.host else {}),  # another host's port
        **({"to": port.to} if port.to else {}),  # ... this host's port rewritten to
        "door": door,
        "user": user,
        "seconds_left": seconds_left,
    }


Request = dict[str, Any]


def parse(data: bytes) -> Request | str:
    """A request from the bytes a client sent (its line), or why it is refused."""
    if len(data) > MAX_REQUEST:
        return f"request longer than {MAX_REQUEST} bytes"
    try:
        request = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return "not a JSON request"
    if not isinstance(request, dict):
        return "a request is a JSON object"
    if request.get("version") != VERSION:
        return f"protocol version {VERSION} only"
    command = request.get("command")
    if not isinstance(command, str) or command not in COMMANDS:
        return f"unknown command; one of {', '.join(COMMANDS)}"
    for name in COMMANDS[command]:
        if not isinstance(request.get(name), str) or not request[name]:
            return f"{command} needs {name!r}"
    return request


def reply(ok: bool, **fields: Any) -> bytes:
    return json.dumps({"version": VERSION, "ok": ok, **fields}).encode() + b"\n"


class Client:
    """One connection: what it sent so far, and until when it may send."""

    def __init__(self, sock: socket.socket, until: float) -> None:
        self.sock = sock
        self.until = until
        self.data = b""


class Listener:
    """A listening socket in the daemon's loop and its clients, one request each:
    bytes up to ``end`` (at most ``MAX_REQUEST``), answered by ``handle`` and closed.
    ``watch(fd, on)`` adds (``on``) or removes a client's descriptor from the loop.
    A client that sends too much, or nothing in ``IDLE`` seconds, gets ``refuse``'s
    answer; no client ever blocks the daemon for more than a second."""

    def __init__(
        self,
        sock: socket.socket,
        watch: Callable[[int, bool], None],
        end: bytes,
        refuse: Callable[[str], bytes],
    ) -> None:
        self.sock, self.watch, self.end, self.refuse = sock, watch, end, refuse
        self.clients: dict[int, Client] = {}
        sock.listen(MAX_CLIENTS)
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, now: float) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                sock, _ = self.sock.accept()
                if len(self.clients) >= MAX_CLIENTS:
                    self._send(sock, self.refuse("too many clients; try again"))
                    sock.close()
                    continue
                sock.setblocking(False)
                self.clients[sock.fileno()] = Client(sock, now + IDLE)
                self.watch(sock.fileno(), True)

    def read(self, fd: int, handle: Callable[[bytes], bytes]) -> None:
        """A client sent something: once its request is complete (or too long, or it
        hung up), answer it and close."""
        client = self.clients[fd]
        try:
            data = client.sock.recv(MAX_REQUEST + 1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        client.data += data
        request, ended, _ = client.data.partition(self.end)
        if not ended and data and len(client.data) <= MAX_REQUEST:
            return  # more to come
        if not ended and not client.data:
            self._close(fd)  # hung up without asking
            return
        if ended:
            answer = handle(request)
        elif len(client.data) > MAX_REQUEST:
            answer = self.refuse(f"request longer than {MAX_REQUEST} bytes")
        else:
            answer = handle(client.data)  # hung up after asking
        self._send(client.sock, answer)
        self._close(fd)

    def expire(self, now: float) -> None:
        """Close the clients that took too long to ask."""
        for fd, client in list(self.clients.items()):
            if now >= client.until:
                self._send(client.sock, self.refuse("no request in time"))
                self._close(fd)

    def next_expiry(self) -> float | None:
        return min((c.until for c in self.clients.values()), default=None)

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> None:
        """Answer, waiting at most a second for a client that reads slowly."""
        with contextlib.suppress(OSError):
            sock.settimeout(1.0)
            sock.sendall(data)

    def _close(self, fd: int) -> None:
        client = self.clients.pop(fd)
        self.watch(fd, False)
        with contextlib.suppress(OSError):  # what it sent beyond is read, not reset
            client.sock.shutdown(socket.SHUT_WR)
            client.sock.setblocking(False)
            for _ in range(16):
                if not client.sock.recv(MAX_REQUEST):
                    break
        client.sock.close()

    def close(self) -> None:
        for fd in list(self.clients):
            self._close(fd)
        self.sock.close()


class Control(Listener):
    """The control socket at ``path`` (mode 0660)."""

    def __init__(self, path: str, watch: Callable[[int, bool], None]) -> None:
        self.path = path
        _clear(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(path)
            os.chmod(path, 0o660)
        except OSError as exc:
            sock.close()
            raise SesameError(f"cannot listen on {path}: {exc.strerror}") from None
        super().__init__(sock, watch, b"\n", lambda why: reply(False, error=why))

    def serve(self, fd: int, handle: Callable[[Request], bytes]) -> None:
        """Answer a client's request with ``handle`` (refused requests: an error)."""

        def respond(data: bytes) -> bytes:
            request = parse(data)
            return reply(False, error=request) if isinstance(request, str) else handle(request)

        self.read(fd, respond)

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _clear(path: str) -> None:
    """Remove a socket left by a daemon that is gone; refuse if one still answers,
    or if the path is something else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SesameError(f"{path} exists and is not a socket: remove it or choose another")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a daemon that is gone left it
        return
    finally:
        probe.close()
    raise SesameError(f"another sesame is serving on {path}")
