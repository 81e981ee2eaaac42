"""The reliability suite: sesame attacked in the namespace lab, as an attacker and as
bad luck would. As root, after scripts/setup.sh:

    .venv/bin/python -m bench.reliability [--short] [--soak SECONDS] [--docs]

Sections: scans, junk (a million malformed packets), resources (every bounded one
filled on purpose), faults, soak. A full run writes bench/results/reliability.md
and .json and, with --docs, its table into docs/reliability.md; a short run (CI's) only
prints it. Exits 1 if anything did not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.__main__ import machine
from bench.reliability import faults, junk, resources, scans, soak
from bench.reliability.base import Lab, Row

RESULTS = Path(__file__).parent.parent / "results"
SECTIONS = ("scans", "junk", "resources", "faults", "soak")


def markdown(report: dict[str, Any]) -> str:
    """The table, from the rows of the latest run of each part."""
    runs = report["runs"]
    lines = [
        " · ".join(
            f"{', '.join(r['sections'])}: {r['date']}, {r['seconds'] / 60:.1f} min" for r in runs
        ),
        f"kernel {report['machine']['kernel']} · {report['machine']['cpus']} CPUs ·"
        f" {report['machine']['sesame']}",
        "",
        "| part | what was thrown | how much | what held | |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        mark = "held" if row["ok"] else "**did not hold**"
        lines.append(
            f"| {row['section']} | {row['attack']} | {row['amount']} | {row['held']} | {mark} |"
        )
    return "\n".join(lines) + "\n"


def merged(
    rows: list[Row], sections: list[str], info: dict[str, str], seconds: float
) -> dict[str, Any]:
    """This run's rows in place of the same parts' rows of the saved report (a long soak
    run alone replaces only the soak)."""
    saved: dict[str, Any] = {"rows": [], "runs": []}
    path = RESULTS / "reliability.json"
    if path.exists():
        saved = json.loads(path.read_text())
    kept = [r for r in saved.get("rows", []) if r["section"] not in sections]
    new = kept + [asdict(r) for r in rows]
    new.sort(key=lambda r: SECTIONS.index(r["section"]))
    runs = [
        {**r, "sections": [x for x in r["sections"] if x not in sections]}
        for r in saved.get("runs", [])
    ]
    runs = [r for r in runs if r["sections"]]
    runs.append({"sections": sections, "date": info["date"], "seconds": round(seconds)})
    return {"machine": info, "rows": new, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a smaller run (CI's)")
    parser.add_argument("--soak", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--docs",
        "--readme",
        dest="docs",
        action="store_true",
        help="put the table into docs/reliability.md (between its markers)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the reliability suite needs root (namespaces, nftables)", file=sys.stderr)
        return 1
    soak_seconds = args.soak if args.soak is not None else (20.0 if args.short else 120.0)
    started = time.monotonic()
    lab = Lab(args.short)
    try:
        for name in args.only:
            print(f"== {name}", flush=True)
            if name == "soak":
                soak.run(lab, soak_seconds)
            else:
                {"scans": scans, "junk": junk, "resources": resources, "faults": faults}[name].run(
                    lab
                )
    finally:
        lab.close()
    seconds = time.monotonic() - started
    info = machine()
    this = {
        "machine": info,
        "rows": [asdict(r) for r in lab.rows],
        "runs": [{"sections": args.only, "date": info["date"], "seconds": round(seconds)}],
    }
    text = markdown(this)
    if not args.short:  # a short run (CI's) only prints
        report = merged(lab.rows, args.only, info, seconds)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
        text = markdown(report)
        (RESULTS / "reliability.md").write_text(text)
    if args.docs:
        from bench.report import DOCS, write_between

        write_between(DOCS / "reliability.md", "reliability", text)
    print(text)
    return 0 if lab.rows and all(r.ok for r in lab.rows) else 1


if __name__ == "__main__":
    threading.excepthook = lambda a: None
    sys.exit(main())
