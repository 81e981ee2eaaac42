"""What an attacker's audit found, each as it was found: real packets from a stranger
in a namespace, against the real kernel firewall."""

from __future__ import annotations

import re
import socket
from ipaddress import ip_address

import pytest
from bench import craft

from sesame.client import spa_packet
from sesame.crypto import decode_key
from sesame.lab import blocked, knock_from
from tests.kernel.conftest import CONFIG, require
from tests.kernel.test_spa import ALICE, serve

TCP_ONLY = CONFIG.replace(
    '["7000/tcp", "8000/tcp", "9000/udp"]', '["7000/tcp", "8000/tcp", "9000/tcp"]'
).format(seq_timeout=30, open_for=30)


def nmap(lab, *args: str, source: str | None = None, target: str | None = None) -> None:
    """An nmap scan of the server from the stranger, fast and without retries."""
    argv = [require("nmap"), "-n", "-Pn", "--max-retries", "0", "--min-rate", "3000", *args]
    if source is not None:
        argv += ["-S", source, "-e", "eth0"]
    target = target or lab.server.ipv4
    lab.run(lab.stranger.netns, *argv, *(["-6"] if ":" in target else []), target)


def settled(lab, daemon, since: int) -> None:
    """Wait until everything sent before is handled: the user's marker knock (a second
    knock of the door: a first one stays in the kernel) has reached sesame."""
    knock_from(lab.user.netns, lab.server.ipv4, "7000/tcp", "8000/tcp")
    daemon.wait_for(rf"knock from {lab.user.ipv4} to 8000/tcp$", 10, since=since)


def opened_for(daemon, address: str, since: int) -> bool:
    return any(f"opened door ssh to {address}:" in line for line in daemon.lines[since:])


def test_a_bad_checksum_sweep_opens_nothing(lab):
    """nmap --badsum: conntrack calls every packet invalid, which used to be neither
    noise nor anything else; now it marks the scanner and never counts as a knock."""
    daemon = lab.serve(TCP_ONLY)
    mark = daemon.mark()
    nmap(lab, "--badsum", "-sS", "-r", "-p", "1-9100")
    settled(lab, daemon, mark)
    assert not opened_for(daemon, lab.stranger.ipv4, mark)
    assert lab.grants() == {}
    assert lab.stranger.ipv4 in lab.nft("list", "set", "inet", "sesame", "noisy4")


def test_knocks_with_a_bad_checksum_do_not_count(lab):
    """The sequence itself, with wrong checksums, from a source that touched nothing
    else: the host's TCP would drop those packets, and so does sesame."""
    daemon = lab.serve(TCP_ONLY)
    mark = daemon.mark()
    with craft.Sender(lab.stranger.netns) as raw:
        for good, source in ((False, lab.stranger.ipv4), (True, lab.user.ipv4)):
            for port in (7000, 8000, 9000):
                raw.send(craft.packet(source, lab.server.ipv4, craft.TCP, port, good=good))
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}:", 10, since=mark)
    assert not opened_for(daemon, lab.stranger.ipv4, mark)
    assert "ct state invalid counter packets 3 " in lab.nft(
        "list", "chain", "inet", "sesame", "knock"
    )


def fill_noisy(lab, tmp_path, family: str = "4") -> int:
    """Fill the scanner set of a family to its size, as a flood of forged SYNs would."""
    listing = lab.nft("list", "set", "inet", "sesame", f"noisy{family}")
    size = int(re.search(r"size (\d+)", listing).group(1))
    if family == "4":
        junk = (f"100.{64 + (i >> 16)}.{i >> 8 & 255}.{i & 255}" for i in range(size))
    else:
        junk = (f"2001:db8:ffff::{i >> 16:x}:{i & 0xFFFF:x}" for i in range(size))
    fill = tmp_path / f"noisy{family}.nft"
    fill.write_text(
        f"add element inet sesame noisy{family} {{ "
        + ", ".join(f"{a} timeout 5m" for a in junk)
        + " }\n"
    )
    lab.run(lab.server.netns, "nft", "-f", str(fill))
    return size


