"""Reads the packets that the table's ``log group`` rules send to userspace."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Iterator

from sesame import host
from sesame.errors import RemoteError, SesameError
from sesame.firewall.ruleset import SNAPLEN
from sesame.wire import nflog
from sesame.wire.netlink import NETLINK_NETFILTER

RCVBUF = 4 << 20
BATCH = 2048  # packets one read hands on at most: then the loop sees to its other work
QTHRESH_BUSY = 256  # packets the kernel gathers before it delivers them, during a flood
BUFSIZE_BUSY = 128 << 10  # bytes it gathers them in then: the most it takes (a page: ~10)
BUFSIZE_CALM = 4096  # a page: not below the default (the kernel ignores less, silently)
FLOOD_RATE = 10_000  # packets a second

log = logging.getLogger("sesame")


SO_RCVBUFFORCE = 33


def receive_buffer(sock: socket.socket, size: int) -> None:
    """Give ``sock`` a receive buffer of ``size`` bytes; beyond the system's rmem_max
    that needs CAP_NET_ADMIN, which the daemon has (else it gets what is allowed)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class SensorError(SesameError):
    """The NFLOG group could not be bound."""


class NflogSensor:
    """A netlink socket bound to one NFLOG group.

    Each packet is delivered at once (queue threshold 1: a knock opens in a fraction of
    a millisecond). Under a flood (more than FLOOD_RATE packets a second), the kernel is
    asked to deliver them QTHRESH_BUSY at a time (or after 10 ms) in buffers of
    BUFSIZE_BUSY (a page would hold only about ten), which saves wake-ups, system calls
    and netlink messages; once it is over, one at a time again. A source that opened
    lately is not kept waiting by this: its SPA has a group of its own, seldom busy.
    """

    def __init__(self, group: int, key: str = "log_group") -> None:
        self.group, self.key = group, key  # the config key that names the group
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))
            self.sock.settimeout(5.0)  # the kernel answers at once; never wait forever
            receive_buffer(self.sock, RCVBUF)
            self._request(bind=True)
            # Copy whole packets up to SNAPLEN, and deliver each one at once:
            # the kernel otherwise batches up to 100 packets or one second.
            self._request(copy_range=SNAPLEN, qthresh=1, timeout=0)
            self.batched = False
            self._window, self._seen = time.monotonic(), 0
            self._early: list[nflog.Logged | RemoteError] = []
        except OSError as exc:
            self.sock.close()
            raise SensorError(f"cannot open NFLOG: {exc.strerror or exc}") from None
        except SensorError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self._shapes = nflog.Shapes()
        self._buffer = bytearray(BUFSIZE_BUSY + SNAPLEN + 1024)  # a batch, or one packet
        self._view = memoryview(self._buffer)

    def fileno(self) -> int:
        return self.sock.fileno()

    def _request(self, **options: int | bool) -> None:
        self._seq += 1
        self.sock.send(nflog.config_message(self.group, self._seq, **options))  # type: ignore[arg-type]
        while True:
            for item in nflog.messages(self.sock.recv(65536)):
                if not isinstance(item, nflog.Ack):
                    self._early.append(item)  # a packet that came before the answer
                elif item.seq == self._seq:
                    if item.error == -errno.EBUSY:
                        raise SensorError(
                            f"NFLOG group {self.group} is taken by another process"
                            f" (another sesame, ulogd?); set [server] {self.key}"
                        )
                    if item.error == -errno.EPERM:
                        raise SensorError(self._refused())
                    if item.error:
                        raise SensorError(
                            f"NFLOG refused group {self.group}: {os.strerror(-item.error)}"
                        )
                    return

    def _refused(self) -> str:
        """Why the kernel said EPERM: no right to NFLOG, or the group is another
        socket's (the kernel answers both the same way)."""
        if not host.can_admin_network():
            return f"reading NFLOG group {self.group} {host.NEEDS_ADMIN}"
        holder = host.nflog_holder(self.group)
        return (
            f"NFLOG group {self.group} is taken by another process"
            f"{f' ({holder})' if holder else ''} (another sesame, ulogd?): stop it, or set"
            f" [server] {self.key} to a free group"
        )

    def read(self, sieve: nflog.Sieve | None = None) -> Iterator[nflog.Logged | RemoteError]:
        """Logged packets waiting now (at most a batch); faults as RemoteError. What
        ``sieve`` takes (see nflog.messages) is not handed on, but counts in the batch
        and in the rate that decides whether the kernel batches."""
        if self._early:
            yield from self._early
            self._early = []
        buffer, view = self._buffer, self._view
        count = 0
        while count < BATCH:  # bounded in packets: a flood's reads hold QTHRESH_BUSY each
            try:
                size = self.sock.recv_into(buffer)  # no fresh 64 KiB buffer per packet
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    count += 1
                    yield RemoteError("sensor overrun")
                    continue
                raise
            for item in nflog.messages(view[:size], sieve, self._shapes):
                if isinstance(item, nflog.Ack):
                    continue
                count += 1
                if item is not None:  # (None: the sieve took it)
                    yield item
        self._adapt(count)

    def relax(self) -> None:
        """Called when the loop wakes: a flood that stopped ends batching."""
        if self.batched:
            self._adapt(0)

    def _adapt(self, count: int) -> None:
        """Batch in the kernel while a flood lasts; deliver at once otherwise."""
        self._seen += count
        now = time.monotonic()
        elapsed = now - self._window
        if elapsed < 0.1:
            return
        busy = self._seen / elapsed > FLOOD_RATE
        self._window, self._seen = now, 0
        if busy == self.batched:
            return
        # No answer is awaited: under a flood the socket's queue is full, and the
        # kernel would drop the acknowledgement. If this request is lost, the next
        # window asks again.
        self._seq += 1
        qthresh, timeout, bufsize = (
            (QTHRESH_BUSY, 1, BUFSIZE_BUSY) if busy else (1, 0, BUFSIZE_CALM)
        )
        message = nflog.config_message(
            self.group, self._seq, qthresh=qthresh, timeout=timeout, bufsize=bufsize, ack=False
        )
        try:
            self.sock.send(message)
        except OSError:
            return
        self.batched = busy
        if busy:
            log.info("flood: the kernel now delivers packets %d at a time", QTHRESH_BUSY)
        else:
            log.info("flood over: the kernel delivers each packet at once again")

    def close(self) -> None:
        """Unbind (without waiting: a flood could crowd out the answer) and close."""
        self._seq += 1
        with contextlib.suppress(OSError):
            self.sock.send(nflog.config_message(self.group, self._seq, bind=False, ack=False))
        self.sock.close()
