"""Capture the netlink messages the golden tests decode and re-encode: nft's own
requests (what ``nft`` sends, read with strace) and the kernel's messages (change
notifications, a first-knock answer, an NFLOG packet), in a throwaway namespace.

Run as root: ``python -m tests.golden.capture`` (needs nft and strace); it writes
tests/golden/netlink.json. The tests read that file and need neither root nor nft.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from sesame.sensor.nflog import NflogSensor
from sesame.wire import netlink as nl
from sesame.wire import nftables

OUT = Path(__file__).with_name("netlink.json")
NS = "sesame-golden"
TABLE = """table inet t {
  set grants4 { type ipv4_addr . inet_proto . inet_service; flags timeout; }
  map hits4 { type ipv4_addr : inet_proto . inet_service; flags dynamic, timeout; size 16; }
  chain input { type filter hook input priority 0; udp dport 7000 log group 77 prefix "noise"; }
}
"""
GRANT = '{ 192.0.2.7 . tcp . 22 timeout 30s comment "ssh alice" }'


def sent(*args: str) -> list[str]:
    """The netlink messages ``nft ARGS`` sends in its transaction (sendmsg), as hex,
    read from strace's dump of what it writes."""
    trace = subprocess.run(
        ["strace", "-e", "trace=sendmsg", "-e", "write=all", "nft", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    out = []
    for dump in re.split(r"^ \* \d+ bytes in buffer \d+$", trace, flags=re.M)[1:]:
        rows = re.findall(r"^ \| [0-9a-f]{5}  (.{48})", dump, flags=re.M)
        data = bytes.fromhex("".join(rows).replace(" ", ""))
        out += [data[h.body - 16 : h.end].hex() for h in nl.headers(data) if h.length]
    return out


def capture() -> dict[str, object]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["nft", "-f", "-"], input=TABLE, text=True, check=True)
    watch = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_NETFILTER)
    watch.bind((0, 0))
    watch.setsockopt(270, 1, nftables.NFNLGRP_NFTABLES)  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP
    out: dict[str, object] = {
        "nft_add_grant": sent("add", "element", "inet", "t", "grants4", GRANT)
    }
    watch.settimeout(2.0)
    out["kernel_notice_of_add"] = watch.recv(65536).hex()
    out["nft_delete_grant"] = sent(
        "delete", "element", "inet", "t", "grants4", "{ 192.0.2.7 . tcp . 22 }"
    )
    subprocess.run(
        ["nft", "add", "element", "inet", "t", "hits4", "{ 192.0.2.7 timeout 10s : tcp . 7000 }"],
        check=True,
    )
    ask = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_NETFILTER)
    ask.bind((0, 0))
    request = nftables.setelem(
        nftables.NFT_MSG_GETSETELEM, "t", "hits4", [nftables.element(bytes([192, 0, 2, 7]))], 1
    )
    ask.send(request)
    out["kernel_hit_answer"] = ask.recv(65536).hex()
    sensor = NflogSensor(77)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"golden", ("127.0.0.1", 7000))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        data = sensor.sock.recv(65536)
        if b"golden" in data:
            out["kernel_nflog_packet"] = data.hex()
            break
    return out


def main() -> int:
    if os.environ.get("SESAME_GOLDEN_NS") != NS:
        subprocess.run(["ip", "netns", "add", NS], check=True)
        try:
            env = os.environ | {"SESAME_GOLDEN_NS": NS}
            command = ["ip", "netns", "exec", NS, sys.executable, "-m", "tests.golden.capture"]
            return subprocess.run(command, env=env).returncode
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=True)
    captured = capture()
    OUT.write_text(json.dumps(captured, indent=1) + "\n")
    print(f"wrote {OUT}: {', '.join(captured)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
