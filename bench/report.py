"""The benchmark's results as a Markdown table, with the targets checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.curve import PEERS
from bench.runs import every

DOCS = Path(__file__).parent.parent / "docs"
README = Path(__file__).parent.parent / "README.md"


EVERY = PEERS["fwknopd_every"]  # fwknopd set to judge every datagram of a flood


def write_between(path: Path, marker: str, text: str) -> None:
    """Replace what stands between ``<!-- MARKER:start -->`` and ``<!-- MARKER:end -->``
    in ``path`` with ``text``; refuse (SystemExit) if the markers are not there."""
    start, end = f"<!-- {marker}:start -->\n", f"<!-- {marker}:end -->"
    content = path.read_text()
    head, found, rest = content.partition(start)
    if not found or end not in rest:
        raise SystemExit(f"{path} has no {start.strip()} ... {end} to write between")
    _, _, tail = rest.partition(end)
    path.write_text(head + start + text + end + tail)


def _lat(entry: dict[str, Any] | None) -> str:
    """A latency: median / p95 (with their spread over the runs) / fastest-slowest."""
    if not entry or not entry.get("trials"):
        return "—"
    fastest = getattr(entry["min"], "low", entry["min"])
    slowest = getattr(entry["max"], "high", entry["max"])
    return f"{entry['median']} / {entry['p95']} / {fastest}-{slowest} ms" + (
        f" ({entry['failures']} failed)" if entry.get("failures") else ""
    )


def _paces(report: dict[str, Any]) -> list[str]:
    """A line on how fast the machine ran in each run: a fixed Python loop timed at the
    run's start and end (bench.lab.pace), and the share of CPU time the hypervisor
    gave to other machines (steal) meanwhile."""
    paces = [run.get("pace") for run in report.get("runs") or []]
    if not paces or None in paces:
        return []
    each = "; ".join(
        f"run {n}: {p['start_ms']} ms then {p['end_ms']} ms, steal {p['steal_pct']}%"
        for n, p in enumerate(paces, 1)
    )
    return [
        "",
        "The machine's pace (a fixed Python loop, the median of 15, at each run's start and"
        f" end: lower is faster) and the CPU time stolen by the hypervisor: {each}.",
    ]


def markdown(report: dict[str, Any], title: bool = True, level: str = "##") -> str:
    m, r = report["machine"], report["results"]
    s, k, f = r.get("sesame", {}), r.get("knockd", {}), r.get("fwknopd", {})
    e = r.get("fwknopd_every", {})
    lines = [
        *(["# sesame benchmark", ""] if title else []),
        f"{m['date']} · kernel {m['kernel']} · {m['cpus']} CPUs · Python {m['python']} · "
        f"{m['nft']} · {m['knockd']} · {m['fwknopd']} · {m['sesame']}",
        *_paces(report),
        "",
        f"{level} Knock → open latency (median / p95 / fastest-slowest)",
        "",
        "| | plain sequence | sesame SPA | fwknop-format SPA |",
        "|---|---|---|---|",
        f"| sesame | {_lat(s.get('latency_plain'))} | {_lat(s.get('latency_spa'))} | "
        f"{_lat(s.get('latency_fwknop_spa'))} |",
        f"| knockd | {_lat(k.get('latency_plain'))} | — | — |",
        f"| fwknopd | — | — | {_lat(f.get('latency_fwknop_spa'))} |",
        f"| {EVERY} | — | — | {_lat(e.get('latency_fwknop_spa'))} |",
        "",
        f"{level} Junk floods (the daemon's CPU and peak RSS over one flood; a legitimate knock"
        " during a second)",
        "",
        "| flood | daemon | CPU s | CPU µs per packet sent | machine CPU µs per packet sent,"
        " above the baseline | handled/s | CPU µs per packet handled (machine, above the"
        " baseline) | peak RSS MB | legit knock during flood | the same from an address"
        " that never opened |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, key, who in (
        ("SYN, random ports and sources", "syn_flood", (("sesame", s), ("knockd", k))),
        ("random bytes to the SPA port", "spa_flood", (("sesame", s), ("fwknopd", f))),
        ("well-formed, wrong key (sesame SPA)", "spa_flood_wrong_key", (("sesame", s),)),
        (
            "well-formed, wrong key (fwknop SPA)",
            "fwknop_flood",
            (("sesame", s), ("fwknopd", f), (EVERY, e)),
        ),
    ):
        for name, data in who:
            entry = data.get(key)
            if entry:
                rate = entry.get("handled_per_s", "-")
                per = entry.get("cpu_us_per_packet", "-")
                if "machine_added_us_per_packet" in entry:
                    per = f"{per} ({entry['machine_added_us_per_packet']})"
                lines.append(
                    f"| {label} | {name} | {entry['cpu_s']} | {entry.get('cpu_us_per_sent', '-')} |"
                    f" {entry.get('machine_added_us_per_sent', '-')} | {rate} | {per} | "
                    f"{entry['peak_rss_mb']} | {_lat(entry['legit_during_flood'])} |"
                    f" {_lat(entry.get('legit_during_flood_new'))} |"
                )
    turns = r.get("fwknop_turns")
    if turns:
        lines += [
            "",
            f"{level} Wrongly keyed fwknop-format datagrams, in turn: sesame, then {EVERY}",
            "",
            "Each round a flood dropped on arrival (the round's baseline), then into sesame,"
            " then into fwknopd; each figure is the median of the rounds (the CPU a datagram"
            " handled: the daemon's own, and the machine's above the baseline).",
            "",
            "| daemon | handled/s | CPU µs a datagram (machine, above the baseline) |"
            " each round's machine figure |",
            "|---|---|---|---|",
        ]
        for name, label in (("sesame", "sesame"), ("fwknopd_every", EVERY)):
            taken = turns[name]
            each = ", ".join(str(x["machine_added_us_per_packet"]) for x in taken["rounds"])
            lines.append(
                f"| {label} | {taken['handled_per_s']} | {taken['cpu_us_per_packet']}"
                f" ({taken['machine_added_us_per_packet']}) | {each} |"
            )
    t = s.get("spa_throughput", {})
    if t:
        lines += [
            "",
            f"{level} SPA throughput (sesame)",
            "",
            f"- valid SPA granted: {t['valid_granted']['per_second']}/s "
            f"({t['valid_granted']['handled']} of {t['valid_granted']['sent']})",
            f"- invalid SPA rejected: {t['invalid_rejected']['per_second']}/s "
            f"({t['invalid_rejected']['handled']} of {t['invalid_rejected']['sent']})",
        ]
    lines += ["", f"{level} Spoofed sources (first knock each)", ""]
    for name, data in (("sesame", s), ("knockd", k)):
        if data.get("spoofed_sources"):
            e = data["spoofed_sources"]
            lines.append(
                f"- {name}: peak RSS {e['peak_rss_mb']} MB, {e.get('cpu_s', '-')} CPU seconds,"
                f" after {e['sources']:,} sources"
            )
    g = r.get("gate_scale", {})
    if g:
        lines += [
            "",
            f"{level} The gate at scale (µs per new connection; MB/s of one allowed stream)",
            "",
            "| live grants | sesame (nft set) | rule per grant (iptables chain) |",
            "|---|---|---|",
        ]
        for size, e in g.items():
            lines.append(
                f"| {int(size):,} | {e['sesame_us_per_connection']} µs,"
                f" {e.get('sesame_mb_s', '-')} MB/s | {e['iptables_chain_us_per_connection']} µs,"
                f" {e.get('iptables_chain_mb_s', '-')} MB/s |"
            )
    from bench import cluster, curve, scale

    lines += curve.markdown(r, level)
    lines += scale.markdown(r.get("scale", {}), level)
    lines += cluster.markdown(report["results"].get("cluster", {}), level)
    checks = _checks(report)
    if checks:
        lines += ["", f"{level} Targets", "", "| target | met | figures |", "|---|---|---|"]
        for name, met, figures in checks:
            lines.append(
                f"| {name} | {'yes' if met else 'no' if met is False else '-'} | {figures} |"
            )
    return "\n".join(lines) + "\n"


def _checks(report: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """The targets over every run of the report (met only if met in each)."""
    return every([targets({"results": run}) for run in report.get("runs") or [report["results"]]])


def summary(report: dict[str, Any]) -> str:
    """README's part: the targets, the flood curve and the scaling table."""
    from bench import curve, scale

    m, r = report["machine"], report["results"]
    runs = len(report.get("runs") or [r])
    lines = [
        f"{m['date']} · kernel {m['kernel']} · {m['cpus']} CPUs · {m['sesame']} ·"
        f" {runs} runs: each figure is the median of the runs, with the least and the most"
        " in brackets; a target is met only if it was met in every run.",
        *_paces(report),
        "",
        "| target | met in every run | each run's figures |",
        "|---|---|---|",
    ]
    for name, met, figures in _checks(report):
        lines.append(f"| {name} | {'yes' if met else 'no' if met is False else '-'} | {figures} |")
    lines += curve.markdown(r, "###")
    lines += scale.markdown(r.get("scale", {}), "###")
    return "\n".join(lines) + "\n"


