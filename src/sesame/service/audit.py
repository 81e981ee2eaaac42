"""The audit trail: a line for every grant opened, refreshed or closed, and for every
SPA datagram refused, with the source address, the door and the user where known
(``extra={"fields": ...}`` carries them to the JSON log format).

Remote bytes (a user name a datagram claims) reach a line only escaped (see
:mod:`sesame.logs`); no key, nonce or payload is ever written. A flood must not
flood the log: each source gets at most ``PER_SOURCE`` refusal lines a minute, then
one line says how many more there were; at most ``SOURCES`` sources are followed
(the oldest forgotten first); and all sources together get at most ``BURST`` lines
at once and ``RATE`` a second (a flood, from one source or forged ones), beyond which
a line a minute counts what was not written. Past that budget a refusal costs a
comparison: counting it for the metrics.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from sesame.basics import Address
from sesame.engine import Closed, Decision, Opened, Refreshed
from sesame.engine.limits import Buckets
from sesame.errors import RemoteError
from sesame.wire import spa

log = logging.getLogger("sesame")
PER_SOURCE = 10  # refusal lines a source may cause a minute
WINDOW = 60.0
SOURCES = 10_000
RATE, BURST = 20.0, 200  # refusal lines a second, and at once, from all sources
KINDS = {"spa": "SPA", "fwknop": "fwknop SPA"}


def decision(decision: Decision) -> None:
    """One line for a grant opened, refreshed or closed."""
    grant = decision.grant
    address, listed = str(grant.address), [str(p) for p in grant.ports]
    ports = ": " + " ".join(listed) if listed else ""
    by = f" (user {grant.user})" if grant.user else ""
    fields: dict[str, Any] = {
        "door": grant.door,
        "address": address,
        "user": grant.user,
        "ports": listed,
    }
    if isinstance(decision, Opened):
        fields["event"] = "opened"
        text = f"opened door {grant.door} to {address}{ports}{by}"
    elif isinstance(decision, Refreshed):
        fields["event"] = "refreshed"
        text = f"refreshed door {grant.door} for {address}{ports}{by}"
    else:
        assert isinstance(decision, Closed)
        fields |= {"event": "closed", "reason": decision.reason}
        text = f"closed door {grant.door} for {address} ({decision.reason}){by}"
    log.info("%s", text, extra={"fields": fields})


class Refusals:
    """Lines for refused SPA datagrams, a few a minute for each source."""

    def __init__(self) -> None:
        self.sources: dict[Address, list[float]] = {}  # -> [since, lines]
        self.budget = Buckets(RATE, BURST)
        self.unwritten = 0  # refusals not written for the budget, since last said
        self.next_scan = 0.0
        self.counts: dict[tuple[str, str], int] = {}  # (kind, reason) -> refusals
        self.quiet_until = 0.0

    def refused(
        self, kind: str, source: Address, error: RemoteError, payload: bytes, now: float
    ) -> None:
        if self.hushed(kind, error.reason, now):  # the budget of all is spent
            return
        key = (kind, error.reason)
        self.counts[key] = self.counts.get(key, 0) + 1
        if not self.budget.take("", now):
            self.quiet_until = now + 1.0 / RATE  # when the next line may be written
            self.unwritten += 1
            return
        seen = self.sources.get(source)
        if seen is not None and now - seen[0] >= WINDOW:
            self._more(source, seen)
            seen = None
        if seen is None:
            seen = self.sources[source] = [now, 0]
            if len(self.sources) > SOURCES:
                del self.sources[next(iter(self.sources))]  # the oldest first
        seen[1] += 1
        if seen[1] > PER_SOURCE:
            return
        fields: dict[str, Any] = {"event": "refused", "kind": kind, "source": str(source)}
        fields["reason"] = error.reason
        if len(error.args) > 1 and isinstance(error.args[1], dict):
            fields |= error.args[1]
        if kind == "spa" and "user" not in fields:
            with contextlib.suppress(RemoteError):  # the name it claims: remote bytes
                fields["user"] = spa.user_of(payload)[0]
        known = ", ".join(f"{k} {fields[k]}" for k in ("door", "user") if fields.get(k))
        log.warning(
            "refused %s from %s: %s%s",
            KINDS.get(kind, kind),
            source,
            error.reason,
            f" ({known})" if known else "",
            extra={"fields": fields},
        )

    def hushed(self, kind: str, reason: str, now: float) -> bool:
        """While the budget of all is spent, count a refusal of ``kind`` for ``reason``
        and say True: nothing else of it is needed (the cheapest way out). False
        otherwise: call refused."""
        if now >= self.quiet_until:
            return False
        key = (kind, reason)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.unwritten += 1
        return True

    def tick(self, now: float) -> None:
        """Say how many lines were held back for sources whose minute is over, and
        for the budget of all."""
        if self.unwritten:
            log.warning(
                "refused %d more datagrams, from too many sources to write each",
                self.unwritten,
                extra={"fields": {"event": "refused more", "count": self.unwritten}},
            )
            self.unwritten = 0
        if now < self.next_scan:
            return
        self.next_scan = now + 1.0
        for source, seen in list(self.sources.items()):
            if now - seen[0] >= WINDOW:
                self._more(source, seen)
                del self.sources[source]

    @staticmethod
    def _more(source: Address, seen: list[float]) -> None:
        more = int(seen[1]) - PER_SOURCE
        if more > 0:
            log.warning(
                "refused %d more datagrams from %s in a minute",
                more,
                source,
                extra={"fields": {"event": "refused more", "source": str(source), "count": more}},
            )
