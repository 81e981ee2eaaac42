"""Faults: the table deleted or flushed under a live grant, the state directory full,
read-only and corrupted, the NFLOG socket overflowing, kill -9 in a loop during
knocking, SIGHUP storms under a flood, the wall clock stepped an hour both ways."""

from __future__ import annotations

import contextlib
import random
import signal
import statistics
import subprocess
import threading
import time
from ipaddress import ip_address
from pathlib import Path

from bench.lab import Prober, Raw, spoofed
from bench.reliability.base import ALICE, OPEN_FOR, SESAME, SPA_PORT, Lab, Row, udp
from sesame import client
from sesame.firewall.watch import GRANT_SHARDS
from sesame.lab import knock_from
from sesame.wire import spa

COMMANDS = (
    "delete table inet sesame",
    "flush ruleset",
    "flush table inet sesame",
    "flush chain inet sesame guard",
    "flush set inet sesame guarded",
)
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def table(lab: Lab) -> None:
    daemon = lab.start()
    lab.knock()
    recoveries: list[float] = []
    strangers = 0
    for command in COMMANDS * (1 if lab.short else 4):
        prober = Prober(lab.stranger.netns, lab.server.ipv4)
        got: list[float | None] = []
        thread = threading.Thread(target=lambda p=prober, g=got: g.append(p.wait(0.0005, 0.3)))
        mark = daemon.mark()
        thread.start()
        started = time.perf_counter()
        subprocess.run(
            ["ip", "netns", "exec", lab.server.netns, "nft", *command.split()], check=True
        )
        daemon.wait_for(r"restored it with \d+ live grants", 5, since=mark)
        recoveries.append(time.perf_counter() - started)
        thread.join()
        strangers += got[0] is not None and got[0] - started > recoveries[-1]
    user_ok = f"{lab.user.ipv4} tcp 22" in lab.grants()
    lab.add(
        Row(
            "faults",
            "the table deleted, the ruleset flushed, the table, the guard chain and the"
            " guarded set flushed, a grant live, a stranger probing every 0.5 ms",
            f"{len(recoveries)} times",
            f"restored with the grant each time, in {_ms(statistics.median(recoveries))}"
            f" (median), {_ms(max(recoveries))} at most, from the command's start; the"
            f" stranger got in after that {strangers} times",
            max(recoveries) < 1.0 and strangers == 0 and user_ok,
            {"recovery_ms": [round(r * 1000, 1) for r in recoveries]},
        )
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _spa_opens(
    lab: Lab, stamp: float | None = None, payload: bytes | None = None, tries: int = 1
) -> bool:
    """Does an SPA datagram of alice (or ``payload``) open, sent up to ``tries`` times
    (as a user would, when one is lost)?"""
    assert lab.daemon is not None
    for _ in range(tries):
        mark = lab.daemon.mark()
        if payload is None:
            lab.spa(stamp=stamp)
        else:
            udp(lab.user.netns, lab.server.ipv4, SPA_PORT, payload)
        with contextlib.suppress(TimeoutError):
            lab.daemon.wait_for(
                rf"(opened|refreshed) door spa (to|for) {lab.user.ipv4}", 3, since=mark
            )
            return True
    return False


def state(lab: Lab) -> None:
    directory = lab.state()
    directory.mkdir(mode=0o700, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", "size=16k,mode=700", "tmpfs", str(directory)]
    subprocess.run(mount, check=True)
    try:
        _state_faults(lab, directory)
    finally:
        lab.stop()
        subprocess.run(["umount", str(directory)], check=False)


def _state_faults(lab: Lab, directory: Path) -> None:
    lab.start()  # the replay file is empty: its next record needs a block of its own
    filler = directory / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as handle:
        handle.write(bytes(1 << 16))
    full = _spa_opens(lab)
    filler.unlink()
    after_full = _spa_opens(lab)
    refused = lab.counters().get("not recorded", 0)
    # Read-only from the start (a file system cannot be made read-only under a writer).
    lab.stop()
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    lab.start()
    read_only = _spa_opens(lab)
    refused += lab.counters().get("not recorded", 0)
    # In sesame's own mount namespace (ip netns exec made one) too: its copy of the
    # mount keeps the read-only flag it was copied with.
    writable = ["mount", "-o", "remount,rw", str(directory)]
    subprocess.run(["nsenter", "-t", str(lab.pid), "-m", *writable], check=True)
    subprocess.run(writable, check=True)
    after_ro = _spa_opens(lab)
    earlier = client.spa_packet("alice", ALICE, "spa", ip_address(lab.user.ipv4))
    accepted = _spa_opens(lab, payload=earlier)
    lab.stop()
    (directory / "replay").write_bytes(random.Random(5).randbytes(999))
    lab.start()
    damaged = any("was damaged" in line for line in lab.daemon.lines)  # type: ignore[union-attr]
    replayed = _spa_opens(lab, payload=earlier)
    fresh = _spa_opens(lab, stamp=time.time() + 1)
    steps = {
        "full refused": not full,
        "then opened": after_full,
        "read-only refused": not read_only,
        "then opened ": after_ro,
        "accepted before": accepted,
        "damage logged": damaged,
        "replay refused": not replayed,
        "fresh opened": fresh,
    }
    lab.add(
        Row(
            "faults",
            "state_dir full (tmpfs), read-only at a start, corrupted (random bytes) before a"
            " restart",
            "one SPA at each step",
            f"full and read-only: SPA refused ({refused} counted, logged), the daemon ran"
            f" on and opened again once writable; corrupted: start logged it, a datagram"
            f" accepted before the restart was refused, a fresh one opened",
            all(steps.values()) and refused >= 2 and lab.alive(),
            {"refused_while_faulty": refused, "steps": steps},
        )
    )


def overflow(lab: Lab) -> None:
    lab.start()
    count = 100_000 if lab.short else 300_000
    raw = Raw(lab.flood.netns, lab.server.ipv4)
    # Well formed and naming alice (anything else the kernel drops unseen), a wrong key;
    # each from its own source (the kernel's per-source budget does not hold them back).
    wrong = spa.cipher(bytes(32))
    packets = [
        raw.udp(s, 1024, SPA_PORT, spa.encode("alice", wrong, "spa", ip_address(s), 0, bytes(12)))
        for s in spoofed(count, 31)
    ]
    lab.daemon.signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        raw.send(packets)
    finally:
        lab.daemon.signal(signal.SIGCONT)  # type: ignore[union-attr]
        raw.close()
    opened = _spa_opens(lab, tries=5)
    overruns = lab.counters().get("dropped sensor overrun", 0)
    lab.add(
        Row(
            "faults",
            "the NFLOG socket overflowing (sesame stopped with SIGSTOP while wrongly keyed"
            " SPA datagrams naming a user arrive)",
            f"{count:,} datagrams",
            f"{overruns} overruns counted (ENOBUFS), the daemon went on; an SPA after it"
            f" opened: {'yes' if opened else 'no'}",
            overruns > 0 and opened and lab.alive(),
            {"overruns": overruns},
        )
    )


def kill_loop(lab: Lab) -> None:
    rounds = 5 if lab.short else 50
    text = SESAME.format(state=lab.state()).replace(f"open_for = {OPEN_FOR}", "open_for = 4")
    stop = threading.Event()
    knocks = [0]

    def knocker() -> None:
        while not stop.is_set():
            for server in (lab.server.ipv4, lab.server.ipv6):
                knock_from(lab.user.netns, server, "7000/tcp", "8000/tcp", "9000/tcp")
                knocks[0] += 1
            stop.wait(0.2)

    lab.stop()  # grants of earlier parts would blur what this one measures
    for name in GRANT_SHARDS:
        lab.nft("flush", "set", "inet", "sesame", name)
    thread = threading.Thread(target=knocker)
    thread.start()
    lost, longest, kept = 0, 0.0, 0
    try:
        for _ in range(rounds):
            before = {g: left for g, left in lab.grants().items() if left > 1.5}
            daemon = lab.start(text)
            after = lab.grants()
            lost += sum(g not in after for g in before)
            kept += sum("kept grant" in line for line in daemon.lines)
            time.sleep(random.uniform(0.2, 1.0))
            longest = max([longest, *lab.grants().values()])
            lab.daemon.process.kill()  # type: ignore[union-attr]
            lab.daemon.process.wait()  # type: ignore[union-attr]
            lab.daemon = None
    finally:
        stop.set()
        thread.join()
    ended = time.monotonic()
    while lab.grants() and time.monotonic() - ended < 10:
        time.sleep(0.05)
    gone_after = time.monotonic() - ended
    lab.add(
        Row(
            "faults",
            "kill -9 at a random moment, restart, again, while the user knocks over IPv4"
            " and IPv6 every 0.2 s (open_for 4 s)",
            f"{rounds} kills, {knocks[0]} knocks",
            f"{lost} live grants lost at a restart ({kept} adopted); no grant had more than"
            f" {longest:.2f} s left; the last one expired {gone_after:.1f} s after the last"
            " kill",
            lost == 0 and longest <= 4.0 and gone_after <= 4 + 1,
            {"lost": lost, "kept": kept, "longest_left_s": longest},
        )
    )


def hup_storm(lab: Lab) -> None:
    daemon = lab.start()
    signals = 20 if lab.short else 100
    raw = Raw(lab.flood.netns, lab.server.ipv4)
    rng = random.Random(41)
    sources = spoofed(100_000, 42)
    packets = [
        raw.syn(s, 1024, rng.randrange(1, 65536))
        if i % 2
        else raw.udp(s, 1024, SPA_PORT, rng.randbytes(90))
        for i, s in enumerate(sources)
    ]
    flood = threading.Thread(target=raw.send, args=(packets, 20_000))
    flood.start()
    latencies = []
    for i in range(signals):
        daemon.signal(signal.SIGHUP)
        time.sleep(0.05)
        if i % (signals // 5) == 0:
            latencies.append(lab.knock())
    flood.join()
    raw.close()
    reloads = sum("reloaded" in line for line in daemon.lines)
    lab.add(
        Row(
            "faults",
            "SIGHUP every 50 ms during a flood of SYNs to random ports and junk SPA",
            f"{signals} signals, {len(packets):,} packets at 20,000/s",
            f"{reloads} reloads, the daemon ran on; {len(latencies)} knocks during it all"
            f" opened (slowest {max(latencies) * 1000:.0f} ms)",
            lab.alive() and reloads >= signals // 2,
            {"reloads": reloads},
        )
    )


def clock(lab: Lab) -> None:
    control = lab.tmp / "faketime"
    control.write_text("+0\n")
    env = {
        "LD_PRELOAD": FAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(control),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    text = SESAME.format(state=lab.state()).replace(f"open_for = {OPEN_FOR}", "open_for = 6")
    daemon = lab.start(text, env=env)
    errors = []
    spa_ok = True
    for before, after in ((0, 3600), (3600, 0)):
        lab.knock()
        opened = time.monotonic()
        mark = daemon.mark()
        control.write_text(f"+{after}\n")
        daemon.wait_for(rf"closed door plain for {lab.user.ipv4} \(expired\)", 15, since=mark)
        errors.append(abs(time.monotonic() - opened - 6))
        spa_ok &= not _spa_opens(lab, stamp=time.time() + before)
        spa_ok &= _spa_opens(lab, stamp=time.time() + after)
    lab.add(
        Row(
            "faults",
            "the daemon's wall clock stepped an hour forward, then back (libfaketime)",
            "two steps, a grant live across each",
            f"each grant closed on time (off by {max(errors) * 1000:.0f} ms at most); SPA"
            " stamped by the old clock refused, by the new one accepted",
            max(errors) < 1.0 and spa_ok,
            {"deadline_error_ms": [round(e * 1000) for e in errors]},
        )
    )


def run(lab: Lab) -> None:
    for step in (table, state, overflow, kill_loop, hup_storm, clock):
        step(lab)
