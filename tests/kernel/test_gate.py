"""The whole path for real: packets in namespaces, the kernel's firewall, expiry."""

from __future__ import annotations

import json
import re
import signal
import socket
import time

import pytest

from sesame.lab import blocked, connect, echo, knock_from, reachable
from sesame.netns import inside
from tests.helpers.lab import CONFIG, require

OPEN = ("7000/tcp", "8000/tcp", "9000/udp")
CLOSE = ("9000/tcp", "8000/tcp", "7000/tcp")


def processed(lab, source: str, port: str, since: int) -> None:
    """Wait until the daemon has handled a knock from ``source`` to ``port``."""
    lab.daemon.wait_for(rf"knock from {source} to {port}$", 10, since=since)


def test_before_any_knock_nothing_answers(lab):
    lab.serve()
    server = lab.server.ipv4
    assert blocked(lab.user.netns, server, 22)
    assert blocked(lab.stranger.netns, server, 22)
    # A knock port sends neither SYN-ACK nor RST: the connect just times out.
    assert connect(lab.user.netns, server, 7000, timeout=1.0) is None
    # A UDP knock port sends no ICMP port unreachable back.
    with inside(lab.user.netns):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp:
        udp.settimeout(1.0)
        udp.connect((server, 9000))
        udp.send(b"x")
        with pytest.raises(TimeoutError):
            udp.recv(10)  # an ICMP error would raise ConnectionRefusedError


def test_sesame_knock_opens_to_the_knocker_only(lab):
    daemon = lab.serve()
    mark = daemon.mark()
    lab.sesame(lab.user.netns, "knock", lab.server.ipv4, "7000", "8000/tcp", "9000:udp")
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}: 22/tcp", 10, since=mark)
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)
    assert list(lab.grants()) == [f"{lab.user.ipv4} 22/tcp"]


def test_debian_knock_client_opens(lab):
    knock = require("knock")
    daemon = lab.serve()
    mark = daemon.mark()
    lab.run(lab.user.netns, knock, lab.server.ipv4, "7000", "8000", "9000:udp")
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}:", 10, since=mark)
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)


@pytest.mark.parametrize(
    "ports",
    [
        ("8000/tcp", "7000/tcp", "9000/udp"),  # wrong order
        ("7000/tcp", "8000/tcp", "9000/tcp", "9000/udp"),  # a wrong port in between
    ],
    ids=["wrong-order", "wrong-port-between"],
)
def test_wrong_knocks_open_nothing(lab, ports):
    daemon = lab.serve()
    mark = daemon.mark()
    knock_from(lab.user.netns, lab.server.ipv4, *ports)
    processed(lab, lab.user.ipv4, ports[-1], mark)
    assert lab.grants() == {}
    assert blocked(lab.user.netns, lab.server.ipv4, 22)
    assert "opened" not in "\n".join(daemon.lines[mark:])


def test_too_slow_opens_nothing(lab):
    daemon = lab.serve(seq_timeout=1)
    mark = daemon.mark()
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN, delay_ms=700)  # 1.4 s in all
    processed(lab, lab.user.ipv4, "9000/udp", mark)
    assert lab.grants() == {}
    assert "opened" not in "\n".join(daemon.lines[mark:])


ASCENDING = CONFIG.replace(
    '["7000/tcp", "8000/tcp", "9000/udp"]', '["7000/tcp", "7005/tcp", "7009/tcp"]'
)


@pytest.mark.parametrize("ports", ["6990-7010", "7000-7009"])
def test_a_sequential_port_scan_opens_nothing(lab, ports):
    daemon = lab.serve(ASCENDING.format(seq_timeout=30, open_for=30))
    mark = daemon.mark()
    lab.scan(lab.stranger.netns, ports)
    # The scanner is marked noisy in the kernel, so its later knocks never reach sesame.
    assert lab.stranger.ipv4 in lab.nft("list", "set", "inet", "sesame", "noisy4")
    # Everything the scan sent was handled before this marker knock from the user
    # (a second knock: a first one stays in the kernel).
    knock_from(lab.user.netns, lab.server.ipv4, "7000/tcp", "7005/tcp")
    processed(lab, lab.user.ipv4, "7005/tcp", mark)
    assert "opened" not in "\n".join(daemon.lines[mark:])
    assert lab.grants() == {}
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)
    # The same sequence knocked properly still works (for a source that did not scan).
    knock_from(lab.user.netns, lab.server.ipv4, "7000/tcp", "7005/tcp", "7009/tcp")
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}:", 10, since=mark)


