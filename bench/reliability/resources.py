"""Every bounded resource filled on purpose, by forged sources (or, for the replay
window, by a key holder): sesame must fail closed for the offender only, say so, and
let the legitimate user in."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from ipaddress import ip_address

from bench.lab import Raw, spoofed
from bench.reliability.base import ALICE, SPA_PORT, Lab, Row
from sesame import client
from sesame.firewall.ruleset import NOISY_SIZE
from sesame.netns import inside


def _flood(lab: Lab, ports: list[int], count: int, seed: int, rate: float | None) -> float:
    raw = Raw(lab.flood.netns, lab.server.ipv4)
    try:
        sources = spoofed(count, seed)
        packets = [
            raw.syn(s, 1024 + i % 60000, ports[i % len(ports)]) for i, s in enumerate(sources)
        ]
        return raw.send(packets, rate)
    finally:
        raw.close()


def _scan_opens(lab: Lab) -> int:
    """An ascending SYN scan from the stranger; the doors it opened."""
    assert lab.daemon is not None
    mark = lab.daemon.mark()
    lab.scan("-sS", "-r", ports="6990-9010")
    lab.settled()
    return lab.opened_for(lab.stranger.ipv4, mark)


def scanner_sets(lab: Lab) -> None:
    daemon = lab.start(verbose=True)
    count = NOISY_SIZE + 40_000
    _flood(lab, list(range(1, 6990)), count, 21, 60_000)
    full = lab.elements("noisy4")
    opened = _scan_opens(lab)
    said = any("scanner sets are full" in line for line in daemon.lines)
    latency = lab.knock()
    lab.add(
        Row(
            "resources",
            "the scanner set filled by forged SYNs to closed ports, then an ascending scan"
            " from a fresh address",
            f"{count:,} forged sources",
            f"set full ({full:,} sources), logged: {'yes' if said else 'no'}; the scan"
            f" opened {opened}; the user got in ({latency * 1000:.1f} ms)",
            full >= NOISY_SIZE and said and opened == 0,
            {"noisy4": full, "opened": opened},
        )
    )


def first_knocks(lab: Lab) -> None:
    daemon = lab.start(verbose=True)
    count = 20_000
    _flood(lab, [7000], count, 22, 50_000)
    daemon.wait_for(r"every knock now goes to sesame", 10)
    opened = _scan_opens(lab)
    latency = lab.knock()
    lab.add(
        Row(
            "resources",
            "the kernel's map of first knocks filled by forged first knocks, then an"
            " ascending scan",
            f"{count:,} forged sources",
            f"sesame took every knock over (logged); the scan opened {opened}; the user got"
            f" in ({latency * 1000:.1f} ms)",
            opened == 0,
            {"opened": opened},
        )
    )


def get_in(lab: Lab, limit: float = 15.0) -> float | None:
    """The user knocks until a door opens (a knock lost in a flood is sent again, as a
    user would): seconds from now until it did, or None."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            lab.knock(timeout=0.5)
            return time.monotonic() - started
        except TimeoutError:
            continue
    return None


def _after(seconds: float | None) -> str:
    return "did not get in" if seconds is None else f"got in {seconds:.1f} s after the flood"


def sources(lab: Lab) -> None:
    lab.start()
    count = 100_000
    rate = 50_000
    _flood(lab, [7000], count, 23, rate)
    after = get_in(lab)
    counters = lab.counters()
    peak = lab.peak_mb()
    evicted = counters.get("evicted", 0)
    lost = counters.get("dropped sensor overrun", 0)
    lab.add(
        Row(
            "resources",
            "knock attempts in progress (max_sources, 40,000) filled by forged first"
            f" knocks, {rate:,} a second, more than sesame takes in userspace",
            f"{count:,} forged sources",
            f"{evicted:,} least recently active attempts evicted (counted), NFLOG overran"
            f" {lost} times (counted), peak RSS {peak:.1f} MB; the user {_after(after)}",
            peak <= 64 and after is not None and after < 5,
            {"evicted": evicted, "peak_rss_mb": round(peak, 1), "after_s": after},
        )
    )


def followed(lab: Lab) -> None:
    """Beyond what the kernel can follow while sesame takes every knock, knocks of new
    sources are dropped (fail closed): this measures for how long."""
    daemon = lab.start()
    count = 300_000
    seconds = _flood(lab, [7000], count, 24, None)
    got_in = get_in(lab)
    said = any("knocks of new sources are dropped" in line for line in daemon.lines)
    chain = lab.nft("list", "chain", "inet", "sesame", "knocks")
    counts = re.findall(
        r"counter packets (\d+) bytes \d+ (?:log prefix \"follow-full\" .*)?drop", chain
    )
    dropped = sum(int(n) for n in counts[-2:])  # the report (once a second) and the rest
    lab.add(
        Row(
            "resources",
            "the set of sources the kernel follows for sesame (262,144) filled by forged"
            " first knocks, faster than they expire",
            f"{count:,} forged sources in {seconds:.1f} s",
            f"new sources' knocks dropped in the kernel (fail closed, {dropped:,} counted,"
            f" logged: {'yes' if said else 'lost in the overrun'}) until entries expired"
            f" (seq_timeout 10 s); the user {_after(got_in)}",
            got_in is not None and got_in <= 10 + 2,
            {"after_s": got_in},
        )
    )


def replay_share(lab: Lab) -> None:
    daemon = lab.start()
    count = 20_000
    ahead = time.time() + 59
    address = ip_address(lab.user.ipv4)
    payloads = [client.spa_packet("alice", ALICE, "spa", address, ahead) for _ in range(count)]
    before = lab.rss_mb()
    with inside(lab.user.netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    started = time.monotonic()
    with sock:
        for payload in payloads:
            sock.sendto(payload, (lab.server.ipv4, SPA_PORT))
    sent_in = time.monotonic() - started
    bob = None
    while bob is None and time.monotonic() - started < 15:  # bob sends again if lost
        mark = daemon.mark()
        lab.spa("bob", lab.stranger.netns)
        with contextlib.suppress(TimeoutError):
            daemon.wait_for(rf"opened door spa to {lab.stranger.ipv4}: 22/tcp", 0.5, since=mark)
            bob = time.monotonic() - started - sent_in
    counters = lab.counters()
    accepted = counters.get("spa accepted", 0) - 1
    refused = counters.get("dropped over the user's rate", 0)
    size = os.path.getsize(lab.state() / "replay")
    lines = sum("(user alice)" in line for line in daemon.lines)
    lab.add(
        Row(
            "resources",
            "one key holder's share of the replay window: valid datagrams stamped 59 s"
            " ahead, as fast as a socket sends them",
            f"{count:,} datagrams in {sent_in:.1f} s",
            f"{accepted} accepted (burst 30, then 1/s), {refused:,} refused (counted, one"
            f" warning); {lines} log lines; state file {size:,} bytes; RSS"
            f" {before:.1f} → {lab.rss_mb():.1f} MB; another user {_after(bob)}",
            accepted <= 30 + sent_in + 5 and size < 64_000 and bob is not None,
            {"accepted": accepted, "refused": refused, "state_bytes": size},
        )
    )


def run(lab: Lab) -> None:
    steps = [scanner_sets, first_knocks, sources, replay_share]
    if not lab.short:
        steps.insert(3, followed)
    for step in steps:
        step(lab)
