"""What an attacker's audit found, each as it was found: real packets from a stranger
in a namespace, against the real kernel firewall."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import subprocess
import time
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest
from bench import craft

from sesame.basics import Port
from sesame.client import spa_packet
from sesame.crypto import decode_key
from sesame.firewall.elements import set_of
from sesame.lab import blocked, knock_from, reachable
from sesame.netns import inside
from sesame.state import RECORD
from sesame.wire import spa
from tests.helpers.lab import CONFIG, require
from tests.helpers.spa import ALICE, BOB, SERVER_CONFIG, send, serve

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


# -- a key holder, the disk, the state directory, the table --------------------------------


def spa_from(user: str, key: str, source: str, stamp: float) -> bytes:
    aead = spa.cipher(decode_key(key))
    return spa.encode(user, aead, "ssh", ip_address(source), int(stamp), os.urandom(12))


def alice_knocks(lab, stamp: float | None = None) -> None:
    """One SPA datagram of alice's from the user, stamped now (or ``stamp``)."""
    payload = spa_from("alice", ALICE, lab.user.ipv4, stamp or time.time())
    send(lab.user.netns, lab.server.ipv4, payload)


def test_one_key_holder_flooding_valid_datagrams_locks_nobody_else_out(lab):
    """alice sends 3,000 valid datagrams stamped 59 s ahead as fast as she can: beyond
    her burst she is refused (one warning, not a line each); bob still gets in. (From
    one address the kernel would drop most of them: its per-source budget is lifted
    here, to hold sesame's per-user share to account.)"""
    text = SERVER_CONFIG.format(tmp=lab.tmp, alice=ALICE, bob=BOB, open_for=30)
    daemon = lab.serve(text.replace("[server]\n", "[server]\nspa_source_rate = 1000000\n"))
    mark = daemon.mark()
    stamp = time.time() + 59
    flood = [spa_from("alice", ALICE, lab.user.ipv4, stamp) for _ in range(3000)]
    with inside(lab.user.netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        for payload in flood:
            sock.sendto(payload, (lab.server.ipv4, 62201))
    payload = spa_from("bob", BOB, lab.stranger.ipv4, time.time())
    send(lab.stranger.netns, lab.server.ipv4, payload)
    daemon.wait_for(rf"opened door ssh to {lab.stranger.ipv4}: 22/tcp \(user bob\)", 15, since=mark)
    daemon.wait_for(r"alice sends more than 30 SPA datagrams at once", 10, since=mark)
    accepted = [line for line in daemon.lines[mark:] if "(user alice)" in line]
    assert 1 <= len(accepted) <= 30 + 15  # the burst, and one a second
    assert sum("over the user's rate" in line for line in daemon.lines[mark:]) > 2000


def test_a_full_disk_refuses_spa_and_recovers_without_a_restart(lab):
    state = Path(lab.tmp, "state")
    state.mkdir(mode=0o700)
    mount = ["mount", "-t", "tmpfs", "-o", "size=8k,mode=700", "tmpfs", str(state)]
    subprocess.run(mount, check=True)
    try:
        daemon = lab.serve(SERVER_CONFIG.format(tmp=lab.tmp, alice=ALICE, bob=BOB, open_for=30))
        filler = state / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as handle:
            handle.write(b"\0" * 65536)
        mark = daemon.mark()
        alice_knocks(lab)
        daemon.wait_for(r"cannot write .*replay \(No space left on device\)", 10, since=mark)
        assert lab.grants() == {}
        filler.unlink()
        alice_knocks(lab)
        daemon.wait_for(r"writable again", 10, since=mark)
        daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}", 10, since=mark)
        assert daemon.process.poll() is None
    finally:
        lab.daemon.stop()
        lab.daemon = None
        subprocess.run(["umount", str(state)], check=True)


def test_a_state_dir_others_may_change_is_refused_with_the_fix(lab):
    state = Path(lab.tmp, "state")
    state.mkdir()
    state.chmod(0o777)
    os.chown(state, 65534, 65534)
    path = lab.write_config(SERVER_CONFIG.format(tmp=lab.tmp, alice=ALICE, bob=BOB, open_for=30))
    result = lab.sesame(lab.server.netns, "serve", "-c", path, check=False)
    assert result.returncode == 1
    assert "belongs to uid 65534" in result.stderr and "chmod 700" in result.stderr
    assert "Traceback" not in result.stderr


