"""The daemon's wiring without the kernel: logged packets in, gate changes out."""

from __future__ import annotations

import base64
import itertools
import os
import time as wall_time
from ipaddress import ip_address
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sesame import config
from sesame.basics import Port
from sesame.daemon import FLUSH_EVERY, HEED_AFTER, Daemon
from sesame.errors import RemoteError
from sesame.testing import FakeClock, KernelFirstStage, MemoryGate, check_gate, gate_config
from sesame.wire import fwknop, nflog, spa
from sesame.wire.nflog import Logged
from tests.helpers import fwknop as fwknop_keys
from tests.helpers.configs import EXAMPLE
from tests.helpers.configs import SERVER as SPA_SERVER
from tests.helpers.packets import ipv4, logged_message, tcp, udp

USER = "198.51.100.2"
SERVER = "198.51.100.1"
SSH = Port("tcp", 22)


def make(text=EXAMPLE):
    clock = FakeClock()
    gate = MemoryGate(clock)
    daemon = Daemon(config.parse(text, "t.toml"), gate, clock)
    daemon.start()
    return daemon, gate, clock


def sealed(user, aead, door, source=USER, nonce=None) -> Logged:
    """``user``'s SPA datagram for ``door``, from ``source`` to port 62201, as logged."""
    payload = spa.encode(
        user, aead, door, ip_address(source), int(wall_time.time()), nonce or os.urandom(12)
    )
    return Logged(5155, b"", ipv4(source, SERVER, 17, udp(62201, payload)))


def spa_server(tmp_path, more=""):
    """The SPA test server (alice, door ssh on 62201), its state under ``tmp_path``."""
    return SPA_SERVER.replace("/tmp/sesame-test-state", str(tmp_path / "state")) + more


def judging(daemon, packets_per_look: int) -> None:
    """Have each packet take a 1/``packets_per_look`` of HEED_AFTER to judge (the
    daemon asks its timer once a packet, and once before the first)."""
    ticks, step = itertools.count(), HEED_AFTER / packets_per_look * (1 + 1e-9)  # (rounding)
    daemon.timer = lambda: next(ticks) * step


def send(daemon, clock, *knocks, source=USER):
    for port, proto in knocks:
        transport = tcp(port) if proto == "tcp" else udp(port)
        daemon.packet(
            Logged(5155, b"", ipv4(source, SERVER, 6 if proto == "tcp" else 17, transport)), clock()
        )
        clock.advance(0.1)


OPEN = ((7000, "tcp"), (8000, "tcp"), (9000, "udp"))


def test_knock_opens_the_gate_for_the_knocker_only():
    daemon, gate, clock = make()
    assert gate.installed is not None
    send(daemon, clock, *OPEN)
    assert gate.allows(ip_address(USER), SSH, clock())
    assert not gate.allows(ip_address("198.51.100.3"), SSH, clock())


def test_expiry_closes_the_gate_on_tick():
    daemon, gate, clock = make()
    send(daemon, clock, *OPEN)
    clock.advance(31)
    daemon.tick(clock())
    assert gate.elements == {}


def test_junk_is_counted_and_changes_nothing():
    daemon, gate, clock = make()
    before = gate.transactions
    daemon.packet(Logged(5155, b"", b"\x45garbage"), clock())
    daemon.packet(RemoteError("sensor overrun"), clock())
    send(daemon, clock, (7000, "tcp"))
    daemon.packet(Logged(5155, b"", ipv4(USER, SERVER, 6, tcp(8000, flags=0x12))), clock())
    assert daemon.drops == {"short ipv4 header": 1, "sensor overrun": 1}
    assert gate.transactions == before
    # The SYN-ACK was not a knock for this door: it neither advanced nor reset the attempt.
    send(daemon, clock, (8000, "tcp"), (9000, "udp"))
    assert gate.allows(ip_address(USER), SSH, clock())


@given(st.binary(max_size=80))
def test_arbitrary_payloads_never_grant(data):
    daemon, gate, clock = make()
    daemon.packet(Logged(5155, b"", data), clock())
    assert gate.elements == {}