def test_grant_expires_and_established_connection_survives(lab):
    open_for = 3
    daemon = lab.serve(open_for=open_for)
    mark = lab.knock_open()
    opened = time.monotonic()
    held = connect(lab.user.netns, lab.server.ipv4, 22)
    assert held is not None
    with held:
        assert echo(held)
        gone = lab.wait_no_grants(open_for + 5)
        assert gone - opened >= open_for - 0.5  # not before its time
        daemon.wait_for(r"closed door ssh for \S+ \(expired\)", 5, since=mark)
        assert echo(held, b"still here")
    assert blocked(lab.user.netns, lab.server.ipv4, 22)


def test_kill_9_the_grant_still_expires_on_time(lab):
    open_for = 3
    daemon = lab.serve(open_for=open_for)
    lab.knock_open()
    opened = time.monotonic()
    daemon.signal(signal.SIGKILL)
    daemon.process.wait(10)
    assert reachable(lab.user.netns, lab.server.ipv4, 22)  # the grant outlives the daemon
    gone = lab.wait_no_grants(open_for + 5)
    assert open_for - 0.5 <= gone - opened <= open_for + 2
    assert blocked(lab.user.netns, lab.server.ipv4, 22)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)  # still gated, fail closed


def test_knocking_twice_keeps_one_refreshed_grant(lab):
    daemon = lab.serve(open_for=30)
    mark = lab.knock_open()
    deadline = time.monotonic() + 10
    while (before := lab.grants()[f"{lab.user.ipv4} 22/tcp"]) > 29.5:  # let the clock run
        assert time.monotonic() < deadline
        time.sleep(0.05)
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN)
    daemon.wait_for("refreshed door ssh", 10, since=mark)
    [after] = lab.grants().values()
    assert after > before + 0.4  # the one element got a new deadline
    status = lab.sesame(lab.server.netns, "status", "-c", lab.tmp + "/sesame.toml", "--json")
    [grant] = json.loads(status.stdout)
    assert grant["address"] == lab.user.ipv4
    assert (grant["proto"], grant["port"], grant["door"]) == ("tcp", 22, "ssh")
    assert 25 <= grant["seconds_left"] <= 30
    text = lab.sesame(lab.server.netns, "status", "-c", lab.tmp + "/sesame.toml").stdout
    assert text.splitlines()[1].split()[:3] == [lab.user.ipv4, "22/tcp", "ssh"]


def test_unknock_closes_before_expiry(lab):
    daemon = lab.serve(open_for=60)
    mark = lab.knock_open()
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    knock_from(lab.user.netns, lab.server.ipv4, *CLOSE)
    daemon.wait_for(r"closed door ssh for \S+ \(unknock\)", 10, since=mark)
    assert lab.grants() == {}
    assert blocked(lab.user.netns, lab.server.ipv4, 22)


def test_ipv6_knock_opens_to_that_address_only(lab):
    daemon = lab.serve()
    mark = daemon.mark()
    lab.sesame(lab.user.netns, "knock", "-6", lab.server.ipv6, *OPEN)
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv6}:", 10, since=mark)
    assert list(lab.grants()) == [f"{lab.user.ipv6} 22/tcp"]
    assert reachable(lab.user.netns, lab.server.ipv6, 22)
    assert blocked(lab.user.netns, lab.server.ipv4, 22)  # not the user's IPv4
    assert blocked(lab.stranger.netns, lab.server.ipv6, 22)


