"""`nemo-r1 decontaminate` on planted copies of benchmark problems: each disguise (verbatim, re-cased,
re-spaced, `\\left(`/`\\right)` and other LaTeX noise, embedded in a longer problem, copied into the
solution) is removed and named in the report with its benchmark row; clean rows are kept; the
counts add up; the console script runs, and a missing input is one error line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_r1.data.decontam import benchmark_rows, words
from nemo_r1.data.decontaminate import decontaminate_file

CONSOLE = Path(sys.executable).with_name("nemo-r1")


def problem(bench: str, rid: str) -> str:
    return dict(benchmark_rows(bench))[rid]


def old_words(text: str) -> list[str]:
    """The reading before LaTeX noise was stripped: lower-cased alphanumeric runs."""
    return re.findall(r"[a-z0-9]+", text.lower())


def latex_noise(text: str) -> str:
    return (text.replace("\\frac", "\\displaystyle\\dfrac").replace("(", "\\left(").replace(")", "\\right)")
            .replace("+", "\\,+\\,").replace("=", "\\!="))


def respace(text: str) -> str:
    text = re.sub(r"(\d)([a-z])", r"\1 \2", text)  # 2x -> 2 x
    text = re.sub(r"\s*([-+=^])\s*", r"\1", text)  # x - 3 -> x-3
    return re.sub(r"\s+", " \n\t ", text)


CLEAN = [
    "A baker sells 14 loaves on Monday and twice as many on Tuesday. How many loaves does she sell?",
    "Let $g(t) = t^2 + 5t$. Compute $g(3) - g(1)$ and explain each step of the arithmetic.",
    "Tom has 3 red marbles, 8 blue marbles and a bag that holds 20. How many more fit in the bag?",
    "Prove that the sum of two odd integers is even, using only the definition of an odd integer.",
]
# (benchmark, row id, how the copy is disguised): every one must be dropped and named.
PLANTS = [
    ("aime24", "aime24-0", lambda p: p),
    ("olympiadbench", "olympiadbench-215", str.upper),
    ("math500", "math500-36", respace),
    ("math500", "math500-20", latex_noise),
    ("minerva", "minerva-5", lambda p: f"Warm-up: a train leaves at noon. Now the real task. {p} "
                                      "Give your final answer in a box and justify it briefly."),
]


def planted_rows() -> tuple[list[dict], dict[int, tuple[str, str]]]:
    """Clean rows with contaminated ones in between; {row index: (benchmark, row id)} of the plants."""
    rows: list[dict] = [{"problem": CLEAN[0], "solution": "28 + 14 = 42"}]
    expected = {}
    for bench, rid, disguise in PLANTS:
        expected[len(rows)] = (bench, rid)
        rows.append({"problem": disguise(problem(bench, rid)), "solution": "omitted"})
        rows.append({"problem": CLEAN[len(rows) // 2 % len(CLEAN)] + f" (variant {len(rows)})", "solution": "x"})
    expected[len(rows)] = ("amc23", "amc23-3")  # a clean problem, a benchmark problem as its solution
    rows.append({"problem": CLEAN[3], "solution": "Recall: " + problem("amc23", "amc23-3")})
    seven = " ".join(words(problem("math500", "math500-10"))[:7])  # 7 shared words: not an 8-gram
    rows.append({"problem": f"{seven} that ends in a 4?", "solution": "no"})
    rows.append({"problem": "  " + CLEAN[0].upper().replace(" ", "   "), "solution": "28 + 14 = 42"})  # duplicate
    return rows, expected


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_normalisation_sees_through_case_spacing_and_latex_noise():
    plain = "Find $\\frac{1}{2}(x+1) \\le 10$, for $3x \\ne 1,000$."
    noisy = ("FIND  $\\displaystyle\\dfrac12\\left( x \\,+\\, 1 \\right) \\leq 10$ ,for "
             "$3 x\\neq 1000$ \\quad \\text{.}")
    assert words(noisy) == words(plain) == ["find", "frac", "1", "2", "x", "1", "leq", "10", "for", "3", "x",
                                            "neq", "1000"]
    assert words("\\Bigl[ \\mathrm{kg} \\Bigr] \\hspace{2pt} \\cdots") == ["kg", "dots"]


def test_the_planted_disguises_hide_from_a_plain_word_reading():
    """The noise and spacing plants are real disguises: lower-cased alphanumerics alone miss them."""
    for rid, disguise in (("math500-36", respace), ("math500-20", latex_noise)):
        text = problem("math500", rid)
        assert old_words(disguise(text)) != old_words(text)
        assert words(disguise(text)) == words(text)


def test_planted_copies_are_removed_and_named(tmp_path):
    rows, expected = planted_rows()
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    report = decontaminate_file(str(data), ["all"], tmp_path / "clean.jsonl", fields=["problem", "solution"])
    found = {m["row"]: (bench, m["benchmark_id"]) for bench, b in report["benchmarks"].items() for m in b["matches"]}
    assert found == expected
    kept = [json.loads(line) for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    clean = [r for i, r in enumerate(rows[:-1]) if i not in expected]
    assert kept == clean  # the 7-word overlap survives; so does everything not planted
    c = report["counts"]
    assert c == {"input": len(rows), "kept": len(clean), "contaminated": len(expected), "duplicates": 1,
                 "skipped": 0}
    assert c["kept"] + c["contaminated"] + c["duplicates"] + c["skipped"] == c["input"]
    assert report["duplicates"] == [{"row": len(rows) - 1, "first": 0}]
    m = next(m for m in report["benchmarks"]["minerva"]["matches"])
    assert m["kind"] == "8-gram" and m["text"] == " ".join(words(problem("minerva", "minerva-5")))
    assert 0 < m["share"] < 1  # embedded: the copy is part of a longer problem
    assert json.loads((tmp_path / "clean.report.json").read_text()) == report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.jsonl", "clean.report.json", "train.jsonl"]


def test_problem_only_by_default_and_threshold_on_share(tmp_path):
    rows, expected = planted_rows()
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    report = decontaminate_file(str(data), ["all"], tmp_path / "a.jsonl")
    assert "amc23" not in {b for b, d in report["benchmarks"].items() if d["dropped"]}  # solution not checked
    strict = decontaminate_file(str(data), ["all"], tmp_path / "b.jsonl", threshold=0.9)
    dropped = {m["row"] for b in strict["benchmarks"].values() for m in b["matches"]}
    embedded = next(i for i, (bench, _) in expected.items() if bench == "minerva")
    assert embedded not in dropped and len(dropped) == 4  # whole copies still go; the embedded one is 1 of 5


def test_against_a_file_with_a_column_and_ids(tmp_path):
    bench = write_jsonl(tmp_path / "heldout.jsonl", [
        {"id": "q-17", "question": "A frog jumps 3 meters forward and 2 back each minute; when does it escape a "
                                   "10 meter well?"},
        {"question": "Short one?"}])
    data = write_jsonl(tmp_path / "train.jsonl", [
        {"problem": "a FROG jumps 3 meters forward and 2 back each minute ... escape?"},
        {"problem": "short one"}, {"problem": CLEAN[2]}])
    report = decontaminate_file(str(data), [f"{bench}:question"], tmp_path / "out.jsonl")
    matches = report["benchmarks"][str(bench)]["matches"]
    assert [(m["row"], m["benchmark_id"], m["kind"]) for m in matches] == [(0, "q-17", "8-gram"),
                                                                         (1, "heldout-1", "exact")]
    assert report["counts"]["kept"] == 1


def test_a_failed_run_leaves_no_output(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"problem": CLEAN[0]}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2: invalid JSON"):
        decontaminate_file(str(data), ["gsm8k"], tmp_path / "out.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]  # no output, no temp file
    report = decontaminate_file(str(data), ["gsm8k"], tmp_path / "out.jsonl", skip_bad_rows=True)
    assert report["counts"] == {"input": 2, "kept": 1, "contaminated": 0, "duplicates": 0, "skipped": 1}


def test_progress_bar_when_asked(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", [{"problem": p} for p in CLEAN])
    decontaminate_file(str(data), ["aime24"], tmp_path / "out.jsonl", progress=True)
    err = capsys.readouterr().err
    assert "decontaminate" in err and "4/4" in err


def run_console(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("NEMO_R1_VERBOSE", None)
    return subprocess.run([str(CONSOLE), "decontaminate", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_console_script(tmp_path):
    rows, expected = planted_rows()
    write_jsonl(tmp_path / "train.jsonl", rows)
    p = run_console("--data", "train.jsonl", "--against", "all", "--ngram", "8", "--fields", "problem,solution",
                    "--out", "out/clean.jsonl", "--report", "out/report.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{len(rows)} rows of train.jsonl -> kept {len(rows) - len(expected) - 1}" in p.stdout
    assert "aime24 (30 problems): 1 dropped" in p.stdout and "row 1 ~ aime24-0 (exact, problem)" in p.stdout
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["counts"]["contaminated"] == len(expected)
    assert len((tmp_path / "out/clean.jsonl").read_text().splitlines()) == report["counts"]["kept"]


def test_console_script_missing_input_is_one_line(tmp_path):
    p = run_console("--data", "nope.jsonl", "--against", "all", "--out", "out.jsonl", cwd=tmp_path)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemo-r1: data file nope.jsonl does not exist"), p.stderr
    assert p.stdout == "" and not (tmp_path / "out.jsonl").exists()