def test_links_in_the_state_dir_are_never_written_through(lab):
    victim = Path(lab.tmp, "victim")
    victim.write_text("precious")
    state = Path(lab.tmp, "state")
    state.mkdir(mode=0o700)
    (state / "replay.new").symlink_to(victim)
    daemon = serve(lab)
    mark = daemon.mark()
    alice_knocks(lab)
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}", 10, since=mark)
    assert victim.read_text() == "precious"


def test_a_record_with_a_huge_expiry_does_not_stop_the_daemon(lab):
    state = Path(lab.tmp, "state")
    state.mkdir(mode=0o700)
    (state / "replay").write_bytes(RECORD.pack(1e300, 16, b"k" * 16))
    daemon = serve(lab)
    daemon.wait_for(r"replay was damaged", 5)
    mark = daemon.mark()
    alice_knocks(lab, time.time() + 1)
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}", 10, since=mark)


@pytest.mark.parametrize(
    "command",
    [
        "delete table inet sesame",
        "flush ruleset",
        "flush table inet sesame",
        "flush chain inet sesame guard",
        "flush set inet sesame guarded",
        "delete rule inet sesame input handle {handle}",
    ],
    ids=["table", "ruleset", "flush-table", "chain", "set", "rule"],
)
def test_a_deleted_or_flushed_gate_is_restored_with_its_grants(lab, command):
    daemon = lab.serve()
    lab.knock_open()
    left = lab.grants()[f"{lab.user.ipv4} 22/tcp"]
    if "{handle}" in command:
        listing = lab.nft("-a", "list", "chain", "inet", "sesame", "input")
        command = command.format(handle=re.search(r"jump guard # handle (\d+)", listing).group(1))
    mark = daemon.mark()
    changed = time.monotonic()
    lab.nft(*command.split())
    daemon.wait_for(r"changed table inet sesame: restored it with 1 live grants", 5, since=mark)
    assert time.monotonic() - changed < 1.0
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    assert 0 < lab.grants()[f"{lab.user.ipv4} 22/tcp"] <= left


def test_a_grant_deleted_by_hand_is_revoked_at_once(lab):
    """No pid file, no signal: the deletion itself tells sesame."""
    daemon = lab.serve()
    mark = lab.knock_open()
    home = set_of(IPv4Address(lab.user.ipv4), Port("tcp", 22))  # its shard's set
    assert home is not None
    lab.nft("delete", "element", "inet", "sesame", home, f"{{ {lab.user.ipv4} . tcp . 22 }}")
    daemon.wait_for(rf"closed door ssh for {lab.user.ipv4} \(revoked\)", 5, since=mark)
    assert "restored" not in "\n".join(daemon.lines[mark:])


def test_an_address_with_a_forged_log_line_is_refused_and_escaped(lab):
    """fwknop's -a with an IPv6 scope id holding a newline: no forged log line."""
    from sesame.wire import fwknop as fwknop_wire
    from tests.helpers.fwknop import HMAC, KEY, serve_access

    daemon = serve_access(lab, FORGE_ACCESS.format(key=KEY, hmac=HMAC))
    mark = daemon.mark()
    forged = "2001:db8::9%\nFORGED sesame[1]: opened door x to 6.6.6.6"  # no comma
    payload = fwknop_wire.encode(
        "alice",
        f"{forged},tcp/22",
        base64.b64decode(KEY),
        base64.b64decode(HMAC),
        timestamp=int(time.time()),
    )
    send(lab.user.netns, lab.server.ipv4, payload)
    daemon.wait_for(r"fwknop access request", 10, since=mark)
    assert not any(line.startswith("FORGED") for line in daemon.lines)
    assert lab.grants() == {}


FORGE_ACCESS = """\
SOURCE              ANY
OPEN_PORTS          tcp/22
KEY_BASE64          {key}
HMAC_KEY_BASE64     {hmac}
SESAME_ALLOW_OTHER_ADDRESS Y
"""