def test_restart_adopts_live_grants(tmp_path):
    daemon, gate, clock = make()
    send(daemon, clock, *OPEN)
    again = Daemon(daemon.config, gate, clock)  # the same gate: the kernel outlives sesame
    again.start()
    assert again.engine.grants.at("ssh", ip_address(USER)) != []


def test_reload_refuses_a_bad_config_and_keeps_the_old(tmp_path):
    daemon, gate, clock = make()
    path = tmp_path / "bad.toml"
    path.write_text(EXAMPLE.replace("open_for = 30", "open_for = -1"))
    daemon.reload(lambda: config.load(str(path)))
    assert daemon.config.doors[0].open_for == 30
    send(daemon, clock, *OPEN)
    assert gate.allows(ip_address(USER), SSH, clock())


def first_stage(age):
    """A daemon whose kernel remembers that USER knocked 7000/tcp ``age`` seconds ago."""
    clock = FakeClock()
    user = ip_address(USER)
    gate = KernelFirstStage(clock, {user: (Port("tcp", 7000), age)})
    daemon = Daemon(config.parse(EXAMPLE, "t.toml"), gate, clock)
    daemon.start()
    return daemon, gate, clock, user


def test_a_first_knock_the_kernel_kept_is_read_back_once():
    daemon, gate, clock, user = first_stage(0.5)
    assert gate.first == {Port("tcp", 7000), Port("tcp", 9000)}  # opening, closing
    send(daemon, clock, (9000, "tcp"))  # a wrong knock port: the attempt is reset
    assert gate.taken == [user]
    send(daemon, clock, (8000, "tcp"), (9000, "udp"))  # the first knock is not read again
    assert gate.elements == {}
    gate.hits[user] = (Port("tcp", 7000), 0.2)  # knocked again: the kernel remembers anew
    send(daemon, clock, (8000, "tcp"), (9000, "udp"))
    assert gate.allows(user, SSH, clock())


def test_a_first_knock_older_than_seq_timeout_does_not_count():
    daemon, gate, clock, _ = first_stage(4.95)
    send(daemon, clock, (8000, "tcp"), (9000, "udp"))  # the last knock comes 5.05 s after
    assert gate.elements == {}


def test_a_full_kernel_map_sends_every_knock_to_sesame_until_calm():
    daemon, gate, clock = make()
    first = gate.first
    assert first
    full = ipv4("203.0.113.9", SERVER, 6, tcp(7000))
    daemon.packet(Logged(5155, b"full", full), clock())
    assert gate.first is None
    send(daemon, clock, *OPEN)  # every knock reaches the engine meanwhile
    assert gate.allows(ip_address(USER), SSH, clock())
    clock.advance(10)
    daemon.tick(clock())
    assert gate.first == first


def test_reload_keeps_the_first_stage_with_the_new_first_ports(tmp_path):
    path = tmp_path / "sesame.toml"
    path.write_text(EXAMPLE)
    clock = FakeClock()
    gate = MemoryGate(clock)
    daemon = Daemon(config.load(str(path)), gate, clock)
    daemon.start()
    assert gate.first == {Port("tcp", 7000), Port("tcp", 9000)}
    path.write_text(EXAMPLE.replace('sequence = ["7000/tcp"', 'sequence = ["7100/tcp"'))
    daemon.reload(lambda: config.load(str(path)))
    assert gate.first == {Port("tcp", 7100), Port("tcp", 9000)}
    flags = EXAMPLE.replace("[[door]]", '[[door]]\ntcp_flags = ["syn", "!ack", "!fin"]', 1)
    path.write_text(flags)
    daemon.reload(lambda: config.load(str(path)))
    assert gate.first is None  # the engine must see every knock's flags


def test_grants_removed_from_the_kernel_are_closed_as_revoked():
    daemon, gate, clock = make()
    send(daemon, clock, *OPEN)
    user = ip_address(USER)
    daemon.reconcile(clock())  # nothing removed: nothing changes
    assert daemon.engine.grants.at("ssh", user) != []
    gate.elements.clear()  # sesame revoke, or an operator
    daemon.reconcile(clock())
    assert daemon.engine.grants.at("ssh", user) == []
    assert daemon.engine.counters["revoked"] == 1
    send(daemon, clock, *OPEN)  # a knock opens anew, not a refresh
    assert daemon.engine.counters["opened"] == 2


