"""fwknop's gateway mode, side by side: Debian's fwknop client asking through the server
for an internal host (FORCE_NAT, and its own -N requests), answered by sesame serving
an access.conf and by Debian's fwknopd on the same file, with the same result."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sesame.lab import EchoServer, blocked, reachable
from tests.helpers.fwknop import HMAC, KEY, debian_fwknop, private, serve_access
from tests.helpers.lab import require

FORCED = f"""\
SOURCE ANY
OPEN_PORTS tcp/2222
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
FORCE_NAT 10.0.5.20 22
FW_ACCESS_TIMEOUT 30
"""

ASKED = f"""\
SOURCE ANY
OPEN_PORTS tcp/2223
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
SESAME_NAT_DESTINATIONS 10.0.5.0/24
FW_ACCESS_TIMEOUT 30
"""


def internal(lab) -> EchoServer:
    inside = lab.topo.internal()
    return EchoServer(inside.netns, 22)


def fwknop(lab, *args: str) -> None:
    debian_fwknop(lab, "--key-base64-rijndael", KEY, "--key-base64-hmac", HMAC, *args)


def test_debian_fwknop_through_sesame_as_a_gateway(lab):
    service = internal(lab)
    try:
        daemon = serve_access(lab, FORCED + "\n" + ASKED)
        server = lab.server.ipv4
        assert blocked(lab.user.netns, server, 2222)
        mark = daemon.mark()
        fwknop(lab, "-A", "tcp/2222", "-N", "10.0.5.20:22")  # FORCE_NAT decides, as fwknopd
        daemon.wait_for(rf"opened door fwknop1 to {lab.user.ipv4}: 2222/tcp", 10, since=mark)
        assert reachable(lab.user.netns, server, 2222)
        assert blocked(lab.stranger.netns, server, 2222)
        fwknop(lab, "-A", "tcp/2223", "-N", "10.0.5.20:22")  # the client's own request
        daemon.wait_for(rf"opened door fwknop2 to {lab.user.ipv4}: 2223/tcp", 10, since=mark)
        assert reachable(lab.user.netns, server, 2223)
        assert blocked(lab.stranger.netns, server, 2223)
        rewrites = lab.nft("list", "map", "inet", "sesame", "dnat4")  # this source's alone
        assert (
            f"{lab.user.ipv4} . tcp . 2223 timeout" in rewrites and ": 10.0.5.20 . 22" in rewrites
        )
        mark = daemon.mark()  # sesame's own client asks the same way (-N)
        keys = ("--fwknop-key-base64", KEY, "--fwknop-hmac-key-base64", HMAC, "-U", "alice")
        ask = ("knock", "--fwknop", server, "-A", "tcp/2223", "-N", "10.0.5.20:22", *keys)
        lab.sesame(lab.user.netns, *ask)
        daemon.wait_for(rf"refreshed door fwknop2 for {lab.user.ipv4}: 2223/tcp", 10, since=mark)
        mark = daemon.mark()
        fwknop(lab, "-A", "tcp/2223", "-N", "10.9.9.9:22")  # outside the stanza's networks
        daemon.wait_for(r"dropped packet from \S+: fwknop nat not allowed$", 10, since=mark)
    finally:
        service.close()


def test_debian_fwknopd_on_the_same_file_opens_the_same_path(lab):
    service = internal(lab)
    try:
        with gateway_fwknopd(lab, FORCED):
            fwknop(lab, "-A", "tcp/2222", "-N", "10.0.5.20:22")  # the same request
            opened(lab, 2222)
            assert blocked(lab.stranger.netns, lab.server.ipv4, 2222)
    finally:
        service.close()


@contextmanager
def gateway_fwknopd(lab, access_text: str) -> Iterator[None]:
    """Debian's fwknopd as a gateway (ENABLE_IPT_FORWARDING), serving ``access_text``,
    with the rules a gateway has of its own: forwarding dropped but for replies, and
    nothing answering on port 2222 itself."""
    fwknopd = require("fwknopd")
    iptables = require("iptables")
    run = Path(tempfile.mkdtemp(dir=lab.tmp))
    conf = f"PCAP_INTF br0\nFWKNOP_RUN_DIR {run}\nENABLE_IPT_FORWARDING Y\n"
    fconf = private(run / "fwknopd.conf", conf)
    access = private(run / "access.conf", access_text)
    lab.run(lab.server.netns, iptables, "-P", "FORWARD", "DROP")
    replies = ("-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED")
    lab.run(lab.server.netns, iptables, *replies, "-j", "ACCEPT")
    closed = ("-A", "INPUT", "-i", "br0", "-p", "tcp", "--dport", "2222", "-j", "DROP")
    lab.run(lab.server.netns, iptables, *closed)
    out_path = run / "fwknopd.out"
    argv = [fwknopd, "-f", "-c", fconf, "-a", access, "-i", "br0", "-d", f"{run}/d"]
    argv += ["-p", f"{run}/pid"]
    with open(out_path, "w") as out:
        process = subprocess.Popen(
            ["ip", "netns", "exec", lab.server.netns, *argv], stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 20
            while "main event loop" not in out_path.read_text():
                assert process.poll() is None, out_path.read_text()
                assert time.monotonic() < deadline, out_path.read_text()
                time.sleep(0.05)
            assert blocked(lab.user.netns, lab.server.ipv4, 2222)
            yield
        finally:
            process.terminate()
            process.wait(10)


def opened(lab, port: int) -> None:
    """Wait until the user reaches the server's ``port`` (fwknopd adds rules a moment
    after the datagram)."""
    deadline = time.monotonic() + 20
    while not reachable(lab.user.netns, lab.server.ipv4, port, timeout=1):
        assert time.monotonic() < deadline, f"port {port} did not open"


def stanza(port: int, *extra: str) -> str:
    lines = ["SOURCE ANY", f"OPEN_PORTS tcp/{port}", f"KEY_BASE64 {KEY}"]
    return "\n".join([*lines, f"HMAC_KEY_BASE64 {HMAC}", *extra]) + "\n"


def test_masquerade_snat_and_no_dnat_as_fwknopd_names_them(lab):
    inside = lab.topo.internal(route_back=False)  # replies find the way only if rewritten
    services = [EchoServer(inside.netns, port) for port in (22, 23, 24, 25)]
    try:  # a destination each: masquerading is by destination
        lab.run(lab.user.netns, "ip", "route", "add", "10.0.5.0/24", "via", lab.server.ipv4)
        daemon = serve_access(
            lab,
            stanza(2231, "FORCE_NAT 10.0.5.20 22")
            + "\n"
            + stanza(2232, "FORCE_NAT 10.0.5.20 23", "FORCE_MASQUERADE Y")
            + "\n"
            + stanza(2233, "FORCE_NAT 10.0.5.20 24", "FORCE_SNAT 10.0.5.1")
            + "\n"
            + stanza(2234, "FORCE_NAT 10.0.5.20 25", "DISABLE_DNAT Y", "FORCE_MASQUERADE Y"),
        )
        mark = daemon.mark()
        for port in (2231, 2232, 2233, 2234):
            fwknop(lab, "-A", f"tcp/{port}")
        for n in (1, 2, 3, 4):
            daemon.wait_for(rf"opened door fwknop{n} to {lab.user.ipv4}", 10, since=mark)
        server = lab.server.ipv4
        assert blocked(lab.user.netns, server, 2231)  # rewritten, but no way back
        assert reachable(lab.user.netns, server, 2232)  # masqueraded
        assert reachable(lab.user.netns, server, 2233)  # SNAT-ed to the gateway's address
        assert blocked(lab.user.netns, server, 2234)  # DISABLE_DNAT: no rewrite ...
        assert reachable(lab.user.netns, "10.0.5.20", 25)  # ... the path alone
        assert blocked(lab.stranger.netns, server, 2232)
    finally:
        for service in services:
            service.close()


ALL = stanza(2222, "FORCE_NAT 10.0.5.20 22", "FORWARD_ALL Y")


def test_forward_all_as_fwknopd_does_it(lab):
    """FORWARD_ALL: all of the source's traffic to the server goes on to the NAT
    destination, port for port, and the source may pass the gateway anywhere."""
    inside = lab.topo.internal()
    services = [EchoServer(inside.netns, port) for port in (22, 23, 2222)]
    try:
        for client in (lab.user, lab.stranger):
            lab.run(client.netns, "ip", "route", "add", "10.0.5.0/24", "via", lab.server.ipv4)
        daemon = serve_access(lab, ALL)
        server = lab.server.ipv4
        assert blocked(lab.user.netns, "10.0.5.20", 22)
        mark = daemon.mark()
        fwknop(lab, "-A", "tcp/2222")
        daemon.wait_for(rf"opened door fwknop1 to {lab.user.ipv4}", 10, since=mark)
        for port in (2222, 23):  # the server's ports are the internal host's, for the user
            assert reachable(lab.user.netns, server, port)
        assert reachable(lab.user.netns, "10.0.5.20", 22)  # and the path itself
        assert blocked(lab.stranger.netns, server, 2222)
        assert blocked(lab.stranger.netns, "10.0.5.20", 22)
        daemon.stop()
        lab.daemon = None
        assert_fwknopd_agrees(lab)
    finally:
        for service in services:
            service.close()


def assert_fwknopd_agrees(lab) -> None:
    """Debian's fwknopd on the same file: the same ports reach the internal host."""
    lab.run(lab.server.netns, "nft", "delete", "table", "inet", "sesame")
    with gateway_fwknopd(lab, ALL):
        fwknop(lab, "-A", "tcp/2222")
        opened(lab, 2222)
        assert reachable(lab.user.netns, lab.server.ipv4, 23)
        assert blocked(lab.stranger.netns, lab.server.ipv4, 2222)


def test_nat_local_with_debian_fwknop(lab):
    """--nat-local --nat-port: the server's port 2240 leads to its own port 22 (the
    lab's echo service), for the knocker alone, where the stanza allows it."""
    text = stanza(2240, "SESAME_LOCAL_NAT Y").replace("tcp/2240", "tcp/2240, tcp/22")
    daemon = serve_access(lab, text)
    mark = daemon.mark()
    fwknop(lab, "-A", "tcp/22", "--nat-local", "--nat-port", "2240")
    daemon.wait_for(rf"opened door fwknop1 to {lab.user.ipv4}", 10, since=mark)
    assert reachable(lab.user.netns, lab.server.ipv4, 2240)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 2240)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)
