"""The flood curve: random junk from spoofed sources to the SPA port at rising rates,
and during each, legitimate SPA datagrams one at a time, never sent twice: the share
that opened the guarded port, and how fast. Run for sesame and for fwknopd in their
sections of ``python -m bench`` (each with the daemon up)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lab import latency, run, sending, stop

RATES = (20_000, 50_000, 100_000, 200_000)  # junk datagrams a second
PER_SENDER = 100_000  # each sender's share (one alone sent about 140,000 a second here)
WAIT = 1.0  # seconds a legitimate SPA has to open before it counts as lost
PEERS = {"fwknopd": "fwknopd", "fwknopd_every": "fwknopd, every datagram"}  # key: column


def sent(netns: str) -> int:
    """Packets the flood namespace's interface has sent."""
    return int(run(netns, "cat", "/sys/class/net/eth0/statistics/tx_packets").strip())


def point(
    flood_ns: str,
    user_ns: str,
    server: str,
    port: int,
    rate: int,
    trials: int,
    send: Callable[[], None],
    reset: Callable[[], None],
) -> dict[str, Any]:
    """One rate: the flood, ``trials`` legitimate datagrams during it, the figures."""
    senders = math.ceil(rate / PER_SENDER)
    each = rate / senders
    # Long enough to outlast every trial even if each is lost (a datagram that opens
    # only after the flood ended must not count); the trials end it first.
    longest = trials * (WAIT + 0.25) + 5
    argv = [sys.executable, "-m", "bench.flood", flood_ns, server, f"junk-udp:{port}"]
    floods = [
        subprocess.Popen(
            [*argv, str(int(each * longest)), str(each)],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, FLOOD_READY="1"),
            cwd=Path(__file__).parent.parent,
        )
        for _ in range(senders)
    ]
    try:
        for flood in floods:  # each has made its packets and started sending
            sending(flood, "junk")
        time.sleep(0.5)  # and is under way
        before, start = sent(flood_ns), time.perf_counter()
        figures = latency(user_ns, server, send, reset, trials, limit=WAIT)
        achieved = (sent(flood_ns) - before) / (time.perf_counter() - start)
        alive = all(f.poll() is None for f in floods)  # the flood lasted all the trials
    finally:
        for flood in floods:
            stop(flood)
    return {
        "rate": rate,
        "achieved_rate": round(achieved),
        "flood_lasted": alive,
        "sent": trials,
        "opened": trials - int(figures["failures"]),
        "opened_pct": round(100 * (trials - int(figures["failures"])) / trials, 1),
        "latency": figures,
    }


def curve(
    flood_ns: str,
    user_ns: str,
    server: str,
    port: int,
    trials: int,
    send: Callable[[], None],
    reset: Callable[[], None],
) -> list[dict[str, Any]]:
    return [point(flood_ns, user_ns, server, port, rate, trials, send, reset) for rate in RATES]


def markdown(results: dict[str, Any], level: str = "##") -> list[str]:
    """The curve's table: sesame's, fwknopd's as installed, and fwknopd's set to judge
    every datagram, side by side."""
    mine = (results.get("sesame") or {}).get("curve") or []
    peers = [(results.get(key) or {}).get("curve") or [] for key in PEERS]
    if not mine and not any(peers):
        return []
    by_rate = [{p["rate"]: p for p in points} for points in peers]
    lines = [
        "",
        f"{level} Flood curve (random junk to the SPA port from spoofed sources; legitimate"
        f" SPA one at a time, no retries, {WAIT:g} s to open)",
        "",
        "| junk a second (achieved) | sesame: opened | sesame: latency median / p95 |"
        + "".join(f" {name}: opened | {name}: latency median / p95 |" for name in PEERS.values()),
        "|---|---|---|" + "---|---|" * len(PEERS),
    ]
    for p in mine or next(points for points in peers if points):
        cells = [_cell(p if mine else {})] + [_cell(rates.get(p["rate"], {})) for rates in by_rate]
        row = " | ".join(f"{a} | {b}" for a, b in cells)
        lines.append(f"| {p['rate']:,} ({p['achieved_rate']:,}) | {row} |")
    return lines


def _cell(x: dict[str, Any]) -> tuple[str, str]:
    """A point's share opened and its latency."""
    if not x:
        return "-", "-"
    lat = x["latency"]
    figure = f"{lat['median']} / {lat['p95']} ms" if lat.get("trials") else "-"
    ended = "" if x["flood_lasted"] else ", the flood ended first"
    return f"{x['opened_pct']}% ({x['opened']} of {x['sent']}{ended})", figure


def targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    mine = (results.get("sesame") or {}).get("curve") or []
    top = [p for p in mine if p["rate"] == max(RATES)]
    if not top:
        return []
    p = top[0]
    beside = "".join(
        f"; {name} {x['opened_pct']}%"
        for key, name in PEERS.items()
        for x in (results.get(key) or {}).get("curve") or []
        if x["rate"] == p["rate"]
    )
    reached = p["achieved_rate"] >= 0.9 * p["rate"] and p["flood_lasted"]
    return [
        (
            f"at least 99% of legitimate SPAs open during {p['rate']:,} junk datagrams a second"
            " (the flood reaching 90% of that rate and lasting the trials)",
            p["opened_pct"] >= 99 and reached,
            f"{p['opened_pct']}% at {p['achieved_rate']:,}/s{beside}",
        )
    ]