@pytest.mark.parametrize("family", ["4", "6"])
def test_a_full_scanner_set_still_stops_an_ascending_scan(lab, tmp_path, family):
    """With the scanner set full, the kernel cannot mark the scanner, and says so; its
    knock attempt still ends at the first other port it touches, so a plain ascending
    scan from a fresh address opens nothing, and the user still gets in."""
    daemon = lab.serve(TCP_ONLY)
    fill_noisy(lab, tmp_path, family)
    mark = daemon.mark()
    server = lab.server.ipv4 if family == "4" else lab.server.ipv6
    stranger = lab.stranger.ipv4 if family == "4" else lab.stranger.ipv6
    nmap(lab, "-sS", "-r", "-p", "6990-9010", target=server)
    daemon.wait_for(r"the scanner sets are full", 10, since=mark)
    settled(lab, daemon, mark)
    assert not opened_for(daemon, stranger, mark)
    assert stranger not in lab.nft("list", "set", "inet", "sesame", f"noisy{family}")
    assert blocked(lab.stranger.netns, server, 22)
    lab.knock_open("7000/tcp", "8000/tcp", "9000/tcp")


@pytest.mark.parametrize("scan", ["-sF", "-sN", "-sX", "-sA"])
def test_knockd_mode_a_flag_scan_opens_nothing(lab, scan):
    """A knockd door without TCPFlags takes any TCP packet as a knock; a FIN, NULL,
    Xmas or ACK scan is invalid to conntrack (or picked up as new) on every other port,
    and marks the scanner all the same."""
    path = lab.write_config(
        "[options]\n  Interface = br0\n\n[openSSH]\n  sequence = 7000,8000,9000\n"
        "  seq_timeout = 30\n  command = /bin/true %IP%\n"
    )
    from sesame.lab import DaemonProcess

    daemon = lab.daemon = DaemonProcess(lab.server.netns, path, "-v", source="--knockd-conf")
    daemon.start()
    mark = daemon.mark()
    nmap(lab, scan, "-r", "-p", "6990-9010")
    knock_from(lab.user.netns, lab.server.ipv4, "7000/tcp", "8000/tcp", "9000/tcp")
    daemon.wait_for(rf"opened door openSSH to {lab.user.ipv4}", 10, since=mark)
    assert not any(lab.stranger.ipv4 in line and "opened" in line for line in daemon.lines)
    assert lab.stranger.ipv4 in lab.nft("list", "set", "inet", "sesame", "noisy4")


@pytest.mark.parametrize(
    "headers",
    [(craft.HOP,), (craft.DESTINATION,), (craft.HOP, craft.ROUTING, craft.DESTINATION)],
    ids=["hop-by-hop", "destination", "three"],
)
def test_ipv6_extension_headers_do_not_hide_a_knock_or_an_spa(lab, headers):
    """The kernel's rules find TCP and UDP behind extension headers; so does sesame."""
    daemon = serve(lab)
    mark = daemon.mark()
    user, server = lab.user.ipv6, lab.server.ipv6
    payload = spa_packet("alice", decode_key(ALICE), "ssh", ip_address(user))
    with craft.Sender(lab.user.netns, socket.AF_INET6) as raw:
        raw.send(craft.packet(user, server, craft.UDP, 62201, payload=payload, headers=headers))
    daemon.wait_for(rf"opened door ssh to {user}: 22/tcp \(user alice\)", 10, since=mark)
    assert "not tcp or udp" not in "\n".join(daemon.lines[mark:])


def test_ipv6_extension_headers_before_knocks(lab):
    daemon = lab.serve(TCP_ONLY)
    mark = daemon.mark()
    user, server = lab.user.ipv6, lab.server.ipv6
    with craft.Sender(lab.user.netns, socket.AF_INET6) as raw:
        for port in (7000, 8000, 9000):
            raw.send(craft.packet(user, server, craft.TCP, port, headers=(craft.DESTINATION,)))
    daemon.wait_for(rf"opened door ssh to {user}:", 10, since=mark)