def test_traffic_to_other_ports_never_reaches_sesame(lab):
    daemon = lab.serve()
    mark = daemon.mark()
    others = ["1", "23", "80", "443", "6999", "7001", "8080", "65535", "53/udp", "9001/udp"]
    knock_from(lab.stranger.netns, lab.server.ipv4, *others)
    # A marker: all before it is done (a second knock: a first one stays in the kernel).
    knock_from(lab.user.netns, lab.server.ipv4, "7000/tcp", "8000/tcp")
    processed(lab, lab.user.ipv4, "8000/tcp", mark)
    assert [line for line in daemon.lines[mark:] if "knock from" in line or "dropped" in line] == [
        daemon.lines[-1]
    ]


def test_interface_option_ignores_knocks_from_elsewhere(lab):
    daemon = lab.serve(
        CONFIG.replace("[server]", '[server]\ninterface = "eth9"').format(
            seq_timeout=5, open_for=30
        )
    )
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN)
    deadline = time.monotonic() + 10
    while "packets 3 " not in lab.nft("list", "chain", "inet", "sesame", "knock"):
        assert time.monotonic() < deadline, lab.nft("list", "chain", "inet", "sesame", "knock")
        time.sleep(0.05)
    assert not any("knock from" in line for line in daemon.lines)
    assert lab.grants() == {}


def test_another_table_that_drops_the_port_still_wins(lab):
    lab.serve()
    lab.run(lab.server.netns, "nft", "add table inet other")
    lab.run(
        lab.server.netns,
        "nft",
        "add chain inet other input { type filter hook input priority 0; policy accept; }",
    )
    lab.run(lab.server.netns, "nft", "add rule inet other input tcp dport 22 drop")
    lab.knock_open()
    assert blocked(lab.user.netns, lab.server.ipv4, 22)
    lab.run(lab.server.netns, "nft", "delete table inet other")
    assert reachable(lab.user.netns, lab.server.ipv4, 22)


def hits(lab) -> dict[str, str]:
    """The kernel's first-knock map: source -> ``proto/port`` (port 0: taken)."""
    text = lab.nft("list", "map", "inet", "sesame", "hits4")
    return {a: f"{n}/{p}" for a, p, n in re.findall(r"([0-9.]+) [^:,{]*: (tcp|udp) \. (\d+)", text)}


def test_junk_to_knock_ports_stays_in_the_kernel(lab):
    """A first knock from a source with nothing in progress is only remembered by the
    kernel, and any other knock from such a source is dropped unseen: floods of junk,
    even to knock ports, never wake sesame. The sequence still opens."""
    daemon = lab.serve()
    mark = daemon.mark()
    knock_from(lab.stranger.netns, lab.server.ipv4, "8000/tcp", "9000/udp", "7000/tcp")
    assert hits(lab) == {lab.stranger.ipv4: "7000/tcp"}
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN)
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}:", 10, since=mark)
    seen = [line.split(": ", 1)[1] for line in daemon.lines[mark:] if "knock from" in line]
    assert seen == [
        f"knock from {lab.user.ipv4} to 8000/tcp",
        f"knock from {lab.user.ipv4} to 9000/udp",
    ]
    # The user's first knock was read back, and sesame follows the user; the stranger's
    # first knock waits in the kernel.
    assert hits(lab) == {lab.stranger.ipv4: "7000/tcp"}
    assert lab.user.ipv4 in lab.nft("list", "set", "inet", "sesame", "follow4")


def test_a_wrong_knock_resets_a_sequence_the_kernel_began(lab):
    """knockd's rule holds across the kernel's first stage: after a wrong knock port,
    the rest of the sequence alone opens nothing (the first knock is not read twice)."""
    daemon = lab.serve()
    mark = daemon.mark()
    knock_from(lab.user.netns, lab.server.ipv4, "7000/tcp", "9000/tcp", "8000/tcp", "9000/udp")
    processed(lab, lab.user.ipv4, "9000/udp", mark)
    assert lab.grants() == {}
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN)
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}:", 10, since=mark)


