"""fwknop's single-packet authorization, judged as fwknopd judges it: the access
stanzas of a port are tried in order; the first whose source (and destination) match,
whose HMAC and key open the datagram and whose ports allow the request decides (a
stanza that denies the ports passes the datagram on to the next, as fwknopd does; see
:mod:`sesame.wire.fwknop`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from ipaddress import IPv4Address, ip_address

from sesame.basics import Address, Port, host
from sesame.doors import NAME_RE, FwknopStanza
from sesame.engine.events import Action, Admission, Spent
from sesame.engine.limits import Shares
from sesame.engine.replay import ReplayWindow
from sesame.errors import RemoteError
from sesame.wire import fwknop as wire

ANY_V4 = IPv4Address("0.0.0.0")
DENIED = "fwknop port not allowed"


def fwknop_ports(text: str) -> list[Port]:
    """``tcp/22,udp/53`` as ports; ValueError for anything else (icmp, none, junk)."""
    out = []
    for item in text.split(","):
        proto, _, number = item.strip().partition("/")
        if proto.lower() not in ("tcp", "udp") or not number.isdigit():
            raise ValueError(item)
        out.append(Port("tcp" if proto.lower() == "tcp" else "udp", int(number)))
    return out


def _nat(
    stanza: FwknopStanza,
    message: wire.Message,
    first: Port,
    ports: tuple[Port, ...],
    destination: Address | None,
) -> tuple[Port, ...]:
    """What a NAT request (or FORCE_NAT) opens, as fwknopd's rules do: the first port
    asked for, rewritten (unless DISABLE_DNAT) to the destination, and the path to it;
    for --nat-local, this host's own port behind it. RemoteError if the stanza does
    not allow the destination."""
    if stanza.force_nat is None and message.kind not in wire.NAT_KINDS:
        return ports
    local = message.kind in (wire.LOCAL_NAT, wire.LOCAL_NAT_WITH_TIMEOUT)
    if stanza.force_nat is not None:
        host, number = stanza.force_nat
    else:
        text, _, port_text = message.nat_access.partition(",")
        try:
            host, number = str(ip_address(text)), int(port_text)
            Port(first.proto, number)  # ValueError: out of range
        except ValueError:
            raise RemoteError("fwknop nat request") from None
        if local:
            if not stanza.local_nat or destination is None:
                raise RemoteError("fwknop nat not allowed")
            host = str(destination)
            if Port(first.proto, number) not in stanza.open_ports:
                raise RemoteError(DENIED)
        elif not any(ip_address(host) in net for net in stanza.nat_destinations):
            raise RemoteError("fwknop nat not allowed")
    if stanza.forward_all:  # every port of the destination, any path on (fwknopd's)
        every = Port(first.proto, first.number, host, every=True)
        if stanza.disable_dnat:
            return (every,)
        return Port(first.proto, first.number, host, first.number, every=True), every
    if local:  # this host's port behind the one asked for
        return first, Port(first.proto, first.number, host, number), Port(first.proto, number)
    path = Port(first.proto, number, host)
    if stanza.disable_dnat:
        return (path,)
    return first, Port(first.proto, first.number, host, number), path


class FwknopJudge:
    """Judges fwknop datagrams against access stanzas."""

    def __init__(self, replay: ReplayWindow, shares: Shares, counters: Counter[str]) -> None:
        self.replay = replay
        self.shares = shares
        self.counters = counters
        self.ports: frozenset[int] = frozenset()
        self.destinations = False  # does a stanza need the packet's destination?
        self.by_port: dict[int, list[tuple[FwknopStanza, wire.Verifier]]] = {}
        # Ports whose stanzas all take any source and never expire: their checks
        # before decryption decide alone whether a datagram is refused (refusal()).
        self.plain: dict[int, tuple[wire.Verifier, ...]] = {}

    def configure(self, stanzas: Sequence[FwknopStanza]) -> None:
        self.ports = frozenset(s.spa_port for s in stanzas)
        self.destinations = any(s.destinations or s.local_nat for s in stanzas)
        self.by_port = {}
        for stanza in stanzas:
            verifier = wire.Verifier(stanza.hmac_key, stanza.hmac_type, stanza.encryption_mode)
            self.by_port.setdefault(stanza.spa_port, []).append((stanza, verifier))
        self.plain = {
            port: tuple(verifier for _, verifier in pairs)
            for port, pairs in self.by_port.items()
            if not any(s.sources or s.destinations or s.access_expire is not None for s, _ in pairs)
        }

    def refusal(self, number: int, payload: bytes) -> str | None:
        """What :meth:`judge` refuses a datagram to port ``number`` for, when its bytes
        alone decide that: on a port whose stanzas all take any source and never
        expire, no stanza's checks before decryption pass (the reason is the last
        stanza's fault, as judge gives it). None otherwise: judge decides."""
        verifiers = self.plain.get(number)
        if verifiers is None:
            return None
        reason = None
        for verifier in verifiers:
            reason = verifier.fault(payload)
            if reason is None:
                return None
        return reason

    def judge(
        self,
        source: Address,
        destination: Address | None,
        port: Port,
        payload: bytes,
        now: float,
        wall: float,
        not_before: float,
    ) -> list[Action]:
        """Judge one datagram in fwknop's format (``destination`` is needed only where
        a stanza has DESTINATION); RemoteError if refused."""
        reason = "fwknop no stanza for source"
        for stanza, verifier in self.by_port.get(port.number, ()):
            restricted = stanza.sources or stanza.destinations
            if restricted and not stanza.admits(source, destination):
                continue
            if stanza.access_expire is not None and wall > stanza.access_expire:
                reason = "fwknop access expired"
                continue
            wrong = verifier.fault(payload)
            if wrong is not None:
                reason = reason if reason == DENIED else wrong
                continue
            # fwknopd's replay check: the datagram's digest, remembered for the age
            # window; asked once the HMAC holds, before anything is decrypted.
            digest = hashlib.sha256(payload).digest()
            if digest in self.replay:
                reason = reason if reason == DENIED else "replay"
                continue
            try:
                message = verifier.open(payload, stanza.key)
            except RemoteError as exc:
                reason = reason if reason == DENIED else exc.reason
                continue
            try:
                admit = self._admission(stanza, message, source, destination, now, wall, not_before)
            except RemoteError as exc:
                if exc.reason != DENIED:
                    raise
                reason = DENIED  # as fwknopd: the next stanza that matches may allow them
                continue
            until = message.timestamp + stanza.max_age
            if not self.replay.add(digest, until):
                raise RemoteError("replay window full")
            self.counters["fwknop accepted"] += 1
            return [Spent(digest, until, admit)]
        raise RemoteError(reason)

    def _admission(
        self,
        stanza: FwknopStanza,
        message: wire.Message,
        source: Address,
        destination: Address | None,
        now: float,
        wall: float,
        not_before: float,
    ) -> Admission:
        """What an authentic message may open; RemoteError if it asks for more."""
        if abs(wall - message.timestamp) > stanza.max_age:
            raise RemoteError("stale timestamp")
        if message.timestamp < not_before:
            raise RemoteError("stamped before the replay record was lost")
        if message.kind not in (wire.ACCESS, wire.ACCESS_WITH_TIMEOUT, *wire.NAT_KINDS):
            raise RemoteError("fwknop message type")
        if stanza.require_username is not None and message.user != stanza.require_username:
            raise RemoteError("fwknop username")
        text, _, requested = message.access.partition(",")
        try:
            if "%" in text:  # a scope id (any bytes after "%"): no address to open for
                raise ValueError(text)
            asked = host(ip_address(text))
            listed = fwknop_ports(requested)
            ports = tuple(sorted(listed))
        except ValueError:
            raise RemoteError("fwknop access request") from None
        if not ports or any(
            p not in stanza.open_ports or p in stanza.restrict_ports for p in ports
        ):
            raise RemoteError(DENIED)
        ports = _nat(stanza, message, listed[0], ports, destination)
        self.shares.take(stanza.name, now)  # first: what follows logs a line
        if asked == ANY_V4:
            if not stanza.allow_source_any:
                raise RemoteError("fwknop source address required")
            asked = source
        elif asked != source and not stanza.allow_other_address:
            raise self.shares.elsewhere(stanza.name, source, asked)
        seconds = stanza.fw_access_timeout
        if message.client_timeout:
            seconds = min(message.client_timeout, stanza.max_fw_timeout)
        user = message.user if NAME_RE.match(message.user) else ""
        return Admission(stanza.name, asked, ports, seconds, user, per_port=True)
