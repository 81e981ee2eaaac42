"""Reads the packets that the table's ``log group`` rules send to userspace."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

from sesame.errors import RemoteError, SesameError
from sesame.firewall.ruleset import SNAPLEN
from sesame.wire import nflog

RCVBUF = 4 << 20
BATCH = 256


class SensorError(SesameError):
    """The NFLOG group could not be bound."""


class NflogSensor:
    """A netlink socket bound to one NFLOG group, flushing every packet at once."""

    def __init__(self, group: int) -> None:
        self.group = group
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nflog.NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))
            try:  # beyond rmem_max needs CAP_NET_ADMIN, which the daemon has
                self.sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self._request(bind=True)
            # Copy whole packets up to SNAPLEN, and deliver each one at once:
            # the kernel otherwise batches up to 100 packets or one second.
            self._request(copy_range=SNAPLEN, qthresh=1, timeout=0)
        except OSError as exc:
            self.sock.close()
            raise SensorError(f"cannot open NFLOG: {exc.strerror}") from None
        except SensorError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self._buffer = bytearray(65536)
        self._view = memoryview(self._buffer)

    def fileno(self) -> int:
        return self.sock.fileno()

    def _request(self, **options: int | bool) -> None:
        self._seq += 1
        self.sock.send(nflog.config_message(self.group, self._seq, **options))  # type: ignore[arg-type]
        while True:
            for item in nflog.messages(self.sock.recv(65536)):
                if isinstance(item, nflog.Ack) and item.seq == self._seq:
                    if item.error == -errno.EBUSY:
                        raise SensorError(
                            f"NFLOG group {self.group} is taken by another process"
                            " (another sesame, ulogd?); set [server] log_group"
                        )
                    if item.error:
                        raise SensorError(
                            f"NFLOG refused group {self.group}: {os.strerror(-item.error)}"
                        )
                    return

    def read(self) -> Iterator[nflog.Logged | RemoteError]:
        """Logged packets waiting now (at most a batch); faults as RemoteError."""
        buffer, view = self._buffer, self._view
        for _ in range(BATCH):
            try:
                size = self.sock.recv_into(buffer)  # no fresh 64 KiB buffer per packet
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    yield RemoteError("sensor overrun")
                    continue
                raise
            for item in nflog.messages(view[:size]):
                if not isinstance(item, nflog.Ack):
                    yield item

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self._request(bind=False)
        except (OSError, SensorError):
            pass
        self.sock.close()