def test_when_the_kernel_is_full_every_knock_goes_to_sesame(lab, tmp_path):
    """A flood of first knocks that fills the kernel's map switches sesame to seeing
    every knock (its own bounded table), so a user still gets in; calm switches back."""
    daemon = lab.serve(CONFIG.format(seq_timeout=2, open_for=30))
    mark = daemon.mark()
    listing = lab.nft("list", "map", "inet", "sesame", "hits4")
    size = int(re.search(r"size (\d+)", listing).group(1))
    junk = ",\n".join(f"10.{i >> 8 & 255}.{i & 255}.1 timeout 2s : tcp . 7000" for i in range(size))
    fill = tmp_path / "fill.nft"
    fill.write_text(f"add element inet sesame hits4 {{ {junk} }}\n")
    lab.run(lab.server.netns, "nft", "-f", str(fill))
    assert len(hits(lab)) == size
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN, delay_ms=100)
    daemon.wait_for(r"every knock now goes to sesame", 10, since=mark)
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}:", 10, since=mark)
    # No more first knocks: after the longest seq_timeout (the junk is gone by then),
    # the kernel takes over again.
    daemon.wait_for(r"calm again", 15, since=mark)
    assert hits(lab) == {}
    knock_from(lab.stranger.netns, lab.server.ipv4, "7000/tcp")
    assert hits(lab) == {lab.stranger.ipv4: "7000/tcp"}


def test_revoke_tells_the_daemon_which_closes_and_opens_anew(lab):
    pid_file = f"{lab.tmp}/sesame.pid"
    daemon = lab.serve(
        CONFIG.replace("[server]", f'[server]\npid_file = "{pid_file}"').format(
            seq_timeout=5, open_for=60
        )
    )
    mark = lab.knock_open()
    config = f"{lab.tmp}/sesame.toml"
    told = lab.sesame(lab.server.netns, "revoke", "-c", config, lab.user.ipv4).stdout
    assert "told sesame (pid" in told
    daemon.wait_for(rf"closed door ssh for {lab.user.ipv4} \(revoked\)", 10, since=mark)
    assert lab.grants() == {}
    mark = daemon.mark()
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN)
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}:", 10, since=mark)


def test_the_nftables_gate_keeps_every_promise_of_a_gate(lab):
    """The same checks the memory gate passes (sesame.testing.check_gate), against the
    kernel: one table, grant elements with their timeouts and holders, stale ones
    deleted on install, knock ports set."""
    import time as clock

    from sesame.firewall import NftGate
    from sesame.testing import check_gate, gate_config

    with inside(lab.server.netns):
        gate = NftGate("conformance")
        assert gate.netlink  # its socket, in the server's namespace
    try:
        check_gate(gate, gate_config("conformance"), clock.monotonic)
    finally:
        gate.close()


def test_thousands_of_grants_at_once_are_all_in_the_kernel(lab):
    """One apply of 5,000 elements (a cluster node catching up, a flood of valid SPA
    answered at once): every one is in the kernel, and nothing is refused. Their
    answers once overran the netlink socket's buffer (ENOBUFS, then a timeout)."""
    import time as clock
    from ipaddress import ip_address

    from sesame.basics import Port
    from sesame.engine.events import Element, Grant
    from sesame.firewall import NftGate
    from sesame.testing import gate_config

    with inside(lab.server.netns):
        gate = NftGate("many")
        assert gate.netlink  # its socket, in the server's namespace
    try:
        config = gate_config("many")
        gate.install(config)
        now = clock.monotonic()
        ssh = Port("tcp", 22)
        addresses = [ip_address(0x0A000000 + i) for i in range(1, 5001)]
        elements = [
            Element(a, ssh, now + 60, (Grant("ssh", a, (ssh,), now + 60),)) for a in addresses
        ]
        gate.apply(elements, now)
        assert len(gate.entries()) == 5000
    finally:
        gate.close()
        lab.nft("delete", "table", "inet", "many")


