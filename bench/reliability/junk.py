"""A million malformed packets through the real kernel path, as whole Ethernet frames
from the flood host: IPv4 options, IPv6 extension header chains, fragments,
truncations and wrong lengths, every TCP flag combination, wrong checksums, random
payloads to both SPA ports, from forged sources of both families."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Iterator
from ipaddress import ip_address

from bench import craft
from bench.reliability.base import FWKNOP_PORT, SPA_PORT, Lab, Row

KNOCK_PORTS = (7000, 8000, 9000, 7100, 7200, 7300, 40000, 40500, 40999)
EXTENSIONS = (craft.HOP, craft.ROUTING, craft.FRAGMENT, craft.DESTINATION, 51, 50, 59, 135, 255)
RATE = 100_000  # packets a second, at most


def packets(count: int, server4: bytes, server6: bytes, seed: int = 9) -> Iterator[bytes]:
    """``count`` malformed or hostile packets, each drawn at random."""
    rng = random.Random(seed)
    kinds = (_options, _extensions, _fragment, _truncated, _flags, _spa_junk)
    for _ in range(count):
        yield rng.choice(kinds)(rng, server4, server6)


def _src4(rng: random.Random) -> bytes:
    return (100 << 24 | 64 << 16 | rng.randrange(1 << 22)).to_bytes(4, "big")


def _src6(rng: random.Random) -> bytes:
    return bytes.fromhex("20010db8f0") + rng.randbytes(11)


def _transport(rng: random.Random, src: bytes, dst: bytes) -> tuple[int, bytes]:
    port = rng.choice((*KNOCK_PORTS, SPA_PORT, FWKNOP_PORT, rng.randrange(1, 65536)))
    good = rng.random() < 0.7
    if rng.random() < 0.5:
        flags = rng.randrange(256)
        return craft.TCP, craft.tcp(src, dst, rng.randrange(1024, 65536), port, flags, good=good)
    payload = rng.randbytes(rng.randrange(0, 200))
    return craft.UDP, craft.udp(src, dst, rng.randrange(1024, 65536), port, payload, good=good)


def _options(rng: random.Random, dst4: bytes, dst6: bytes) -> bytes:
    src = _src4(rng)
    proto, body = _transport(rng, src, dst4)
    return craft.ipv4(src, dst4, proto, body, options=rng.randbytes(rng.randrange(1, 41)))


def _extensions(rng: random.Random, dst4: bytes, dst6: bytes) -> bytes:
    src = _src6(rng)
    proto, body = _transport(rng, src, dst6)
    following = proto
    for kind in rng.sample(EXTENSIONS, rng.randrange(1, 5)):
        size = 8 * rng.randrange(1, 4)
        head = craft.extension(kind, following, size)
        if kind == craft.FRAGMENT:
            head = head[:2] + rng.randbytes(2) + head[4:]
        body = head + body
        following = kind
    return craft.ipv6(src, dst6, following, body)


def _fragment(rng: random.Random, dst4: bytes, dst6: bytes) -> bytes:
    if rng.random() < 0.5:
        src = _src4(rng)
        proto, body = _transport(rng, src, dst4)
        frag = rng.choice((0x2000, rng.randrange(1, 0x2000), 0x2000 | rng.randrange(1, 0x2000)))
        return craft.ipv4(src, dst4, proto, body, frag=frag)
    src = _src6(rng)
    proto, body = _transport(rng, src, dst6)
    head = bytes([proto, 0]) + struct.pack("!H", rng.randrange(1, 1 << 16)) + rng.randbytes(4)
    return craft.ipv6(src, dst6, craft.FRAGMENT, head + body)


def _truncated(rng: random.Random, dst4: bytes, dst6: bytes) -> bytes:
    ipv6 = rng.random() < 0.5
    src = _src6(rng) if ipv6 else _src4(rng)
    dst = dst6 if ipv6 else dst4
    proto, body = _transport(rng, src, dst)
    whole = craft.ipv6(src, dst, proto, body) if ipv6 else craft.ipv4(src, dst, proto, body)
    cut = bytearray(whole[: rng.randrange(1, len(whole) + 1)])
    if rng.random() < 0.5 and len(cut) > 4:  # a length field that lies
        at = 4 if ipv6 else 2
        cut[at : at + 2] = struct.pack("!H", rng.randrange(1 << 16))
    return bytes(cut)


def _flags(rng: random.Random, dst4: bytes, dst6: bytes) -> bytes:
    ipv6 = rng.random() < 0.3
    src = _src6(rng) if ipv6 else _src4(rng)
    dst = dst6 if ipv6 else dst4
    body = craft.tcp(
        src, dst, rng.randrange(1024, 65536), rng.choice(KNOCK_PORTS), rng.randrange(256)
    )
    return craft.ipv6(src, dst, craft.TCP, body) if ipv6 else craft.ipv4(src, dst, craft.TCP, body)


def _spa_junk(rng: random.Random, dst4: bytes, dst6: bytes) -> bytes:
    ipv6 = rng.random() < 0.3
    src = _src6(rng) if ipv6 else _src4(rng)
    dst = dst6 if ipv6 else dst4
    size = rng.choice((rng.randrange(0, 1400), rng.randrange(46, 130), rng.randrange(96, 1500)))
    payload = rng.randbytes(size)
    if rng.random() < 0.3:  # looks like sesame's SPA: version 1, a short user name
        payload = bytes([1, 5]) + b"alice" + payload[7:]
    port = rng.choice((SPA_PORT, FWKNOP_PORT))
    body = craft.udp(src, dst, rng.randrange(1024, 65536), port, payload)
    return craft.ipv6(src, dst, craft.UDP, body) if ipv6 else craft.ipv4(src, dst, craft.UDP, body)


def run(lab: Lab) -> None:
    count = 50_000 if lab.short else 1_000_000
    lab.start()
    rss = lab.rss_mb()
    frames = craft.Frames(lab.flood.netns, "eth0", lab.server_mac)
    server4 = ip_address(lab.server.ipv4).packed
    server6 = ip_address(lab.server.ipv6).packed
    started = time.monotonic()
    sent = 0
    for packet in packets(count, server4, server6):
        frames.send(packet)
        sent += 1
        if sent % 1000 == 0:
            ahead = started + sent / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    seconds = time.monotonic() - started
    frames.close()
    counters = lab.counters()
    dropped = sum(v for k, v in counters.items() if k.startswith("dropped"))
    grants = lab.grants()
    latency = lab.knock()  # a legitimate user still gets in
    peak = lab.peak_mb()
    ok = lab.alive() and not grants and peak <= 64
    lab.add(
        Row(
            "junk",
            "malformed packets through the kernel: IPv4 options, IPv6 extension header"
            " chains, fragments, truncations and lying lengths, all 256 TCP flag"
            " combinations, wrong checksums, random payloads to both SPA ports, forged"
            " sources",
            f"{sent:,} packets in {seconds:.0f} s",
            f"{'0' if lab.alive() else '1'} crashes, {len(grants)} grants,"
            f" {dropped:,} reached sesame and were dropped and counted, peak RSS"
            f" {peak:.1f} MB (from {rss:.1f}), a knock after it opened in {latency * 1000:.1f} ms",
            ok,
            {"sent": sent, "dropped": dropped, "peak_rss_mb": round(peak, 1)},
        )
    )
