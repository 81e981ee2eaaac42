"""Prometheus metrics (``[server] metrics = "127.0.0.1:9155"``, off by default),
served at ``/metrics`` by the daemon's own loop (no thread reads its state while it
changes), in the text format of the ``prometheus-client`` library.

Counters of events (grants opened and closed) count as they happen; the rest is read
at each scrape: live grants, knocks, SPA datagrams by result and reason, packets
dropped by reason, sources tracked, what the kernel dropped before sesame saw it (the
counters of sesame's own nftables rules, so junk that never reaches Python is
counted too), and a histogram of the time from reading a packet to its grant being in
the kernel.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sesame.engine import Closed, Decision, Opened
from sesame.errors import SesameError
from sesame.service.control import Listener

if TYPE_CHECKING:
    from sesame.daemon import Daemon

KNOCK_EVENTS = ("unknocks", "attempts ended by noise", "evicted", "replay window full")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The daemon's metrics; ``decided`` is told every grant decision carried out."""

    def __init__(self, daemon: Daemon, kernel: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.opened = Counter(
            "sesame_grants_opened", "Grants opened", ["door"], registry=self.registry
        )
        self.closed = Counter(
            "sesame_grants_closed", "Grants closed", ["door", "reason"], registry=self.registry
        )
        self.latency = Histogram(
            "sesame_packet_to_grant_seconds",
            "Seconds from reading a packet to its grant being in the kernel",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_State(daemon, kernel))

    def decided(self, decision: Decision, seconds: float) -> None:
        door = decision.grant.door
        if isinstance(decision, Closed):
            self.closed.labels(door, decision.reason).inc()
            return
        if isinstance(decision, Opened):
            self.opened.labels(door).inc()
        self.latency.observe(seconds)

    def page(self) -> bytes:
        return generate_latest(self.registry)


class _State:
    """What is read from the daemon at each scrape."""

    def __init__(self, daemon: Daemon, kernel: Callable[[], dict[str, int]]) -> None:
        self.daemon = daemon
        self.kernel = kernel

    def collect(self) -> Iterator[Metric]:
        engine, seen = self.daemon.engine, self.daemon.engine.counters
        live = GaugeMetricFamily("sesame_grants_live", "Live grants", labels=["door"])
        doors: dict[str, int] = {}
        for grant in engine.grants.all():
            doors[grant.door] = doors.get(grant.door, 0) + 1
        for door, count in sorted(doors.items()):
            live.add_metric([door], count)
        yield live
        knocks = CounterMetricFamily(
            "sesame_knocks",
            "Knock packets judged: the last of a sequence, or any other",
            labels=["result"],
        )
        knocks.add_metric(["completed"], seen["sequences completed"])
        knocks.add_metric(["other"], seen["knocks"] - seen["sequences completed"])
        yield knocks
        events = CounterMetricFamily(
            "sesame_knock_events", "What knocks led to, besides grants", labels=["event"]
        )
        for event in KNOCK_EVENTS:
            events.add_metric([event.replace(" ", "_")], seen[event])
        yield events
        spa = CounterMetricFamily(
            "sesame_spa_datagrams", "SPA datagrams judged", labels=["kind", "result", "reason"]
        )
        spa.add_metric(["spa", "accepted", ""], seen["spa accepted"])
        spa.add_metric(["fwknop", "accepted", ""], seen["fwknop accepted"])
        for (kind, reason), count in sorted(self.daemon.refusals.counts.items()):
            spa.add_metric([kind, "refused", reason], count)
        yield spa
        yield _counted(
            "sesame_packets_dropped", "Packets sesame dropped", "reason", self.daemon.drops
        )
        tracked = GaugeMetricFamily("sesame_sources_tracked", "Sources with a knock attempt")
        tracked.add_metric([], len(engine.matcher))
        yield tracked
        yield _counted(
            "sesame_kernel_dropped_packets",
            "Packets sesame's nftables rules dropped before sesame saw them",
            "chain",
            self.kernel(),
        )
        yield _counted(
            "sesame_kernel_reports", "What the kernel reported", "report", self.daemon.reports
        )
        cluster = self.daemon.cluster
        if cluster is not None:
            up = GaugeMetricFamily("sesame_cluster_store_up", "1 while the cluster's store answers")
            up.add_metric([], 0 if cluster.down else 1)
            yield up
            yield _counted(
                "sesame_cluster_events", "Claims, entries and refusals", "event", cluster.counts
            )


def _counted(name: str, what: str, label: str, counts: Mapping[str, int]) -> Metric:
    """A counter family with one sample for each key of ``counts``, by ``label``."""
    family = CounterMetricFamily(name, f"{what}, by {label}", labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


def address(text: str) -> tuple[str, int]:
    """``127.0.0.1:9155`` or ``[::1]:9155`` as (host, port); ValueError if neither."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise ValueError(text)
    return host.strip("[]"), int(port)


class Endpoint(Listener):
    """``GET /metrics`` over HTTP on ``host:port``; anything else is a 404."""

    def __init__(self, where: str, metrics: Metrics, watch: Callable[[int, bool], None]) -> None:
        host, port = address(where)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise SesameError(f"cannot serve metrics on {where}: {exc.strerror}") from None
        self.metrics = metrics
        super().__init__(sock, watch, b"\r\n\r\n", lambda why: _http(400, why.encode()))

    def respond(self, request: bytes) -> bytes:
        line = request.split(b"\r\n", 1)[0].split()
        if len(line) >= 2 and line[0] in (b"GET", b"HEAD") and line[1] == b"/metrics":
            return _http(200, self.metrics.page(), CONTENT_TYPE_LATEST)
        return _http(404, b"sesame serves /metrics only\n")


def _http(status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    head = f"HTTP/1.0 {status} {reason}\r\nContent-Type: {kind}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body