def test_every_kind_of_grant_element_reads_back_as_it_was_written(lab):
    """What a restart adopts: elements of every grant set (this host's port, another
    host's, a rewrite, fwknop's FORWARD_ALL with and without a rewrite), both families,
    read back over netlink with their port, holders and time left."""
    import time as clock

    from sesame.engine.events import Element, Grant
    from sesame.firewall import NftGate
    from sesame.testing import gate_config

    with inside(lab.server.netns):
        gate = NftGate("kinds")
        assert gate.netlink  # its socket, in the server's namespace
    try:
        gate.install(gate_config("kinds"))
        now = clock.monotonic()
        written = {}
        for i, (source, port) in enumerate(_every_kind()):
            held = (Grant("door", source, (port,), now + 100 + i, f"user{i}"),)
            written[source, port] = ("door", f"user{i}", 100 + i)
            gate.apply([Element(source, port, now + 100 + i, held)], now)
        assert len(written) == 12
        _read_back(gate, written)
    finally:
        gate.close()
        lab.nft("delete", "table", "inet", "kinds")


def _every_kind():
    """(source, port) of every kind of grant element, both families."""
    from ipaddress import ip_address

    from sesame.basics import Port

    ports = [
        Port("tcp", 22),
        Port("udp", 53),
        Port("tcp", 22, "10.0.5.20"),
        Port("tcp", 2222, "10.0.5.20", 22),
        Port("tcp", 1, "", 0, every=True),
        Port("tcp", 1, "10.0.5.20", 1, every=True),
        Port("tcp", 443, "2001:db8:5::20"),
        Port("udp", 5353, "2001:db8:5::20", 53),
        Port("tcp", 1, "2001:db8:5::20", 1, every=True),
    ]
    sources = [ip_address("198.51.100.2"), ip_address("2001:db8::2")]
    return [
        (source, port)
        for port in ports
        for source in sources
        if port.address is None or port.address.version == source.version
    ]


def _read_back(gate, written) -> None:
    """The gate's elements are exactly ``written``: (source, port) -> (door, user, left)."""
    read = {(e.address, e.port): (e.door, e.user, e.left) for e in gate.entries()}
    assert set(read) == set(written)
    for where, (door, user, left) in written.items():
        assert read[where][:2] == (door, user), where
        assert left - 5 < read[where][2] <= left, (where, read[where])


def test_new_grant_elements_are_created_and_replace_any_that_was_there(lab):
    """An element the engine takes for new (a grant just opened, its only holder) is
    only created, in every kind of grant set. Where one was there after all (kept from
    before, added by hand), the kernel refuses the creation, the transaction changes
    nothing, and the gate puts them all in place as any other: each with its new
    holder and timeout, none kept as it was."""
    import time as clock

    from sesame.engine.events import Element, Grant
    from sesame.firewall import NftGate, netlink
    from sesame.testing import gate_config

    with inside(lab.server.netns):
        gate = NftGate("created")
        assert gate.netlink
    try:
        gate.install(gate_config("created"))
        now = clock.monotonic()
        kinds = _every_kind()

        def new(door: str, seconds: float) -> list[Element]:
            out = []
            for i, (source, port) in enumerate(kinds):
                held = Grant(door, source, (port,), now + seconds + i, f"user{i}")
                out.append(Element(source, port, held.expires, (held,), new=True))
            return out

        first = {(s, p): ("first", f"user{i}", 100 + i) for i, (s, p) in enumerate(kinds)}
        gate.apply(new("first", 100), now)  # all created at once
        _read_back(gate, first)
        with pytest.raises(netlink.Existed):  # all there: the creation is refused whole
            gate.netlink.apply_units(netlink.grant_steps(new("second", 300), now))
        _read_back(gate, first)
        gate.apply(new("second", 300), now)  # refused, then replaced
        _read_back(
            gate, {(s, p): ("second", f"user{i}", 300 + i) for i, (s, p) in enumerate(kinds)}
        )
    finally:
        gate.close()
        lab.nft("delete", "table", "inet", "created")
