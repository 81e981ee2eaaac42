"""Knock, then connect (``sesame connect``): every address of a name is tried, IPv6
first and the families interleaved (RFC 8305's order), each knocked on just before
its first connection attempt, so the knock goes to the address the connection
does. Attempts repeat with a short back-off until one opens or the time is up (a
gate drops the first SYNs, and the daemon may open a moment after the knock); the
first connection that opens is kept, the rest closed. Then the connection is handed
to ssh (``ProxyUseFdpass``) or relayed over standard input and output."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sesame import client

STAGGER = 0.25  # seconds between starting on one address and on the next
FIRST_RETRY, MAX_RETRY = 0.1, 1.0  # a fresh attempt per address, backing off to this
MAX_PENDING = 8  # attempts kept waiting per address (the kernel retries each SYN too)

Knock = Callable[[int, str], None]  # (family, address): knock there


class NoConnection(Exception):
    """No address opened in time; the message says what each one did."""


def addresses(host: str, family: int = socket.AF_UNSPEC) -> list[tuple[int, str]]:
    """The addresses of ``host`` as (family, address), IPv6 first, then alternating."""
    try:
        return client.addresses(host, family)
    except ValueError as exc:
        raise NoConnection(str(exc)) from None


@dataclass
class _Target:
    family: int
    address: str
    start: float  # when to knock and first try
    knocked: bool = False
    dead: bool = False
    next_try: float = 0.0
    interval: float = FIRST_RETRY
    pending: deque[socket.socket] = field(default_factory=deque)
    error: str = "no answer"


def connect(
    targets: list[tuple[int, str]],
    port: int,
    knock: Knock,
    timeout: float,
    source: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> socket.socket:
    """Knock on each target in turn and race connections to ``port``; the first
    connected socket (blocking), or NoConnection once ``timeout`` has passed."""
    begin = clock()
    deadline = begin + timeout
    todo = [_Target(fam, addr, begin + i * STAGGER) for i, (fam, addr) in enumerate(targets)]
    selector = selectors.DefaultSelector()
    try:
        while (now := clock()) < deadline and not all(t.dead for t in todo):
            for target in todo:
                _step(target, now, port, knock, source, selector)
            wake = [t.next_try if t.knocked else t.start for t in todo if not t.dead]
            wait = max(0.0, min([deadline, *wake]) - now)
            for key, _ in selector.select(wait):
                sock, target = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                target.pending.remove(sock)
                failure = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if failure == 0:
                    sock.setblocking(True)
                    return sock
                target.error = os.strerror(failure)
                sock.close()
    finally:
        for target in todo:
            for sock in target.pending:
                selector.unregister(sock)
                sock.close()
        selector.close()
    tried = "; ".join(f"{t.address}: {t.error}" for t in todo) or "no address"
    raise NoConnection(f"no connection to port {port} within {timeout:g} s ({tried})")


def _step(
    target: _Target,
    now: float,
    port: int,
    knock: Knock,
    source: str | None,
    selector: selectors.BaseSelector,
) -> None:
    """Knock on ``target`` when its turn comes, then start an attempt when one is due."""
    if target.dead or now < target.start:
        return
    if not target.knocked:
        target.knocked, target.next_try = True, now
        try:
            knock(target.family, target.address)
        except (OSError, ValueError) as exc:  # ValueError: said plainly by the knock
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            target.dead, target.error = True, f"cannot knock: {why}"
            return
    if now < target.next_try:
        return
    target.next_try = now + target.interval
    target.interval = min(target.interval * 2, MAX_RETRY)
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        client.bind(sock, source)
        failure = sock.connect_ex((target.address, port))
    except (OSError, ValueError) as exc:
        sock.close()
        target.dead, target.error = True, str(exc)
        return
    if failure not in (0, errno.EINPROGRESS):
        target.error = os.strerror(failure)
        sock.close()
        return
    target.pending.append(sock)
    selector.register(sock, selectors.EVENT_WRITE, target)
    if len(target.pending) > MAX_PENDING:
        oldest = target.pending.popleft()
        selector.unregister(oldest)
        oldest.close()


def hand_over(conn: socket.socket, out: int = 1) -> None:
    """Pass the connected socket to the parent over ``out``, as ssh's ProxyUseFdpass
    expects (one byte with the descriptor)."""
    try:
        channel = socket.socket(fileno=os.dup(out))
    except OSError:
        raise NoConnection(
            "--fdpass: standard output is not a socket (ssh gives one with ProxyUseFdpass yes)"
        ) from None
    with channel:
        if channel.family != socket.AF_UNIX:
            raise NoConnection("--fdpass: standard output is not a Unix socket")
        socket.send_fds(channel, [b"\0"], [conn.fileno()])


def relay(conn: socket.socket, stdin: int = 0, stdout: int = 1) -> None:
    """Copy ``stdin`` to the connection and the connection to ``stdout`` until the
    server closes it; the end of ``stdin`` is passed on as a half-close."""

    def upstream() -> None:
        try:
            while data := os.read(stdin, 65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            return

    threading.Thread(target=upstream, daemon=True).start()
    while True:
        try:
            data = conn.recv(65536)
        except OSError:  # reset by the server: the end, as for ssh
            return
        if not data:
            return
        view = memoryview(data)
        while view:
            view = view[os.write(stdout, view) :]
