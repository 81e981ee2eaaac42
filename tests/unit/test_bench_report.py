"""bench.report: the fwknop-format CPU target, from the figures taken in turn when a
run has them, else from the two daemons' sections (as in reports made before)."""

from __future__ import annotations

from bench import report
from bench.runs import combine, every

TARGET = "fwknop-format junk SPA flood"
MACHINE = dict.fromkeys(
    ("date", "kernel", "cpus", "python", "nft", "knockd", "fwknopd", "sesame"), "-"
)


def _daemon(cost: float, per_s: int = 20_000) -> dict[str, object]:
    return {
        "handled": 100_000,
        "handled_per_s": per_s,
        "machine_added_us_per_packet": cost,
        "cpu_us_per_packet": 9.0,
    }


def _run(sections: tuple[float, float], turns: tuple[float, float] | None) -> dict[str, object]:
    run: dict[str, object] = {
        "sesame": {"fwknop_flood": _daemon(sections[0])},
        "fwknopd_every": {"fwknop_flood": _daemon(sections[1])},
    }
    if turns is not None:
        run["fwknop_turns"] = {
            name: _daemon(cost) | {"rounds": [_daemon(cost + d) for d in (-1.0, 0.0, 1.0)]}
            for name, cost in zip(("sesame", "fwknopd_every"), turns, strict=True)
        }
    return run


def _target(runs: list[dict[str, object]]) -> tuple[str, bool | None, str]:
    checks = every([report.targets({"results": run}) for run in runs])
    (row,) = [t for t in checks if t[0].startswith(TARGET)]
    return row


def test_without_turns_the_sections_figures_decide():
    _, met, figures = _target([_run((14.0, 18.0), None)] * 3)
    assert met is True
    assert figures.startswith("20000/s at 14.0 µs against 20000/s at 18.0 µs")
    assert "in turn" not in figures


def test_the_figures_taken_in_turn_decide_over_the_sections():
    for turns, met in (((14.0, 18.0), True), ((25.0, 18.0), False)):
        _, ok, figures = _target([_run((18.0, 14.0) if met else (14.0, 18.0), turns)] * 3)
        assert ok is met
        assert (
            f"at {turns[0]} µs against 20000/s at {turns[1]} µs (in turn, the median of 3"
            in figures
        )


def test_one_run_that_missed_in_turn_misses_the_target():
    runs = [_run((14.0, 18.0), (mine, 18.0)) for mine in (14.0, 14.0, 19.0)]
    assert _target(runs)[1] is False


def test_the_tables_show_the_rounds_taken_in_turn():
    runs = [{"fwknop_turns": _run((0, 0), (14.0, 18.0))["fwknop_turns"]}] * 3
    text = report.markdown({"machine": MACHINE, "runs": runs, "results": combine(runs)})
    assert "Wrongly keyed fwknop-format datagrams, in turn: sesame, then fwknopd" in text
    assert "| sesame | 20000 | 9.0 (14.0) | 13.0, 14.0, 15.0 |" in text


def test_in_turn_the_same_flood_handled_whole_keeps_up_whatever_the_senders_pace():
    run = _run((14.0, 18.0), (14.0, 18.0))
    run["fwknop_turns"]["sesame"]["handled_per_s"] = 19_990  # a slower sender, all handled
    assert _target([run])[1] is True
    run["fwknop_turns"]["sesame"]["handled"] = 99_000  # a thousand not judged
    assert _target([run])[1] is False