def test_noise_from_a_knocking_source_ends_its_attempt():
    """The kernel reports a packet to any other port from a source with an attempt in
    progress (prefix "noise"): a scan, whose knocks must not add up."""
    daemon, gate, clock = make()
    send(daemon, clock, (7000, "tcp"), (8000, "tcp"))
    daemon.packet(Logged(5155, b"noise", ipv4(USER, SERVER, 6, tcp(7001))), clock())
    send(daemon, clock, (9000, "udp"))
    assert gate.elements == {}
    assert daemon.engine.counters["attempts ended by noise"] == 1
    send(daemon, clock, *OPEN)
    assert gate.allows(ip_address(USER), SSH, clock())


def test_reports_of_full_sets_are_counted_and_unknown_prefixes_dropped():
    daemon, gate, clock = make()
    packet = ipv4("203.0.113.9", SERVER, 6, tcp(1))
    for prefix in (b"noisy-full", b"noisy-full", b"follow-full", b"forged"):
        daemon.packet(Logged(5155, prefix, packet), clock())
    assert daemon.reports == {"scanner set full": 2, "follow set full": 1}
    assert daemon.drops == {"unknown log prefix": 1}
    assert gate.elements == {}


def test_a_door_that_does_not_gate_puts_nothing_in_the_kernel():
    """A door with gate = false only runs commands; its grant must not open a port that
    another door gates."""
    text = EXAMPLE + (
        '\n[[door]]\nname = "cmd"\nsequence = ["6000/tcp", "6001/tcp"]\nopen = ["22/tcp"]\n'
        'gate = false\nstart_command = ["/bin/true"]\n'
    )
    daemon, gate, clock = make(text)
    send(daemon, clock, (6000, "tcp"), (6001, "tcp"))
    assert [g.door for g in daemon.engine.grants.all()] == ["cmd"]
    daemon.close()
    assert gate.elements == {}


def test_a_change_by_no_named_process_is_restored_at_most_once_a_second():
    """An old kernel names no process in its notifications: sesame's own restore would
    read as another change, and must not be restored again without end."""
    from sesame.firewall.watch import Verdict

    daemon, _, clock = make()
    daemon.changed(Verdict(restore=True, by=(4242,)), clock())
    daemon.changed(Verdict(restore=True, by=(4242,)), clock())
    assert daemon.reports["restored"] == 2  # a named process: at once, every time
    daemon.changed(Verdict(restore=True, by=(0,)), clock())
    assert daemon.reports["restored"] == 2 and daemon.keeper.retry_at == clock() + 1.0
    clock.advance(1.0)
    daemon.tick(clock())
    assert daemon.reports["restored"] == 3


def test_doors_that_open_the_same_port_hold_it_each_for_themselves(tmp_path):
    """alice's SPA grant (door admin, 60 s) and a plain knock (door ssh, 30 s) on 22/tcp:
    one kernel element, held until the latest deadline; the plain door's un-knock and
    expiry release only its own hold; status lists both holders."""
    shipped = Path("examples/sesame.toml").read_text()
    daemon, gate, clock = make(shipped.replace("[server]", f'[server]\nstate_dir = "{tmp_path}/s"'))
    daemon.packet(sealed("alice", spa.cipher(bytes(range(32))), "admin", nonce=bytes(12)), clock())
    send(daemon, clock, *OPEN)
    element = (ip_address(USER), SSH)
    assert gate.elements[element][0] == "admin"
    [entry] = [e for e in gate.entries() if e.port == SSH]
    assert [h.door for h in entry.held()] == ["admin", "ssh"]
    send(daemon, clock, (9000, "tcp"), (8000, "tcp"), (7000, "tcp"))  # ssh's un-knock
    assert [g.door for g in daemon.engine.grants.all()] == ["admin"]
    assert gate.allows(ip_address(USER), SSH, clock())
    [entry] = [e for e in gate.entries() if e.port == SSH]
    assert [h.door for h in entry.held()] == ["admin"]
    send(daemon, clock, *OPEN)  # ssh again, then it expires after its 30 s
    clock.advance(31)
    daemon.tick(clock())
    assert [g.door for g in daemon.engine.grants.all()] == ["admin"]
    assert gate.allows(ip_address(USER), SSH, clock())
    clock.advance(30)
    daemon.tick(clock())
    assert gate.elements == {}
    daemon.close()