def targets(report: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Each target of the benchmark issue: (target, met, the figures behind it);
    met is None where the run has no figures for it."""
    r = report["results"]
    s, k, f = r.get("sesame", {}), r.get("knockd", {}), r.get("fwknopd", {})
    e = r.get("fwknopd_every", {})
    out: list[tuple[str, bool | None, str]] = []
    modes = [s.get(m) or {} for m in ("latency_plain", "latency_spa", "latency_fwknop_spa")]
    lats = (k.get("latency_plain"), f.get("latency_fwknop_spa"), e.get("latency_fwknop_spa"))
    peers = [p["median"] for p in lats if p]
    if all(m.get("median") is not None for m in modes) and peers:
        worst = max(m["median"] for m in modes)
        out.append(
            (
                "latency median at most 1/5 of knockd's and fwknopd's",
                worst <= min(peers) / 5,
                f"sesame's slowest {worst} ms, peers' {peers} ms",
            )
        )
        p95 = max(m["p95"] for m in modes)
        out.append(("latency p95 under 2 ms in every sesame mode", p95 < 2, f"{p95} ms"))
    if s.get("syn_flood") and k.get("syn_flood"):
        a, b = s["syn_flood"], k["syn_flood"]
        out.append(
            (
                "junk SYN flood: sesame's CPU at most 1/10 of knockd's, or none to speak of"
                " (under 10 ms for the flood)",
                a["cpu_s"] <= b["cpu_s"] / 10 or a["cpu_s"] < 0.01,
                f"{a['cpu_s']} s against {b['cpu_s']} s (the whole machine, above the"
                f" baseline: {a['machine_added_us_per_sent']} µs against"
                f" {b['machine_added_us_per_sent']} µs a packet)",
            )
        )
    mine, theirs = s.get("fwknop_flood") or {}, e.get("fwknop_flood") or {}
    turns = r.get("fwknop_turns")
    if turns:  # taken in turn (reports before it have the two sections' figures only)
        mine, theirs = turns["sesame"], turns["fwknopd_every"]
    if mine.get("handled_per_s") and theirs.get("handled_per_s"):
        # In turn, the same flood each time: as many of it handled (a rate would carry
        # the sender's timing from one flood to the next).
        rate = "handled" if turns else "handled_per_s"
        ok = (
            mine[rate] >= theirs[rate]
            and mine["machine_added_us_per_packet"] < theirs["machine_added_us_per_packet"]
        )
        out.append(
            (
                "fwknop-format junk SPA flood: rejected at fwknopd's rate or more, with less"
                " of the machine's CPU a packet (fwknopd set to judge every datagram)",
                ok,
                f"{mine['handled_per_s']}/s at {mine['machine_added_us_per_packet']}"
                f" µs against {theirs['handled_per_s']}/s at"
                f" {theirs['machine_added_us_per_packet']} µs"
                + (
                    f" (in turn, the median of {len(turns['sesame']['rounds'])} rounds)"
                    if turns
                    else ""
                ),
            )
        )
    t = s.get("spa_throughput")
    if t:
        bad, good = t["invalid_rejected"]["per_second"], t["valid_granted"]["per_second"]
        out.append(
            ("at least 20,000 invalid SPA rejected a second per core", bad >= 20_000, f"{bad}/s")
        )
        out.append(("at least 5,000 valid SPA granted a second", good >= 5_000, f"{good}/s"))
    spoof = s.get("spoofed_sources")
    if spoof:
        out.append(
            (
                f"peak RSS at most 64 MB after {spoof['sources']:,} spoofed sources",
                spoof["peak_rss_mb"] <= 64,
                f"{spoof['peak_rss_mb']} MB",
            )
        )
    g = r.get("gate_scale", {})
    if "0" in g and "100000" in g:
        a, b = g["0"]["sesame_us_per_connection"], g["100000"]["sesame_us_per_connection"]
        out.append(
            (
                "no measurable per-connection slowdown from 0 to 100,000 grants",
                b <= a * 1.2,
                f"{a} µs and {b} µs",
            )
        )
    during = [v for v in s.values() if isinstance(v, dict) and "legit_during_flood" in v]
    floods = [v["legit_during_flood"] for v in during]
    if floods:
        ok = all(x.get("trials") and not x.get("failures") and x["p95"] < 2 for x in floods)
        short = sum(v.get("flood_lasted_the_trials") is False for v in during)
        worst = max((x.get("p95") or 0) for x in floods)
        out.append(
            (
                "a legitimate knock during every flood opens, every time, p95 under 2 ms"
                " (from an address that opened before)",
                ok and not short,
                f"worst p95 {worst} ms" + (f"; {short} ended before the trials" if short else ""),
            )
        )
    from bench import cluster, curve, scale

    out += curve.targets(r) + scale.targets(r.get("scale", {}))
    return out + cluster.targets(r.get("cluster", {}))
