"""The rendered nft commands and the kernel's answers, without the kernel."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address, ip_address

from hypothesis import given
from hypothesis import strategies as st

from sesame import config
from sesame.basics import Port
from sesame.doors import Door
from sesame.engine import Closed, Grant, Opened
from sesame.engine.events import Element
from sesame.firewall import commands, elements, netlink, ruleset, watch
from sesame.firewall.watch import GRANT_SETS
from sesame.wire import nftables
from sesame.wire.nftables import Elem, element
from tests.helpers.configs import EXAMPLE

A = ip_address("198.51.100.2")
GRANT = Grant("ssh", A, (Port("tcp", 22),), 30.0)


def test_install_renders_sets_and_chains():
    text = ruleset.install(config.parse(EXAMPLE))
    assert "add element inet sesame guarded { tcp . 22 }" in text
    assert (
        "add element inet sesame knock { tcp . 7000, tcp . 8000, tcp . 9000, udp . 9000 }" in text
    )
    assert "log group 5155" in text
    assert "update @noisy4 { ip saddr timeout 60s }" in text
    assert "flush set inet sesame grants4" not in text  # live grants survive a reinstall


def test_interface_filter():
    text = ruleset.install(config.parse(EXAMPLE.replace("# interface", "interface")))
    assert 'knock iifname != "eth0" counter drop' in text


def test_opened_grant_replaces_any_same_element_in_one_transaction():
    steps = netlink.grant_steps([Element(A, Port("tcp", 22), 30.0, (GRANT,))], now=0.0)
    key = A.packed + bytes([6, 0, 0, 0, 0, 22, 0, 0])  # address . tcp . 22, as nft lays it out
    assert steps == [
        [
            (netlink.NEWSETELEM, "grants4_2", [element(key)]),  # its shard (.2)
            (netlink.DELSETELEM, "grants4_2", [element(key)]),
            (netlink.NEWSETELEM, "grants4_2", [element(key, 30000, "ssh")]),
        ]
    ]


def test_a_new_element_is_only_created_and_without_trust_replaced():
    """A grant just opened, its element's only holder: one message that creates it (and
    that the kernel refuses if it is there); without ``trust``, the same as any other."""
    held = Element(A, Port("tcp", 22), 30.0, (GRANT,), new=True)
    closing = Element(ip_address("198.51.100.6"), Port("tcp", 22), None, new=True)
    key = A.packed + bytes([6, 0, 0, 0, 0, 22, 0, 0])
    gone = closing.address.packed + bytes([6, 0, 0, 0, 0, 22, 0, 0])
    assert netlink.grant_steps([held, closing], now=0.0) == [
        [(nftables.CREATE_SETELEM, "grants4_2", [element(key, 30000, "ssh")])],
        [  # nobody holds it: never new
            (netlink.NEWSETELEM, "grants4_2", [element(gone)]),
            (netlink.DELSETELEM, "grants4_2", [element(gone)]),
        ],
    ]
    assert netlink.grant_steps([held], now=0.0, trust=False) == netlink.grant_steps(
        [dataclasses.replace(held, new=False)], now=0.0
    )


def test_create_is_a_newsetelem_the_kernel_refuses_where_the_element_is():
    def flags(message: bytes) -> tuple[int, int]:
        kind, flags = int.from_bytes(message[4:6], "little"), int.from_bytes(message[6:8], "little")
        return kind & 0xFF, flags

    create = nftables.setelem(nftables.CREATE_SETELEM, "sesame", "grants4", [element(b"k")], 1)
    add = nftables.setelem(nftables.NFT_MSG_NEWSETELEM, "sesame", "grants4", [element(b"k")], 1)
    assert flags(create) == (nftables.NFT_MSG_NEWSETELEM, flags(add)[1] | 0x200)  # NLM_F_EXCL
    assert create[8:] == add[8:]


def test_closing_is_idempotent_and_v6_goes_to_grants6():
    address = ip_address("2001:db8::4")
    steps = netlink.grant_steps([Element(address, Port("tcp", 22), None)], now=0.0)
    key = address.packed + bytes([6, 0, 0, 0, 0, 22, 0, 0])
    assert steps == [
        [
            (netlink.NEWSETELEM, "grants6", [element(key)]),
            (netlink.DELSETELEM, "grants6", [element(key)]),
        ]
    ]


def test_holders_are_recorded_latest_first_with_how_much_earlier_they_end():
    spa = Grant("admin", A, (Port("tcp", 22),), 60.0, "alice")
    plain = Grant("ssh", A, (Port("tcp", 22),), 10.5)
    held = Element(A, Port("tcp", 22), 60.0, (spa, plain))
    note = elements.comment(held)
    assert note == "admin alice,ssh -49.5"
    assert elements.holders(note) == (
        elements.Holder("admin", "alice"),
        elements.Holder("ssh", "", 49.5),
    )
    assert elements.holders("ssh") == (elements.Holder("ssh"),)  # as sesame wrote before
    many = tuple(Grant(f"door{i:02}", A, (Port("tcp", 22),), 60.0 - i, "u" * 30) for i in range(9))
    assert len(elements.comment(Element(A, Port("tcp", 22), 60.0, many)).encode()) <= 127
    entry = elements.Entry(A, Port("tcp", 22), "admin", 59.0, "alice", elements.holders(note))
    grants = {g.door: g for g in elements.to_grants([entry], now=100.0)}
    assert grants["admin"].expires == 159.0 and grants["admin"].user == "alice"
    assert grants["ssh"].expires == 109.5


def test_following_sources_forgets_their_first_knocks():
    steps = netlink.follow_steps([A], 5.0, forget=True)
    assert steps == [
        (netlink.DELSETELEM, "hits4", [element(A.packed)]),
        (netlink.NEWSETELEM, "follow4", [element(A.packed, 5000)]),
    ]


def listed(*items: tuple[object, Port, int, str]) -> dict[str, list[Elem]]:
    """Grant elements as the kernel lists them: (source, port, ms left, comment)."""
    out: dict[str, list[Elem]] = {}
    for source, port, left, note in items:
        name, key, data = netlink.located(source, port)
        out.setdefault(name, []).append(Elem(key, data or b"", left + 1000, left, note))
    return out


def read(sets: dict[str, list[Elem]]) -> list[elements.Entry]:
    return [e for name, found in sets.items() for e in netlink.entries(name, found)]


def test_parse_kernel_grants():
    entries = read(listed((A, Port("tcp", 22), 12_000, "ssh"), (A, Port("udp", 53), 3_000, "ssh")))
    assert [(str(e.address), str(e.port), e.door, e.left) for e in entries] == [
        ("198.51.100.2", "22/tcp", "ssh", 12.0),
        ("198.51.100.2", "53/udp", "ssh", 3.0),
    ]
    # Elements that end apart are grants apart, each with its own deadline (an fwknop
    # stanza's ports asked for one by one); a door's ports end together: one grant.
    apart = elements.to_grants(entries, now=100.0)
    assert [(g.ports, g.expires) for g in apart] == [
        ((Port("tcp", 22),), 112.0),
        ((Port("udp", 53),), 103.0),
    ]
    together = [dataclasses.replace(e, left=12.2) for e in entries]
    [grant] = elements.to_grants(together, now=100.0)
    assert grant.ports == (Port("tcp", 22), Port("udp", 53)) and grant.expires == 112.2


def test_commands_substitute_values_as_single_arguments():
    door = Door(
        name="ssh",
        sequence=(Port("tcp", 1),),
        open=(Port("tcp", 22), Port("udp", 60001)),
        start_command=(
            "/usr/sbin/iptables",
            "-s",
            "{ip}",
            "--dport",
            "{port}",
            "-p",
            "{proto}",
            "-m",
            "comment",
            "--comment",
            "sesame {door}",
        ),
        stop_command=("/bin/true",),
    )
    grant = Grant("ssh", A, door.open, 1.0)
    assert commands.plan(Opened(grant), door) == [
        [
            "/usr/sbin/iptables",
            "-s",
            "198.51.100.2",
            "--dport",
            "22",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            "sesame ssh",
        ],
        [
            "/usr/sbin/iptables",
            "-s",
            "198.51.100.2",
            "--dport",
            "60001",
            "-p",
            "udp",
            "-m",
            "comment",
            "--comment",
            "sesame ssh",
        ],
    ]
    assert commands.plan(Closed(grant, "expired"), door) == [["/bin/true"], ["/bin/true"]]


def test_substitution_does_not_reinterpret_values():
    assert commands.substitute(("/bin/echo", "{ip}{door}"), {"ip": "{door}", "door": "x"}) == [
        "/bin/echo",
        "{door}x",
    ]


def test_knocks_chain_modes():
    conf = config.parse(EXAMPLE)
    every = "\n".join(ruleset.knocks(conf, None))
    # Every knock to sesame, and each knocking source followed, so its noise ends its
    # attempt; with no room to follow it, its knocks are dropped unseen (fail closed).
    follow = "update @follow4 { ip saddr timeout 5000ms } counter log group 5155 snaplen 2048 drop"
    assert f"add rule inet sesame knocks {follow}" in every
    assert 'log prefix "follow-full" group 5155 snaplen 2048 drop' in every
    assert every.splitlines()[-1] == "add rule inet sesame knocks counter drop"
    kernel = "\n".join(ruleset.knocks(conf, [Port("tcp", 7000)]))
    assert "add element inet sesame first { tcp . 7000 }" in kernel
    remember = "update @hits4 { ip saddr timeout 5000ms : meta l4proto . th dport }"
    assert f"knocks meta l4proto . th dport @first {remember} counter drop" in kernel
    assert "knocks ip saddr @hits4 counter log group 5155" in kernel
    assert "knocks ip saddr @follow4 counter log group 5155" in kernel
    assert "knocks ip6 saddr @follow6 meta l4proto . th dport @first update @follow6" in kernel
    assert 'log prefix "full" group 5155' in kernel
    assert kernel.splitlines()[-1] == "add rule inet sesame knocks counter drop"


def test_noise_of_any_conntrack_state_marks_and_ends_attempts():
    text = ruleset.install(config.parse(EXAMPLE))
    # Not only new flows: a bad checksum or a FIN scan is "invalid" to conntrack.
    noise = "input meta pkttype host ct state new,invalid,untracked meta l4proto { tcp, udp }"
    assert f"add rule inet sesame {noise} jump noise" in text
    assert "noise ip saddr @follow4 delete @follow4 { ip saddr } counter log prefix" in text
    assert 'noise ip saddr @hits4 counter log prefix "noise"' in text
    assert "noise update @noisy4 { ip saddr timeout 60s } return" in text
    assert 'log prefix "noisy-full"' in text
    # Invalid packets are never knocks nor SPA datagrams.
    assert "add rule inet sesame knock ct state invalid counter drop" in text
    invalid = "input udp dport @spa ct state invalid counter name spa_invalid drop"
    assert f"add rule inet sesame {invalid}" in text
    # SPA datagrams to this host are judged on arrival, before conntrack (each would be
    # a connection made and freed for nothing), routing and the input hook; those to a
    # broadcast address in input, tracked (an invalid one dropped first).
    assert "add chain inet sesame raw { type filter hook prerouting priority raw;" in text
    spa = 'raw udp dport @spa iif != "lo" fib daddr type local jump spa'
    assert f"add rule inet sesame {spa}" in text
    assert "prerouting udp dport @spa" not in text
    assert "add rule inet sesame spa ct state" not in text
    assert text.index(invalid) < text.index("add rule inet sesame input udp dport @spa jump spa")


def test_parse_kernel_paths_and_rewrites():
    sets = listed(
        (A, Port("tcp", 22, "10.0.5.20"), 20_000, "inside"),
        (A, Port("tcp", 2222, "10.0.5.20", 22), 9_000, "nat alice"),
    )
    found = [(str(e.address), str(e.port), e.door, e.user) for e in read(sets)]
    assert found == [
        ("198.51.100.2", "10.0.5.20:22/tcp", "inside", ""),
        ("198.51.100.2", "2222/tcp->10.0.5.20:22", "nat", "alice"),
    ]
    # ... and deleting them: a map's element by its key alone.
    [path] = [e for e in read(sets) if not e.port.to]
    [rewrite] = [e for e in read(sets) if e.port.to]
    assert elements.remove("sesame", rewrite.address, [rewrite.port]) == [
        "add element inet sesame dnat4 { 198.51.100.2 . tcp . 2222 : 10.0.5.20 . 22 }",
        "delete element inet sesame dnat4 { 198.51.100.2 . tcp . 2222 }",
    ]
    assert elements.remove("sesame", path.address, [path.port])[1] == (
        "delete element inet sesame paths4 { 198.51.100.2 . 10.0.5.20 . tcp . 22 }"
    )


def test_forward_all_elements_by_source_alone():
    sets = listed(
        (A, Port("tcp", 1, "", 0, every=True), 20_000, "fwknop1 alice"),
        (A, Port("tcp", 1, "10.0.5.20", 1, every=True), 20_000, "fwknop1 alice"),
    )
    found = read(sets)
    assert [(str(e.port), e.door, e.user) for e in found] == [
        (":*", "fwknop1", "alice"),
        ("*->10.0.5.20:*", "fwknop1", "alice"),
    ]
    assert [netlink.located(e.address, e.port)[0] for e in found] == ["anywhere4", "everything4"]
    assert elements.remove("sesame", found[1].address, [found[1].port]) == [
        "add element inet sesame everything4 { 198.51.100.2 : 10.0.5.20 }",
        "delete element inet sesame everything4 { 198.51.100.2 }",
    ]


def test_each_spa_port_passes_the_names_of_the_users_with_a_door_on_it():
    """Per port and per name length, one rule with the users who may use that port;
    a user with no door on a port is not among its names; the budget follows settings."""
    key = "A" * 43 + "="
    text = ruleset.install(
        config.parse(
            "[server]\nspa_source_rate = 7\nspa_source_burst = 9\n"
            '[[door]]\nname = "a"\nspa_port = 1001\nopen = ["22/tcp"]\n'
            '[[door]]\nname = "b"\nspa_port = 1002\nopen = ["22/tcp"]\n'
            f'[[user]]\nname = "al"\nkey = "{key}"\ndoors = ["a"]\n'
            f'[[user]]\nname = "bo"\nkey = "{key}"\ndoors = ["a", "b"]\n'
            f'[[user]]\nname = "cyd"\nkey = "{key}"\ndoors = ["b"]\n'
        )
    )
    rules = [line for line in text.splitlines() if "goto spa_known" in line]
    al, bo, cyd = (n.encode().hex() for n in ("al", "bo", "cyd"))
    assert any(
        "udp dport { 1001 }" in r and "0x0102" in r and f"{{ 0x{al}, 0x{bo} }}" in r for r in rules
    )
    assert any("udp dport { 1002 }" in r and f"{{ 0x{bo} }}" in r for r in rules)
    assert any("udp dport { 1002 }" in r and "0x0103" in r and f"0x{cyd}" in r for r in rules)
    assert not any("1001" in r and cyd in r for r in rules)
    assert "limit rate over 7/second burst 9 packets" in text
    assert text.index("goto spa_known") < text.index("spa counter name spa_unknown drop")
    assert f"size {ruleset.SPA_SOURCES}; timeout 3000ms;" in text


@given(st.integers(1, 1_000_000), st.integers(1, 1_000_000))
def test_a_sources_budget_is_forgotten_only_once_it_would_be_whole_again(rate, burst):
    """The kernel forgets a source's SPA budget after spa_forget milliseconds of silence:
    never before its bucket has filled up again (burst / rate seconds), so forgetting
    it lets no datagram more through; at least three seconds, at most one more."""
    forget = ruleset.spa_forget(rate, burst)
    assert forget >= 3000 and forget >= burst * 1000 / rate + 1000
    assert forget <= max(3000, burst * 1000 / rate + 1001)


def test_many_grants_go_64_to_a_message_and_the_later_decision_wins():
    many = [  # one shard's sources: their elements go to one set
        Element(ip_address(f"198.51.{100 + i // 64}.{i % 64 * 4}"), Port("tcp", 22), 30.0, (GRANT,))
        for i in range(200)
    ]
    twice = Element(ip_address("198.51.100.4"), Port("tcp", 22), None)  # closed after all
    units = netlink.grant_steps([*many, twice], now=0.0)
    assert [len(u) for u in units] == [3, 3, 3, 3]
    assert [len(u[0][2]) for u in units] == [64, 64, 64, 8]
    assert sum(len(u[2][2]) for u in units) == 199  # the one closed is added, deleted
    keys = [k for u in units for k in u[1][2]]
    assert len(keys) == len(set(keys)) == 200


addresses = st.one_of(
    st.integers(1, 2**32 - 1).map(IPv4Address), st.integers(1, 2**128 - 1).map(IPv6Address)
)


@given(addresses, addresses, st.sampled_from(["tcp", "udp"]), st.integers(1, 65535), st.data())
def test_a_grant_element_reads_back_as_the_port_it_was_written_for(source, other, proto, n, data):
    host = str(other) if other.version == source.version else ""
    kinds = [Port(proto, n), Port("tcp", 1, "", 0, every=True)]
    if host:
        kinds += [Port(proto, n, host), Port(proto, n, host, n), Port("tcp", 1, host, 1, True)]
    port = data.draw(st.sampled_from(kinds))
    name, key, value = netlink.located(source, port)
    assert netlink.unlocated(name, key, value or b"") == (source, port)


def sized(sizes: tuple[int, ...]) -> st.SearchStrategy[bytes]:
    """Bytes of any of ``sizes`` (the shapes grant elements have), or of any size."""
    exact = st.sampled_from(sizes).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    return st.one_of(exact, st.binary(max_size=48))


@given(st.sampled_from(sorted(GRANT_SETS)), sized((4, 12, 16, 24, 40)), sized((0, 4, 8, 16, 20)))
def test_an_element_of_no_known_shape_is_left_out_not_a_crash(name, key, value):
    found = netlink.unlocated(name, key, value)
    if found is not None:  # a shape that fits: it writes back as the same bytes
        assert netlink.located(*found) == (name, key, value or None)


def test_a_hosts_grants_are_kept_in_four_sets_by_the_last_byte_of_their_source():
    ssh = Port("tcp", 22)
    homes = [elements.set_of(ip_address(f"192.0.2.{i}"), ssh) for i in range(8)]
    assert homes == ["grants4", "grants4_1", "grants4_2", "grants4_3"] * 2
    assert elements.set_of(ip_address("2001:db8::7"), ssh) == "grants6_3"
    assert {watch.shard_of(name) for name in GRANT_SETS} == {None, 0, 1, 2, 3}
    text = ruleset.install(config.parse(EXAMPLE))
    for n, ip, low in (("4", "ip", "0.0.0."), ("6", "ip6", "::")):
        for shard, name in enumerate(watch.grant_set(n, k) for k in range(watch.SHARDS)):
            assert f"add set inet sesame {name} {{ type ipv{n}_addr . inet_proto" in text
            assert (
                f"guard {ip} saddr & {low}3 == {low}{shard}"
                f" {ip} saddr . meta l4proto . th dport @{name} accept"
            ) in text


def test_grant_elements_in_another_shards_set_are_moved_to_theirs():
    """A table from before grants were sharded holds them all in grants4: the listing
    finds those of other shards, and moving them keeps each one's time and holders."""
    ssh = Port("tcp", 22)

    def body(name: str, *sources: str) -> bytes:
        found = [
            element(netlink.located(ip_address(s), ssh)[1], 5000, "ssh alice") for s in sources
        ]
        return nftables.setelem(netlink.NEWSETELEM, "sesame", name, found, 1)[16:]

    old, home = body("grants4", "192.0.2.4", "192.0.2.5"), body("grants4_1", "192.0.2.9")
    listed = netlink.listed({"grants4": [old], "grants4_1": [home]})
    assert listed.left == 3 and [name for name, _ in listed.strays] == ["grants4"]
    key = netlink.located(ip_address("192.0.2.5"), ssh)[1]
    assert netlink.move_steps(listed.strays) == [
        [
            (netlink.NEWSETELEM, "grants4_1", [element(key, 5000, "ssh alice")]),
            (netlink.NEWSETELEM, "grants4", [element(key)]),  # (gone meanwhile: no fault)
            (netlink.DELSETELEM, "grants4", [element(key)]),
        ]
    ]
    assert {(str(e.address), e.user) for e in listed.rest()} == {
        ("192.0.2.4", "alice"),
        ("192.0.2.5", "alice"),
        ("192.0.2.9", "alice"),
    }