def test_at_start_an_element_whose_other_holder_is_gone_is_kept_for_the_rest():
    """A grant element held by door ssh (20 s left) and by a door the config no longer
    has (its hold was the later): it stays, held by ssh alone, until ssh's deadline."""
    from sesame.firewall.elements import Holder

    clock = FakeClock()
    gate = MemoryGate(clock)
    user = ip_address(USER)
    gate.elements[user, SSH] = ("old", clock() + 60.0, "")
    gate.holders[user, SSH] = (Holder("old"), Holder("ssh", "", 40.0))
    daemon = Daemon(config.parse(EXAMPLE, "t.toml"), gate, clock)
    daemon.start()
    assert [g.door for g in daemon.engine.grants.all()] == ["ssh"]
    assert gate.elements[user, SSH] == ("ssh", clock() + 20.0, "")
    clock.advance(20.5)
    daemon.tick(clock())
    assert not gate.allows(user, SSH, clock())


def test_the_memory_gate_keeps_every_promise_of_a_gate():
    clock = FakeClock()
    check_gate(MemoryGate(clock), gate_config(), clock)


def test_a_gate_that_does_not_delete_fails_the_check():
    """check_gate can fail: a gate that keeps what it is told to close is caught."""
    import pytest

    class Sticky(MemoryGate):
        def apply(self, elements, now):
            super().apply([e for e in elements if e.until is not None], now)

    clock = FakeClock()
    with pytest.raises(AssertionError, match="closing deletes"):
        check_gate(Sticky(clock), gate_config(), clock)


