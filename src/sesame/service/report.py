"""What the daemon logs: decisions in words, and warnings at most once a minute each."""

from __future__ import annotations

import logging
from collections import Counter

from sesame import host
from sesame.basics import Address
from sesame.config import Config
from sesame.engine import Engine
from sesame.errors import RemoteError
from sesame.firewall.ruleset import FOLLOW_FULL, FOLLOW_SIZE, NOISY_FULL, NOISY_SIZE
from sesame.logs import plural

log = logging.getLogger("sesame")
WARN_EVERY = 60.0  # seconds between two warnings of the same kind
INTERFACE_EVERY = 5.0  # seconds between looks for a missing [server] interface


def counts(config: Config) -> str:
    """``2 doors, 1 user, 0 fwknop stanzas``."""
    return ", ".join(
        plural(len(items), word)
        for items, word in (
            (config.doors, "door"),
            (config.users, "user"),
            (config.fwknop, "fwknop stanza"),
        )
    )


def status(engine: Engine) -> str:
    """One line for systemd's status: what the daemon holds and has seen."""
    seen = engine.counters
    spa = seen["spa accepted"] + seen["fwknop accepted"]
    grants, knocks = plural(len(engine.grants), "live grant"), plural(seen["knocks"], "knock")
    return f"{grants}, {knocks} seen, {spa} SPA accepted"


class Warnings:
    """Warnings of one kind at most once a minute."""

    def __init__(self) -> None:
        self._warned: dict[str, float] = {}

    def __call__(self, kind: str, now: float, message: str, *args: object) -> None:
        if now - self._warned.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._warned[kind] = now
            log.warning(message, *args)


def other_addresses(refused: list[tuple[str, Address, Address]]) -> None:
    """Log each authentic SPA refused for asking for another address than it came
    from (each key holder's share bounds how many), with what to do about it."""
    for name, source, asked in refused:
        log.warning(
            "refused SPA of %s from %s: it asks to open for %s. Behind NAT? Set"
            " public_address for this server in the client's config (or --allow-ip);"
            " allow_other_address lets the user open for any address",
            name,
            source,
            asked,
        )
    refused.clear()


def over_rate(warn: Warnings, names: set[str], config: Config, now: float) -> None:
    """Say which key holders sent more than their share (once a minute each)."""
    for name in names:
        warn(
            f"rate {name}",
            now,
            "%s sends more than %d SPA datagrams at once or %g a second: refused beyond",
            name,
            config.server.spa_burst,
            config.server.spa_rate,
        )
    names.clear()


def kernel(
    prefix: bytes, warn: Warnings, reports: Counter[str], config: Config, now: float
) -> None:
    """What the kernel reports of its sets (noise is the engine's): each full set
    is counted, and said once a minute."""
    if prefix == NOISY_FULL:
        reports["scanner set full"] += 1
        warn(
            "noisy",
            now,
            "the scanner sets are full (%d sources in %ds): new scanners are not"
            " remembered; a knock attempt still ends when its source touches any other"
            " port",
            NOISY_SIZE,
            config.hold,
        )
    elif prefix == FOLLOW_FULL:
        reports["follow set full"] += 1
        warn(
            "follow",
            now,
            "%d sources are knocking at once: knocks of new sources are dropped until"
            " there is room",
            FOLLOW_SIZE,
        )
    else:
        raise RemoteError("unknown log prefix")


class InterfaceWatch:
    """Looks for ``[server] interface``. While this host lacks it (it may come up
    after sesame at boot), every knock and SPA datagram is ignored: say so once a
    minute, look again every few seconds, and say when it appears."""

    def __init__(self, warn: Warnings) -> None:
        self.warn = warn
        self.next_look = 0.0  # while the interface is missing: when to look again

    def look(self, interface: str | None, now: float) -> None:
        if now < self.next_look:
            return
        missing = host.missing_interface(interface)
        if missing is None:
            if self.next_look:
                log.warning("interface %s is here now: knocks count", interface)
            self.next_look = 0.0
            return
        self.next_look = now + INTERFACE_EVERY
        self.warn("interface", now, "%s: knocks and SPA datagrams are ignored", missing)
