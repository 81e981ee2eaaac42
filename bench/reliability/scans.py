"""Port scans of every kind, in both orders and both families, against every kind of
door at once: sesame's plain TCP and UDP sequences (ascending, the easiest for a scan
to complete), SPA, one-time sequences and fwknop's SPA; then knockd.conf's doors,
one of which takes any TCP packet and one only FINs."""

from __future__ import annotations

import time

from bench.reliability.base import KNOCKD, Lab, Row

SCANS = {
    "SYN (-sS)": ("-sS",),
    "connect (-sT)": ("-sT",),
    "FIN (-sF)": ("-sF",),
    "NULL (-sN)": ("-sN",),
    "Xmas (-sX)": ("-sX",),
    "ACK (-sA)": ("-sA",),
    "bad checksums (-sS --badsum)": ("-sS", "--badsum"),
    "UDP (-sU)": ("-sU",),
}
SHORT = ("SYN (-sS)", "FIN (-sF)", "bad checksums (-sS --badsum)", "UDP (-sU)")


def run(lab: Lab) -> None:
    names = SHORT if lab.short else tuple(SCANS)
    orders = (("ascending", ("-r",)),) if lab.short else (("ascending", ("-r",)), ("random", ()))
    for label, knockd in (("sesame's doors", False), ("knockd.conf's doors", True)):
        if lab.short and knockd:
            names = ("FIN (-sF)", "Xmas (-sX)")
        daemon = lab.start(KNOCKD if knockd else None, knockd=knockd, verbose=True)
        started, scans = time.monotonic(), 0
        for name in names:
            for _, order in orders:
                for ipv6 in (False, True):
                    lab.forget_scanners()  # each scan from a clean source
                    lab.scan(*SCANS[name], *order, ipv6=ipv6)
                    scans += 1
        lab.settled()
        opened = lab.opened_for(lab.stranger.ipv4) + lab.opened_for(lab.stranger.ipv6)
        strangers = [
            g for g in lab.grants() if g.split()[0] in (lab.stranger.ipv4, lab.stranger.ipv6)
        ]
        lab.add(
            Row(
                "scans",
                f"nmap {', '.join(names)}; {' and '.join(o for o, _ in orders)} order; IPv4"
                f" and IPv6; against {label}",
                f"{scans} scans of {_ports()} ports",
                f"{opened} doors opened to the scanner",
                opened == 0 and not strangers and lab.alive(),
                {"scans": scans, "opened": opened, "seconds": round(time.monotonic() - started, 1)},
            )
        )
        del daemon


def _ports() -> str:
    from bench.reliability.base import SCANNED

    total = 0
    for part in SCANNED.split(","):
        first, _, last = part.partition("-")
        total += int(last or first) - int(first) + 1
    return f"{total:,}"