def test_many_grants_kept_at_start_are_counted_in_one_line_a_few_one_by_one(caplog):
    """A restart with thousands of live grants logs how many each door kept, not a
    line each; a few are still logged one by one."""
    import logging

    from sesame.firewall.elements import Entry
    from sesame.service.keeper import KEPT_SHOWN, adopt

    cfg = config.parse(EXAMPLE)
    door = cfg.doors[0].name
    port = cfg.gated[door][0]
    entries = [Entry(ip_address(f"198.51.100.{i}"), port, door, 30.0) for i in range(1, 201)]
    entries.append(Entry(ip_address("198.51.100.250"), Port("tcp", 1), "gone", 30.0))
    with caplog.at_level(logging.INFO, logger="sesame"):
        keep, stale, mixed = adopt(entries, cfg)
    assert (len(keep), len(stale), mixed) == (200, 1, [])
    assert [r.getMessage() for r in caplog.records] == [f"kept 200 grants (door {door}: 200)"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sesame"):
        adopt(entries[:KEPT_SHOWN], cfg)
    assert len(caplog.records) == KEPT_SHOWN
    assert caplog.records[0].getMessage().startswith(f"kept grant of door {door} for ")


def test_many_grants_from_before_are_adopted_while_serving_a_sources_own_first(caplog):
    """A restart that finds more grant elements than it adopts at once is ready before
    adopting them. A source's are adopted before anything is decided about it: a knock
    for a short door leaves a longer door's hold on the same port as it was, and an
    un-knock closes a grant from before. The rest are adopted a slice at each tick;
    stale elements (no door opens their port any more) are deleted."""
    import logging

    from sesame.service.keeper import AT_ONCE, SLICE

    text = EXAMPLE + '\n[[door]]\nname = "long"\nsequence = ["6000/udp"]\nopen = ["22/tcp"]\n'
    cfg = config.parse(text + "open_for = 600\n", "t.toml")
    clock = FakeClock()
    gate = MemoryGate(clock)
    sources = [ip_address(0x0A000000 + i) for i in range(1, AT_ONCE + 2 * SLICE)]
    for source in sources:
        gate.elements[source, SSH] = ("ssh", clock() + 25.0, "")
    held, closing, stale = sources[7], sources[8], sources[9]
    gate.elements[held, SSH] = ("long", clock() + 500.0, "")
    gate.elements[stale, Port("tcp", 1)] = ("gone", clock() + 25.0, "")
    daemon = Daemon(cfg, gate, clock)
    with caplog.at_level(logging.INFO, logger="sesame"):
        daemon.start()
        assert len(daemon.engine.grants) == 0 and daemon.adoption is not None
        send(daemon, clock, *OPEN, source=str(held))
        assert gate.elements[held, SSH][0] == "long", "the longer hold stays"
        assert {g.door for g in daemon.engine.grants.all()} == {"long", "ssh"}
        send(daemon, clock, (9000, "tcp"), (8000, "tcp"), (7000, "tcp"), source=str(closing))
        assert not gate.allows(closing, SSH, clock()), "an un-knock closes a grant from before"
        ticks = 0
        while daemon.adoption is not None:
            daemon.tick(clock())
            ticks += 1
    assert ticks <= len(sources) // SLICE + 1
    # Every one from before but the one un-knocked, and the short door's new grant.
    assert len(daemon.engine.grants) == len(sources) - 1 + 1
    assert (stale, Port("tcp", 1)) not in gate.elements
    assert any(
        r.getMessage().startswith(f"kept {len(sources)} grants (door long: 1, door ssh: ")
        for r in caplog.records
    )


def test_a_source_that_opened_lately_is_heard_before_a_flood(tmp_path):
    """alice opens: the gate passes her address's SPA apart, for an hour. A batch of
    500 wrongly keyed datagrams naming alice from strangers is being judged when her
    own comes in that group: hers is judged within HEED_AFTER of judging (here, 5
    packets: her grant is in the gate before the rest of the flood is refused), and
    every one is judged."""
    daemon, gate, clock = make(spa_server(tmp_path))
    per_look = 5
    judging(daemon, per_look)
    key, wrong = spa.cipher(bytes(range(32))), spa.cipher(bytes(32))

    def datagram(aead, source: str) -> Logged:
        return sealed("alice", aead, "ssh", source)

    assert not gate.knows(ip_address(USER))
    daemon.packets([datagram(key, USER)], clock())  # alice opens: her address is known
    assert gate.knows(ip_address(USER))
    daemon.engine.revoke("ssh", ip_address(USER))
    lane: list[Logged] = []  # the group of sources that opened lately

    def heed() -> list[Logged]:
        taken = lane[:]
        lane.clear()
        return taken

    daemon.known = heed
    refused_when_opened = []
    apply = gate.apply

    def spy(elements, now):
        if any(e.until is not None and str(e.address) == USER for e in elements):
            refused_when_opened.append(sum(daemon.drops.values()))
        apply(elements, now)

    gate.apply = spy
    flood = [datagram(wrong, f"100.64.{i // 256}.{i % 256}") for i in range(500)]

    def arriving(items):  # hers comes while the 101st of the flood is judged
        for n, item in enumerate(items):
            if n == 100:
                lane.append(datagram(key, USER))
            yield item

    daemon.packets(arriving(flood), clock())
    [refused] = refused_when_opened
    assert 100 < refused <= 100 + per_look
    assert sum(daemon.drops.values()) == 500
    clock.advance(3601)  # an hour on, her address is not known any more
    assert not gate.knows(ip_address(USER))


def test_a_batch_streams_and_the_known_group_is_heard_before_and_between_its_parts():
    """A read can hold 100,000 packets: they are judged as they come, and the group
    of sources that opened lately is read before the first and after every
    HEED_AFTER of judging them (here, every 4 packets)."""
    daemon, _, clock = make()
    per_look = 4
    judging(daemon, per_look)
    taken: list[int] = []
    heard_at: list[int] = []

    def read():
        for i in range(5 * FLUSH_EVERY):
            taken.append(i)
            yield RemoteError(str(i))

    def heed() -> list[Logged]:
        heard_at.append(len(taken))
        return []

    daemon.known = heed
    daemon.packets(read(), clock())
    assert heard_at == list(range(0, 5 * FLUSH_EVERY + 1, per_look))
    assert daemon.drops == {str(i): 1 for i in range(5 * FLUSH_EVERY)}


def test_a_known_source_is_heard_before_the_grants_of_a_flood_are_carried_out(tmp_path):
    """Valid SPA from FLUSH_EVERY strangers is being judged (the grants wait to be
    carried out together) when alice's comes in the group of known sources: her grant
    is in the gate before theirs, not behind them, however little time has passed."""
    from tests.helpers.configs import KEY

    users = "".join(
        f'\n[[user]]\nname = "u{i}"\nkey = "{KEY}"\ndoors = ["ssh"]\n' for i in range(FLUSH_EVERY)
    )
    daemon, gate, clock = make(spa_server(tmp_path, users))
    aead = spa.cipher(bytes(range(32)))

    def datagram(user: str, source: str) -> Logged:
        return sealed(user, aead, "ssh", source)

    lane: list[Logged] = []
    daemon.known = lambda: [lane.pop()] if lane else []
    daemon.timer = lambda: 0.0  # no time passes: only the flush has her heard
    applied: list[set[str]] = []
    apply = gate.apply

    def spy(elements, now):
        applied.append({str(e.address) for e in elements if e.until is not None})
        apply(elements, now)

    gate.apply = spy

    def arriving():  # hers comes while the last of theirs is judged
        for i in range(FLUSH_EVERY):
            if i == FLUSH_EVERY - 1:
                lane.append(datagram("alice", USER))
            yield datagram(f"u{i}", f"100.64.0.{i + 1}")

    daemon.packets(arriving(), clock())
    assert applied[0] == {USER}
    assert applied[1] == {f"100.64.0.{i + 1}" for i in range(FLUSH_EVERY)}


def test_what_is_refused_at_sight_is_counted_as_if_judged_whole(tmp_path, caplog):
    """The first look at a flood (Daemon.sieve, taken as the netlink datagrams are
    split) changes nothing but cost: the same datagrams, judged with it and without,
    leave the same counts of what was dropped and refused, the same audit lines and the
    same grants."""
    wrong = [fw(f"10.0.{n // 250}.{n % 250 + 1}", b"k" * 32, b"h" * 64) for n in range(600)]
    items = [
        *wrong[:300],
        sealed("alice", spa.cipher(bytes(32)), "ssh", source="10.9.0.1"),  # sesame's, wrong key
        Logged(5155, b"", ipv4("10.9.0.2", SERVER, 17, udp(62201, b"A" * 100))),
        Logged(5155, b"", ipv4("10.9.0.3", SERVER, 17, udp(62201, b"A" * 200), frag=0x2000)),
        fw(USER),  # keyed right: opens
        *wrong[300:],
        RemoteError("sensor overrun"),
    ]
    seen: list[bool] = []
    results = []
    for first_look in (True, False):
        state = tmp_path / str(first_look)
        daemon, gate, clock = make(spa_server(state) + FW_ANY)
        daemon.first_look = first_look
        look = daemon.refused_at_sight
        daemon.refused_at_sight = lambda now, data, look=look: (
            seen.append(look(now, data)) or (seen[-1])
        )
        caplog.clear()
        with caplog.at_level("INFO", "sesame"):
            for n in range(0, len(items), 64):  # as the sensor hands a flood on
                daemon.packets(read(items[n : n + 64], daemon.sieve(clock())), clock())
                clock.advance(0.001)
            daemon.refusals.tick(clock())
        lines = [r.getMessage() for r in caplog.records]
        refusals = daemon.refusals
        results.append(
            (
                daemon.drops,
                refusals.counts,
                refusals.unwritten,
                lines,
                sorted(map(str, gate.elements)),
            )
        )
    assert results[0] == results[1]
    drops, counts, _, lines, grants = results[0]
    assert drops["fwknop bad hmac"] == 600 and counts[("fwknop", "fwknop bad hmac")] == 600
    assert any(f"opened door fw to {USER}" in line for line in lines) and len(grants) == 1
    assert sum(seen) >= 300  # most of the flood refused at sight, none judged so too


def test_the_known_group_is_heard_while_the_first_look_takes_a_flood(tmp_path):
    """The first look refuses a flood as the sensor splits it, and the group of sources
    that opened lately is still read every HEED_AFTER of judging (here, 5 datagrams):
    alice's SPA, come while the 400th is refused at sight, opens before the 406th."""
    daemon, gate, clock = make(spa_server(tmp_path) + FW_ANY)
    per_look = 5
    judging(daemon, per_look)
    lane: list[Logged] = []
    daemon.known = lambda: [lane.pop()] if lane else []
    taken: list[bool] = []
    look = daemon.refused_at_sight

    def counted(now, data):
        taken.append(look(now, data))
        if len(taken) == 400:
            lane.append(fw(USER))
        return taken[-1]

    daemon.refused_at_sight = counted
    opened_at = []
    apply = gate.apply

    def spy(elements, now):
        if any(str(e.address) == USER for e in elements):
            opened_at.append(len(taken))
        apply(elements, now)

    gate.apply = spy
    wrong = [fw(f"10.0.{n // 250}.{n % 250 + 1}", b"k" * 32, b"h" * 64) for n in range(600)]
    daemon.packets(read(wrong, daemon.sieve(clock())), clock())
    assert all(taken[300:])  # by then the flood is refused at sight
    [at] = opened_at
    assert 400 <= at <= 400 + per_look
    assert daemon.drops["fwknop bad hmac"] == 600


FW_ANY = (
    f'\n[[fwknop]]\nname = "fw"\nsource = "ANY"\nopen_ports = "tcp/22"\n'
    f'key_base64 = "{fwknop_keys.KEY}"\nhmac_key_base64 = "{fwknop_keys.HMAC}"\n'
)


def fw(source, key=None, hmac=None):
    """alice's fwknop SPA from ``source`` (keyed right unless told), logged."""
    key = key or base64.b64decode(fwknop_keys.KEY)
    hmac = hmac or base64.b64decode(fwknop_keys.HMAC)
    data = fwknop.encode("alice", f"{source},tcp/22", key, hmac, timestamp=int(wall_time.time()))
    return Logged(5155, b"", ipv4(source, SERVER, 17, udp(62201, data)))


def read(items, sieve):
    """What NflogSensor.read hands on of these, logged 64 to a netlink datagram."""
    faults = [item for item in items if isinstance(item, RemoteError)]
    whole = b"".join(
        logged_message(item.group, item.payload, item.prefix)
        for item in items
        if isinstance(item, Logged)
    )
    yield from (item for item in nflog.messages(whole, sieve) if item is not None)
    yield from faults


def test_the_sources_a_batch_opened_are_known_in_one_transaction_after_their_grants(tmp_path):
    """A batch of alice's SPA from 30 addresses (her budget's burst; grants carried
    out 16 packets at a time): every address is heard first after it, in one change
    to the gate, made after the last of their grants."""
    daemon, gate, clock = make(spa_server(tmp_path))
    key = spa.cipher(bytes(range(32)))
    sources = [f"100.64.0.{i}" for i in range(1, 31)]
    calls: list[tuple[str, set]] = []
    apply, know = gate.apply, gate.know

    def applying(elements, now):
        calls.append(("apply", {e.address for e in elements}))
        apply(elements, now)

    def knowing(addresses, seconds):
        calls.append(("know", set(addresses)))
        know(addresses, seconds)

    gate.apply, gate.know = applying, knowing
    daemon.packets([sealed("alice", key, "ssh", s) for s in sources], clock())
    opened = {ip_address(s) for s in sources}
    assert [kind for kind, _ in calls] == ["apply", "apply", "know"]
    assert set().union(*(a for kind, a in calls if kind == "apply")) == opened
    assert calls[-1] == ("know", opened)
    assert all(gate.knows(a) for a in opened)
