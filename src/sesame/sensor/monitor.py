"""Listens to nftables' change notifications (netlink group NFNLGRP_NFTABLES), so
sesame notices at once when its table, a chain, a rule or a set is deleted or
flushed, without polling. What a change means is :mod:`sesame.firewall.watch`'s call.

A socket filter drops, in the kernel, the notifications of sesame's own netlink
socket (every grant is one to three of them), so a flood of valid SPA costs nothing here.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import sys

from sesame.firewall.watch import Verdict, Watch
from sesame.sensor.nflog import SensorError, receive_buffer
from sesame.wire import netlink, nftables

SO_ATTACH_FILTER = 26
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
RCVBUF = 8 << 20  # a burst of other programs' changes (a big set filled at once)
# Classic BPF: load the nlmsg_pid word of the first message; drop if it is ours.
BPF_LD_W_ABS, BPF_JMP_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06


def _filter(portid: int) -> list[tuple[int, int, int, int]]:
    """Drop a datagram whose first message came from ``portid`` (loads are big-endian:
    the word is compared as the kernel's bytes read that way)."""
    raw = int.from_bytes(portid.to_bytes(4, sys.byteorder), "big")
    return [
        (BPF_LD_W_ABS, 0, 0, 12),
        (BPF_JMP_JEQ_K, 0, 1, raw),
        (BPF_RET_K, 0, 0, 0),
        (BPF_RET_K, 0, 0, 0xFFFFFFFF),
    ]


class TableMonitor:
    """A netlink socket in the nftables notification group, for what concerns
    ``table``. ``ignore``: the port id of sesame's own netlink socket, whose changes are
    filtered out in the kernel."""

    def __init__(self, table: str, ignore: int | None = None) -> None:
        self.table = table
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink.NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))
            receive_buffer(self.sock, RCVBUF)
            if ignore is not None:
                self._attach(_filter(ignore))
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, nftables.NFNLGRP_NFTABLES)
        except OSError as exc:
            self.sock.close()
            raise SensorError(f"cannot watch nftables for changes: {exc.strerror}") from None
        self.sock.setblocking(False)

    def _attach(self, program: list[tuple[int, int, int, int]]) -> None:
        code = b"".join(struct.pack("HBBI", *insn) for insn in program)
        self._program = ctypes.create_string_buffer(code)  # must outlive the call
        fprog = struct.pack("HL", len(program), ctypes.addressof(self._program))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, watch: Watch) -> Verdict:
        """Judge the notifications waiting now, one datagram at a time (``watch``
        keeps what a transaction did until it ends); if some were lost (the socket's
        buffer overflowed), what changed is unknown."""
        verdict = Verdict()
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return verdict
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._drain()
                    return verdict | watch.lost()
                raise
            verdict = verdict | watch.judge(nftables.notices(data, self.table))

    def _drain(self) -> None:
        while True:
            try:
                self.sock.recv(1 << 16)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
