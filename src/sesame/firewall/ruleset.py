"""The nftables table sesame owns, rendered as nft commands (pure text).

Layout of ``table inet <name>`` (``sesame`` by default):

- ``input`` (hook input, priority filter - 10): knock ports jump to ``knock``,
  guarded ports jump to ``guard``, public ports pass; any other TCP/UDP packet to
  this host that is not part of a flow the host has (conntrack ``new``, ``invalid``
  or ``untracked``: any flags, any checksum) is *noise* and jumps to ``noise``.
- ``noise``: a source with a knock attempt in progress (in ``follow4/6`` or
  ``hits4/6``) is reported to sesame with the prefix ``noise``, which ends the
  attempt, so a scan cannot complete a sequence even when the scanner sets below
  are full. Then the source is marked in ``noisy4``/``noisy6`` for the scanner hold;
  when those are full the kernel cannot mark it, and says so (prefix ``noisy-full``,
  at most once a minute).
- ``spa``: an SPA port's datagrams to an address of this host jump here from
  ``raw`` (hook prerouting, priority raw), before conntrack, routing and the input
  hook: every one is dropped here, and conntrack would make each a connection of its
  own for nothing. Those to a broadcast address come from ``input``, where conntrack
  has seen them: one it finds invalid (a bad checksum) is dropped first (counter
  ``spa_invalid``). Only what could be a datagram of a configured key holder
  reaches sesame. sesame's own format carries its version and the user's name in
  clear: per SPA port and per name length, one rule matches both against the names
  of the users with a door on that port (refilled on every reload). fwknop's format
  admits two exact checks: its sizes (base64 of whole cipher blocks plus the
  stanzas' HMAC lengths) and its first character (the one that ends "Salted__").
  What matches neither is dropped unseen (counter ``spa_unknown``). What matches
  goes on to ``spa_known``: a source (an IPv6 /64) over ``spa_source_rate`` a
  second (``spa_source_burst`` at once) is dropped (counter ``spa_over_source``;
  when the set of sources is full, sources it has no room for are not limited
  here); the rest go to userspace over NFLOG, whole, and are dropped (no reply, no
  ICMP): a source in ``known4``/``known6`` (sesame adds a source that opens, for an
  hour) to the group ``known_log_group``, which sesame reads before ``log_group``
  and between its batches, so a user who opened before is not queued behind a flood
  of datagrams that name a user; any other source to ``log_group``.
- ``knock``: sources marked noisy are dropped unseen, and so are packets conntrack
  finds invalid (a bad checksum; where a door judges TCP flags, as knockd's TCPFlags
  do, only for UDP: a FIN is invalid to conntrack); TCP SYNs and UDP datagrams from
  the rest go on to ``knocks``; every packet to a knock port is dropped silently (no
  RST, no ICMP). Each rule counts, for ``nft list chain``.
- ``knocks`` works in one of two modes. With the *first stage in the kernel*, a
  first knock (a port in ``first``) from a source with nothing in progress is only
  remembered, in the map ``hits4``/``hits6`` (source -> the port it hit, with the
  longest seq_timeout as the element timeout); any other knock from such a source is
  dropped unseen. Knocks from sources in the map go to userspace, where sesame reads
  the first knock (port and age) back and moves the source to ``follow4``/``follow6``:
  sources whose knocks sesame follows itself (their timeout renewed by a first port
  knocked again). A flood of junk, even to knock ports, then costs sesame nothing.
  When the map is full, first knocks go to userspace with the prefix ``full``, and
  sesame switches to the other mode, *every knock to userspace*: the kernel adds
  each knocking source to ``follow4``/``follow6`` itself (so its noise still ends its
  attempt); when that set is full, new sources' knocks are dropped unseen (fail
  closed, prefix ``follow-full`` at most once a minute) until it has room.
- ``guard``: established/related traffic passes; a packet whose (source, proto,
  port) is in its source's shard of the grants passes (``grants4``/``grants6`` and
  ``grants4_1``/``grants6_1`` to ``_3``, by the low two bits of the address's last
  byte: four sets list in a seventh of the time one takes); everything else is
  dropped.
- ``prerouting`` (hook prerouting, priority mangle: after conntrack, before any DNAT):
  a packet from outside to an address of this host
  and a guarded port jumps to ``guard``, as in ``input``. So a guarded port the host
  forwards (Docker's published ports, libvirt's, the operator's own DNAT) is gated by
  the port the client asked for, before any table rewrites it, and a grant opens it
  as it opens a local one. A packet to another host's port a door opens (in
  ``forwarded4``/``forwarded6``: this host is its gateway) jumps to ``passage``:
  established/related traffic passes, a (source, destination, proto, port) in
  ``paths4``/``paths6`` passes, the rest is dropped.
- ``dstnat`` and ``srcnat`` (nat, only while a door or stanza asks for them): a
  grant's DNAT (a door's ``dnat``, fwknop's NAT) is an element of ``dnat4/6``
  (source . proto . port : destination . port) with a timeout, so it rewrites that
  source's traffic alone and ends by itself. Traffic to the ports in
  ``masqueraded4/6`` leaves with this host's address, for hosts whose route back
  does not pass here.

Grants are set elements with a kernel timeout, so they expire even if sesame dies.
The structure is (re)installed in one transaction that keeps the grant sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from sesame.basics import FIRST_SIZE, MAX_SOURCES, Port
from sesame.config import Config
from sesame.firewall.watch import SHARD_MASK, SHARDS, grant_set
from sesame.wire import fwknop, spa

NOISY_SIZE = 1 << 18  # scanners remembered at once (a flood of more forged sources fills it)
FOLLOW_SIZE = MAX_SOURCES  # sources whose knocks sesame follows (beyond: fail closed)
SNAPLEN = 2048
# Log prefixes: a first knock the kernel had no room for; noise from a source with a
# knock attempt in progress; a scanner the kernel could not mark; a knock of a new
# source while every knock goes to sesame and the set of followed sources is full.
FULL = b"full"
NOISE = b"noise"
NOISY_FULL = b"noisy-full"
FOLLOW_FULL = b"follow-full"
NEW_NOT_ESTABLISHED = "ct state new,invalid,untracked"
GUARD_PRIORITY = -150  # mangle: conntrack (-200) has run, DNAT (dstnat, -100) has not
T = TypeVar("T")
# Sources held to the per-source SPA budget at once: those heard in the last few
# seconds (see spa_forget). Beyond, a source is not limited here (a flood of forged
# sources fills it; one that keeps sending takes a place as soon as one is free, and
# keeps it). Kept small: each well-formed datagram costs the kernel a look-up in it,
# and in a set of 65,536 kept a minute each that cost 1.3 µs more (python -m bench.rules).
SPA_SOURCES = 1 << 12
KNOWN_SIZE = 1 << 16  # sources that opened lately, whose SPA has a group of its own
# The table's named counters of what the kernel dropped at the SPA ports.
SPA_COUNTERS = ("spa_invalid", "spa_unknown", "spa_over_source")


def _elements(ports: Iterable[Port]) -> str:
    return ", ".join(f"{p.proto} . {p.number}" for p in ports)


def install(
    config: Config, knock: Iterable[Port] | None = None, first: Iterable[Port] | None = None
) -> str:
    """Commands that create or update the table, keeping live grants. ``knock`` is
    every knock port (the config's fixed ones unless given: one-time sequences add);
    ``first``, the first ports the kernel remembers by itself (see :func:`knocks`)."""
    lines = _sets(config, knock) + _input(config) + _noise(config) + _gates(config)
    lines += _gateway(config) + knocks(config, first)
    return "\n".join(lines) + "\n"


def _sets(config: Config, knock: Iterable[Port] | None) -> list[str]:
    """The sets: grants, scanners, first knocks, followed sources, and the ports."""
    t = f"inet {config.server.table}"
    lines = [
        f"add table {t}",
        *(
            f"add set {t} {grant_set(n, shard)} {{ type ipv{n}_addr . inet_proto . inet_service;"
            " flags timeout; }"
            for n in "46"
            for shard in range(SHARDS)
        ),
        f"add set {t} noisy4 {{ type ipv4_addr; flags dynamic, timeout; size {NOISY_SIZE}; }}",
        f"add set {t} noisy6 {{ type ipv6_addr; flags dynamic, timeout; size {NOISY_SIZE}; }}",
        f"add map {t} hits4 {{ type ipv4_addr : inet_proto . inet_service;"
        f" flags dynamic, timeout; size {FIRST_SIZE}; }}",
        f"add map {t} hits6 {{ type ipv6_addr : inet_proto . inet_service;"
        f" flags dynamic, timeout; size {FIRST_SIZE}; }}",
        f"add set {t} follow4 {{ type ipv4_addr; flags dynamic, timeout; size {FOLLOW_SIZE}; }}",
        f"add set {t} follow6 {{ type ipv6_addr; flags dynamic, timeout; size {FOLLOW_SIZE}; }}",
        f"add set {t} paths4 {{ type ipv4_addr . ipv4_addr . inet_proto . inet_service;"
        " flags timeout; }",
        f"add set {t} paths6 {{ type ipv6_addr . ipv6_addr . inet_proto . inet_service;"
        " flags timeout; }",
        f"add map {t} dnat4 {{ type ipv4_addr . inet_proto . inet_service :"
        " ipv4_addr . inet_service; flags timeout; }",
        f"add map {t} dnat6 {{ type ipv6_addr . inet_proto . inet_service :"
        " ipv6_addr . inet_service; flags timeout; }",
        f"add set {t} anywhere4 {{ type ipv4_addr; flags timeout; }}",
        f"add set {t} anywhere6 {{ type ipv6_addr; flags timeout; }}",
        f"add map {t} everything4 {{ type ipv4_addr : ipv4_addr; flags timeout; }}",
        f"add map {t} everything6 {{ type ipv6_addr : ipv6_addr; flags timeout; }}",
    ]
    for name, targets in (("forwarded", config.forwarded), ("masqueraded", config.masqueraded)):
        for n in ("4", "6"):
            kind = f"ipv{n}_addr . inet_proto . inet_service"
            lines += [f"add set {t} {name}{n} {{ type {kind}; }}", f"flush set {t} {name}{n}"]
            mine = [p for p in targets if p.address is not None and str(p.address.version) == n]
            if mine:
                items = ", ".join(f"{p.host} . {p.proto} . {p.number}" for p in mine)
                lines.append(f"add element {t} {name}{n} {{ {items} }}")
    for name, ports in (
        ("guarded", config.guarded),
        ("knock", sorted(config.knock_ports if knock is None else knock)),
        ("public", config.server.public),
    ):
        lines.append(f"add set {t} {name} {{ type inet_proto . inet_service; }}")
        lines += fill(config.server.table, name, ports)
    forget = spa_forget(config.server.spa_source_rate, config.server.spa_source_burst)
    for n, addr in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
        lines.append(
            f"add set {t} spa_sources{n} {{ type {addr}; flags dynamic, timeout;"
            f" size {SPA_SOURCES}; timeout {forget}ms; }}"
        )
        lines.append(f"add set {t} known{n} {{ type {addr}; flags timeout; size {KNOWN_SIZE}; }}")
    lines += [f"add counter {t} {name}" for name in SPA_COUNTERS]
    lines.append(f"add set {t} first {{ type inet_proto . inet_service; }}")
    lines.append(f"add set {t} spa {{ type inet_service; }}")
    lines.append(f"flush set {t} spa")
    if config.spa_ports:
        lines.append(f"add element {t} spa {{ {', '.join(map(str, config.spa_ports))} }}")
    return lines


def spa_forget(rate: int, burst: int) -> int:
    """Milliseconds of silence after which the kernel forgets a source's SPA budget
    (each datagram starts them again): a second more than its bucket takes to fill up
    from empty, at least three. By then it would let the whole burst through anyway,
    so forgetting it changes nothing but the room it takes."""
    return max(3000, -(-burst * 1000 // rate) + 1000)


def _input(config: Config) -> list[str]:
    """The chains, emptied, and the input hook that sorts packets among them."""
    t = f"inet {config.server.table}"
    return [
        f"add chain {t} input {{ type filter hook input priority filter - 10; policy accept; }}",
        f"add chain {t} knock",
        f"add chain {t} knocks",
        f"add chain {t} noise",
        f"add chain {t} spa",
        f"add chain {t} spa_known",
        f"add chain {t} guard",
        f"add chain {t} passage",
        f"flush chain {t} passage",
        f"add chain {t} prerouting {{ type filter hook prerouting priority {GUARD_PRIORITY};"
        " policy accept; }",
        f"flush chain {t} prerouting",
        f"add chain {t} raw {{ type filter hook prerouting priority raw; policy accept; }}",
        f"flush chain {t} raw",
        f"flush chain {t} input",
        f"flush chain {t} knock",
        f"flush chain {t} noise",
        f"flush chain {t} spa",
        f"flush chain {t} spa_known",
        f"flush chain {t} guard",
        # An SPA datagram to this host is judged on arrival, before conntrack (which
        # would make each a connection of its own, made and freed for nothing: for
        # every source of a spoofed flood), routing and the input hook: a flood of them
        # costs the kernel less (measured: 1.5-2 µs each before routing, 1-1.5 more
        # before conntrack).
        f'add rule {t} raw udp dport @spa iif != "lo" fib daddr type local jump spa',
        f"add rule {t} prerouting meta l4proto {{ tcp, udp }} meta l4proto . th dport @guarded"
        ' iif != "lo" fib daddr type local jump guard',  # the set first: a fib lookup costs
        f"add rule {t} prerouting meta l4proto {{ tcp, udp }}"
        " ip daddr . meta l4proto . th dport @forwarded4 jump passage",
        f"add rule {t} prerouting meta l4proto {{ tcp, udp }}"
        " ip6 daddr . meta l4proto . th dport @forwarded6 jump passage",
        f'add rule {t} input iif "lo" accept',
        # What raw did not take (to a broadcast address): conntrack has seen it.
        f"add rule {t} input udp dport @spa ct state invalid counter name spa_invalid drop",
        f"add rule {t} input udp dport @spa jump spa",
        f"add rule {t} input meta l4proto {{ tcp, udp }} meta l4proto . th dport @knock jump knock",
        f"add rule {t} input meta l4proto {{ tcp, udp }} meta l4proto . th dport @guarded"
        " jump guard",
        f"add rule {t} input meta l4proto {{ tcp, udp }} meta l4proto . th dport @public accept",
        f"add rule {t} input meta pkttype host {NEW_NOT_ESTABLISHED}"
        f" meta l4proto {{ tcp, udp }} jump noise",
    ]


def _noise(config: Config) -> list[str]:
    """The noise chain: a source with a knock attempt in progress is reported, every
    source is marked a scanner for ``hold`` seconds."""
    t = f"inet {config.server.table}"
    noise = _log(config, NOISE.decode())
    lines = []
    for n, ip in (("4", "ip"), ("6", "ip6")):
        lines += [
            f"add rule {t} noise {ip} saddr @follow{n} delete @follow{n} {{ {ip} saddr }}"
            f" counter {noise}",
            f"add rule {t} noise {ip} saddr @hits{n} counter {noise}",
        ]
    return [
        *lines,
        *(
            f"add rule {t} noise update @noisy{n} {{ {ip} saddr timeout {config.hold}s }} return"
            for n, ip in (("4", "ip"), ("6", "ip6"))
        ),
        f"add rule {t} noise {_SELDOM} counter {_log(config, NOISY_FULL.decode())}",
        f"add rule {t} noise counter",
    ]


def _gates(config: Config) -> list[str]:
    """The spa, knock and guard chains."""
    t = f"inet {config.server.table}"
    lines = []
    if config.server.interface:
        lines.append(f'add rule {t} knock iifname != "{config.server.interface}" counter drop')
        lines.append(f'add rule {t} spa iifname != "{config.server.interface}" counter drop')
    # Connection attempts only, unless a door judges TCP flags itself (knockd's TCPFlags):
    # then TCP packets conntrack finds invalid (a FIN, say) are knocks too.
    if config.any_tcp_flags:
        tcp, invalid = "meta l4proto tcp", "meta l4proto udp ct state invalid"
    else:
        tcp, invalid = "tcp flags & (fin | syn | rst | ack) == syn", "ct state invalid"
    return [
        *lines,
        *_spa(config),
        f"add rule {t} knock ip saddr @noisy4 counter drop",
        f"add rule {t} knock ip6 saddr @noisy6 counter drop",
        f"add rule {t} knock {invalid} counter drop",
        f"add rule {t} knock {tcp} jump knocks",
        f"add rule {t} knock meta l4proto udp jump knocks",
        f"add rule {t} knock counter drop",
        f"add rule {t} guard ct state established,related accept",
        *(  # each source looks in its own shard of the grants (see watch.SHARDS)
            f"add rule {t} guard {ip} saddr & {low}{SHARD_MASK} == {low}{shard}"
            f" {ip} saddr . meta l4proto . th dport @{grant_set(n, shard)} accept"
            for n, ip, low in (("4", "ip", "0.0.0."), ("6", "ip6", "::"))
            for shard in range(SHARDS)
        ),
        f"add rule {t} guard ip saddr @everything4 accept",  # FORWARD_ALL: rewritten away
        f"add rule {t} guard ip6 saddr @everything6 accept",
        f"add rule {t} guard counter drop",
    ]


def _gateway(config: Config) -> list[str]:
    """The passage chain, and the nat chains while a door DNATs or masquerades."""
    t = f"inet {config.server.table}"
    lines = [
        f"add rule {t} passage ct state established,related accept",
        f"add rule {t} passage ip saddr @anywhere4 accept",  # FORWARD_ALL
        f"add rule {t} passage ip6 saddr @anywhere6 accept",
        f"add rule {t} passage ip saddr . ip daddr . meta l4proto . th dport @paths4 accept",
        f"add rule {t} passage ip6 saddr . ip6 daddr . meta l4proto . th dport @paths6 accept",
        f"add rule {t} passage counter drop",
    ]
    nat = {
        "dstnat": "prerouting priority dstnat",
        "srcnat": "postrouting priority srcnat",
    }
    if not (config.dnats or config.masqueraded or config.nat):
        for name in nat:  # none wanted: gone if there (add, then delete)
            lines += [f"add chain {t} {name}", f"delete chain {t} {name}"]
        return lines
    for name, hook in nat.items():
        lines += [
            f"add chain {t} {name} {{ type nat hook {hook}; policy accept; }}",
            f"flush chain {t} {name}",
        ]
    for n, ip in (("4", "ip"), ("6", "ip6")):
        lines.append(  # a grant's DNAT: for its source alone (a door's dnat, fwknop's NAT)
            f"add rule {t} dstnat meta nfproto ipv{n} dnat {ip} to {ip} saddr"
            f" . meta l4proto . th dport map @dnat{n}"
        )
    lines.append(f"add rule {t} dstnat udp dport @spa return")  # SPA still reaches sesame
    for n, ip in (("4", "ip"), ("6", "ip6")):
        lines.append(  # FORWARD_ALL: all of a source's traffic to this host, rewritten
            f"add rule {t} dstnat meta nfproto ipv{n} fib daddr type local"
            f" dnat {ip} to {ip} saddr map @everything{n}"
        )
    for n, ip in (("4", "ip"), ("6", "ip6")):
        lines.append(
            f"add rule {t} srcnat {ip} daddr . meta l4proto . th dport @masqueraded{n} masquerade"
        )
    for stanza in config.fwknop:  # FORCE_SNAT, and FORWARD_ALL's rewrites of a whole host
        if stanza.force_nat is None or not (stanza.force_snat or stanza.forward_all):
            continue
        host, number = stanza.force_nat
        ip = "ip6" if ":" in host else "ip"
        port = "" if stanza.forward_all else f" meta l4proto {{ tcp, udp }} th dport {number}"
        if stanza.force_snat:
            lines.append(
                f"add rule {t} srcnat {ip} daddr {host}{port} snat {ip} to {stanza.force_snat}"
            )
        elif stanza.force_masquerade:  # FORWARD_ALL: the whole host (a port: masqueraded4/6)
            lines.append(f"add rule {t} srcnat {ip} daddr {host}{port} masquerade")
    return lines


def _spa(config: Config) -> list[str]:
    """The spa and spa_known chains: what cannot be a datagram of a configured key
    holder is dropped and counted; a source over its budget too; the rest is logged."""
    t = f"inet {config.server.table}"
    known = "goto spa_known"
    lines = []
    # fwknop's rules first: one for each set of ports, against one for each name length
    # of sesame's (a datagram of the other format costs the kernel a port compare each).
    first = ", ".join(f"0x{c:02x}" for c in fwknop.FIRST)
    for ports, sizes in _fwknop_sizes(config).items():
        dport = f"udp dport {{ {', '.join(map(str, ports))} }}"
        udp = ", ".join(str(8 + n) for n in sorted(sizes))
        lines.append(
            f"add rule {t} spa {dport} udp length {{ {udp} }} @th,64,8 {{ {first} }} {known}"
        )
    for ports, names in _spa_names(config).items():
        dport = f"udp dport {{ {', '.join(map(str, ports))} }}"
        size = f"udp length {8 + spa.MIN_SIZE}-{8 + spa.MAX_SIZE}"
        for length in sorted({len(name) for name in names}):
            items = ", ".join(
                "0x" + name.encode().hex() for name in sorted(names) if len(name) == length
            )
            head = f"@th,64,16 0x{spa.VERSION:02x}{length:02x}"
            lines.append(
                f"add rule {t} spa {dport} {size} {head} @th,80,{8 * length} {{ {items} }} {known}"
            )
    rate, burst = config.server.spa_source_rate, config.server.spa_source_burst
    budget = f"limit rate over {rate}/second burst {burst} packets"
    return [
        *lines,
        f"add rule {t} spa counter name spa_unknown drop",
        *(
            f"add rule {t} spa_known update @spa_sources{n} {{ {source} {budget} }}"
            " counter name spa_over_source drop"
            for n, source in (("4", "ip saddr"), ("6", "ip6 saddr & ffff:ffff:ffff:ffff::"))
        ),
        *(
            f"add rule {t} spa_known {ip} saddr @known{n} counter"
            f" {_log(config, group=config.server.known_log_group)} drop"
            for n, ip in (("4", "ip"), ("6", "ip6"))
        ),
        f"add rule {t} spa_known counter {_log(config)} drop",
    ]


def _spa_names(config: Config) -> dict[tuple[int, ...], frozenset[str]]:
    """sesame's SPA ports, grouped by the names that may use them: the users with a
    door on the port (any other name is refused by sesame, so by the kernel first)."""
    names: dict[int, set[str]] = {}
    doors = config.doors_by_name
    for user in config.users:
        for door in user.doors:
            port = doors[door].spa_port if door in doors else None
            if port is not None:
                names.setdefault(port, set()).add(user.name)
    return _grouped({port: frozenset(found) for port, found in names.items()})


def _fwknop_sizes(config: Config) -> dict[tuple[int, ...], frozenset[int]]:
    """fwknop's SPA ports, grouped by the datagram sizes their stanzas can take."""
    sizes: dict[int, frozenset[int]] = {}
    for stanza in config.fwknop:
        tag = fwknop.HMAC_TYPES[stanza.hmac_type] if stanza.hmac_key is not None else 0
        sizes[stanza.spa_port] = sizes.get(stanza.spa_port, frozenset()) | fwknop.lengths(tag)
    return _grouped(sizes)


def _grouped(by_port: dict[int, frozenset[T]]) -> dict[tuple[int, ...], frozenset[T]]:
    out: dict[frozenset[T], list[int]] = {}
    for port, value in sorted(by_port.items()):
        out.setdefault(value, []).append(port)
    return {tuple(ports): value for value, ports in out.items()}


def knocks(config: Config, first: Iterable[Port] | None) -> list[str]:
    """Commands that set the ``knocks`` chain's mode: the first stage in the kernel
    for the ports ``first``, or (None) every knock to userspace."""
    t = f"inet {config.server.table}"
    log = _log(config)
    lines = [f"flush chain {t} knocks", *fill(config.server.table, "first", sorted(first or ()))]
    timeout = f"timeout {max(1, round(config.longest_sequence * 1000))}ms"
    if first is None:
        for n, ip in (("4", "ip"), ("6", "ip6")):
            lines += [
                f"add rule {t} knocks {ip} saddr @follow{n} counter {log} drop",
                f"add rule {t} knocks {ip} saddr @hits{n} counter {log} drop",
            ]
        follow = (
            f"add rule {t} knocks update @follow{n} {{ {ip} saddr {timeout} }} counter {log} drop"
            for n, ip in (("4", "ip"), ("6", "ip6"))
        )
        full = _log(config, FOLLOW_FULL.decode())
        return [
            *lines,
            *follow,
            f"add rule {t} knocks {_SELDOM} counter {full} drop",
            f"add rule {t} knocks counter drop",
        ]
    hit = "meta l4proto . th dport @first"
    for n, ip in (("4", "ip"), ("6", "ip6")):
        lines += [
            # A source sesame follows that knocks a first port again starts over.
            f"add rule {t} knocks {ip} saddr @follow{n} {hit}"
            f" update @follow{n} {{ {ip} saddr {timeout} }}",
            f"add rule {t} knocks {ip} saddr @follow{n} counter {log} drop",
            f"add rule {t} knocks {ip} saddr @hits{n} counter {log} drop",
        ]
    for n, ip in (("4", "ip"), ("6", "ip6")):
        remember = f"update @hits{n} {{ {ip} saddr {timeout} : meta l4proto . th dport }}"
        lines.append(f"add rule {t} knocks {hit} {remember} counter drop")
    return [
        *lines,
        f"add rule {t} knocks {hit} counter {_log(config, FULL.decode())} drop",
        f"add rule {t} knocks counter drop",
    ]


_SELDOM = "limit rate 1/minute burst 1 packets"  # what tells sesame a set is full


def _log(config: Config, prefix: str = "", group: int | None = None) -> str:
    """The statement that hands a packet to sesame's NFLOG group (``log_group``
    unless ``group`` says), whole. No queue threshold here: the sensor sets it on the
    group (1, or QTHRESH_BUSY under a flood)."""
    labelled = f'prefix "{prefix}" ' if prefix else ""
    return f"log {labelled}group {group or config.server.log_group} snaplen {SNAPLEN}"


def fill(table: str, name: str, ports: Iterable[Port]) -> list[str]:
    """Replace the elements of a ``proto . port`` set (one transaction with the rest)."""
    ports = list(ports)
    out = [f"flush set inet {table} {name}"]
    if ports:
        out.append(f"add element inet {table} {name} {{ {_elements(ports)} }}")
    return out
