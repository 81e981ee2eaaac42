"""Send a bounded flood from inside a namespace (run by the benchmark, as root):

    python -m bench.flood NETNS DEST KIND COUNT [RATE]

KIND: syn (random ports), first (SYNs to port 7000: the first knock of a sequence),
junk-udp:PORT (random bytes), sesame-wrong:PORT, fwknop-wrong:PORT (well formed, wrong
key), sesame-valid:PORT (valid SPA, each source its own, from USERS users in turn: a
user's share of SPA is bounded). Sources are distinct addresses in 100.64.0.0/10; junk
and wrongly keyed datagrams come from a pool of POOL of them, over and over.
Prints the seconds it took.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from ipaddress import IPv4Address

from bench.lab import Raw, spoofed
from sesame.wire import fwknop, spa

WALL_KEY = bytes(range(32))
USERS = 1000  # the valid SPA flood's users (sesame bounds each user's share)
POOL = 1 << 17  # distinct junk datagrams (and sources) a junk flood goes through


def user_key(i: int) -> bytes:
    return hashlib.sha256(f"u{i}".encode()).digest()


def packets(raw: Raw, kind: str, count: int) -> list[bytes]:
    rng = random.Random(7)
    name, _, port_text = kind.partition(":")
    # Valid SPA's sources open, and sesame then hears them first for an hour (known4):
    # drawn apart from other floods' (by chance a few hundred of 100,000 in common), so
    # that what those send does not come that way.
    sources = spoofed(count, 12 if name == "sesame-valid" else 11)
    name, _, among = name.partition("@")  # sesame-wrong@N: naming users u0..uN-1 in turn
    port = int(port_text or 0)
    out = []
    import time

    now = int(time.time())
    if name == "sesame-wrong":
        aead = spa.cipher(bytes(32))
    ciphers = [spa.cipher(user_key(i)) for i in range(USERS)] if name == "sesame-valid" else []
    for i, source in enumerate(sources):
        sport = 1024 + i % 60000
        if name == "syn":
            out.append(raw.syn(source, sport, rng.randrange(1, 65536)))
        elif name == "first":
            out.append(raw.syn(source, sport, 7000))
        elif name == "junk-udp":
            out.append(raw.udp(source, sport, port, os.urandom(rng.randrange(1, 300))))
        elif name == "sesame-wrong":
            user = f"u{i % int(among)}" if among else "alice"
            payload = spa.encode(user, aead, "spa", IPv4Address(source), now, os.urandom(12))
            out.append(raw.udp(source, sport, port, payload))
        elif name == "sesame-valid":
            user, aead_i = f"u{i % USERS}", ciphers[i % USERS]
            payload = spa.encode(user, aead_i, "spa", IPv4Address(source), now, os.urandom(12))
            out.append(raw.udp(source, sport, port, payload))
        elif name == "fwknop-wrong":
            payload = fwknop.encode(
                "alice",
                f"{IPv4Address(source)},tcp/22",
                b"k" * 32,
                b"h" * 64,
                timestamp=now,
                random=os.urandom(16),
            )
            out.append(raw.udp(source, sport, port, payload))
        else:
            raise SystemExit(f"unknown kind {kind}")
    return out


def main() -> None:
    netns, destination, kind, count = sys.argv[1:5]
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else None
    raw = Raw(netns, destination)
    total = int(count)
    # Junk and wrongly keyed datagrams from a pool of sources, over and over: a long
    # flood costs no memory, and takes no longer to make.
    pooled = kind.startswith(("junk-udp", "sesame-wrong", "fwknop-wrong"))
    pool = min(total, POOL) if pooled else total
    batch = raw.batch(packets(raw, kind, pool))
    if os.environ.get("FLOOD_READY"):  # say when the packets are made and sending starts
        print("sending", flush=True)
    print(f"{raw.send(batch, rate, total):.3f}", flush=True)


if __name__ == "__main__":
    main()
