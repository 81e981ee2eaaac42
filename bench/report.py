"""The benchmark's results as a Markdown table, with the targets checked."""

from __future__ import annotations

from typing import Any


def _lat(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("trials"):
        return "—"
    return f"{entry['median']} / {entry['p95']} / {entry['min']}-{entry['max']} ms" + (
        f" ({entry['failures']} failed)" if entry.get("failures") else ""
    )


def markdown(report: dict[str, Any], title: bool = True, level: str = "##") -> str:
    m, r = report["machine"], report["results"]
    s, k, f = r.get("sesame", {}), r.get("knockd", {}), r.get("fwknopd", {})
    lines = [
        *(["# sesame benchmark", ""] if title else []),
        f"{m['date']} · kernel {m['kernel']} · {m['cpus']} CPUs · Python {m['python']} · "
        f"{m['nft']} · {m['knockd']} · {m['fwknopd']} · {m['sesame']}",
        "",
        f"{level} Knock → open latency (median / p95 / min-max)",
        "",
        "| | plain sequence | sesame SPA | fwknop-format SPA |",
        "|---|---|---|---|",
        f"| sesame | {_lat(s.get('latency_plain'))} | {_lat(s.get('latency_spa'))} | "
        f"{_lat(s.get('latency_fwknop_spa'))} |",
        f"| knockd | {_lat(k.get('latency_plain'))} | — | — |",
        f"| fwknopd | — | — | {_lat(f.get('latency_fwknop_spa'))} |",
        "",
        f"{level} Junk floods (the daemon's CPU and peak RSS over one flood; a legitimate knock"
        " during a second)",
        "",
        "| flood | daemon | CPU s | CPU µs per packet sent | handled/s | CPU µs per packet"
        " handled | peak RSS MB | legit knock during flood |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, key, who in (
        ("SYN, random ports and sources", "syn_flood", (("sesame", s), ("knockd", k))),
        ("random bytes to the SPA port", "spa_flood", (("sesame", s), ("fwknopd", f))),
        ("well-formed, wrong key (sesame SPA)", "spa_flood_wrong_key", (("sesame", s),)),
        ("well-formed, wrong key (fwknop SPA)", "fwknop_flood", (("sesame", s), ("fwknopd", f))),
    ):
        for name, data in who:
            entry = data.get(key)
            if entry:
                rate = entry.get("handled_per_s", "-")
                per = entry.get("cpu_us_per_packet", "-")
                lines.append(
                    f"| {label} | {name} | {entry['cpu_s']} | {entry.get('cpu_us_per_sent', '-')} |"
                    f" {rate} | {per} | "
                    f"{entry['peak_rss_mb']} | {_lat(entry['legit_during_flood'])} |"
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
            f"{level} The gate at scale (µs per new connection)",
            "",
            "| live grants | sesame (nft set) | rule per grant (iptables chain) |",
            "|---|---|---|",
        ]
        for size, e in g.items():
            lines.append(
                f"| {int(size):,} | {e['sesame_us_per_connection']} | "
                f"{e['iptables_chain_us_per_connection']} |"
            )
    return "\n".join(lines) + "\n"
