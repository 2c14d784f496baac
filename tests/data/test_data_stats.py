"""`nemo-r1 data stats`: counts, token percentiles (real SmolLM2 tokenizer), pass rates from a column or
graded with the accuracy reward, and the JSON + PNG it writes, on the bundled example's known numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nemo_r1.data.filters import FilterContext
from nemo_r1.data.stats import compute_stats, percentiles, stats_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "data" / "examples" / "filter_traces.jsonl"
CONSOLE = Path(sys.executable).with_name("nemo-r1")


def test_percentiles_nearest_rank():
    assert percentiles(list(range(1, 101))) == {"p5": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95, "max": 100}
    assert percentiles([7]) == {"p5": 7, "p25": 7, "p50": 7, "p75": 7, "p95": 7, "max": 7}
    assert percentiles([3, 1, 2, 4])["p50"] == 2


def test_pass_rate_from_a_reward_column_groups_problems_by_text():
    rows = [{"question": "a b c", "reward": r} for r in (1.0, 0.0, 0.0, 0.0)] + \
           [{"question": "d", "reward": r} for r in (1.0, 1.0)] + [{"question": "e", "reward": 0.0}]
    s = compute_stats(rows, FilterContext())
    assert (s["rows"], s["problems"], s["samples_per_problem"]) == (7, 3, {"1": 1, "2": 1, "4": 1})
    assert s["pass_rate"]["histogram"] == {"0.000": 1, "0.250": 1, "1.000": 1}
    assert (s["pass_rate"]["all_wrong"], s["pass_rate"]["all_correct"], s["pass_rate"]["rows_correct"]) == (1, 1, 3)
    assert s["lengths"]["question"]["tokens"]["max"] == 3 and "completion" not in s["lengths"]


def test_graded_stats_of_the_bundled_example(tmp_path):
    s = stats_file(str(EXAMPLE), FilterContext(workers=0), tmp_path / "st", do_grade=True)
    assert (s["rows"], s["problems"], s["samples_per_problem"]) == (60, 9, {"2": 2, "8": 7})
    assert s["verdicts"] == {"correct": 25, "wrong_answer": 22, "no_answer": 8, "gold_unparseable": 4,
                             "answer_unparseable": 1}
    pr = s["pass_rate"]  # the two problems with an unparseable gold are left out, as `filter pass_rate` does
    assert pr["histogram"] == {"0.000": 1, "0.125": 1, "0.375": 1, "0.500": 2, "0.625": 1, "1.000": 1}
    assert (pr["rows_correct"], pr["rows_graded"], pr["problems_ungradable"]) == (25, 56, 2)
    comp = s["lengths"]["completion"]["tokens"]
    assert comp["p5"] <= comp["p50"] <= comp["p95"] < comp["max"] and comp["max"] > 1000  # the two long traces
    saved = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert saved["pass_rate"] == pr and "lengths_raw" not in saved
    assert (tmp_path / "st" / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_the_table(tmp_path):
    proc = subprocess.run([str(CONSOLE), "data", "stats", str(EXAMPLE), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "rows 60, problems 9, samples per problem: 2 x2, 8 x7" in proc.stdout
    assert "pass rate" not in proc.stdout  # no correctness column and no --grade
    assert proc.stdout.count("\n") < 10 and (tmp_path / "stats.png").is_file()
