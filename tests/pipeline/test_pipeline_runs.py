"""Whole pipelines of the data stages (decontaminate -> filter -> filter), seconds each: every stage a
real `nemo-r1` child process. What reruns after an edit, what a failure and --stage report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemo_r1.cli import main

PIPELINE = """\
output_dir: {out}
stages:
  - name: clean
    kind: decontaminate
    data: {traces}
    against: [{bench}]
    ngram: 8
    keep_duplicates: true          # two samples per problem share its text
  - name: correct
    kind: filter
    data: ${{stages.clean.data}}
    filters: [correct]
  - name: short
    kind: filter
    data: ${{stages.correct.data}}
    filters: [length]
    max_chars: 30
"""
ROOT = Path(__file__).resolve().parents[2]
LONG = "Tom has three red apples and buys five more red apples at the store on Monday. How many now?"


def traces() -> list[dict]:
    """4 problems x 2 samples: 6 correct, 2 wrong; problem q3 shares 15 words in a row with the benchmark's."""
    rows = []
    for i, (problem, answer) in enumerate([("What is 2 + 3?", "5"), ("What is 4 + 4?", "8"), ("What is 9 - 7?", "2"),
                                           (LONG, "8")]):
        for j, given in enumerate([answer, answer if i % 2 else "0"]):
            text = f"{problem.split('?')[0]} gives \\boxed{{{given}}}" + (" and that is all, surely" if j else "")
            rows.append({"id": f"q{i}", "problem": problem, "answer": answer, "completion": text,
                         "finish_reason": "stop"})
    return rows


@pytest.fixture
def setup(tmp_path) -> dict:
    data = tmp_path / "data"
    data.mkdir()
    (data / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in traces()))
    bench = LONG.replace("Monday. How many now?", "Tuesday. How many are there?")  # 15 words in a row shared
    (data / "bench.jsonl").write_text(json.dumps({"id": "b0", "problem": bench}) + "\n")
    config = tmp_path / "pipe.yaml"
    config.write_text(PIPELINE.format(out=tmp_path / "run", traces=data / "traces.jsonl", bench=data / "bench.jsonl"))
    return {"config": config, "out": tmp_path / "run", "traces": data / "traces.jsonl"}


def run(setup: dict, capsys, *extra: str) -> tuple[int, str, str]:
    rc = main(["pipeline", "--config", str(setup["config"]), *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def statuses(out: Path) -> list[tuple[str, str]]:
    return [(r["name"], r["status"]) for r in json.loads((out / "summary.json").read_text())["stages"]]


def mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted(out.glob("*/done.json"))}


def edit(setup: dict, old: str, new: str) -> None:
    text = setup["config"].read_text()
    assert old in text
    setup["config"].write_text(text.replace(old, new))


@pytest.mark.timeout(300)
def test_reruns_only_what_changed(setup, capsys):
    out = setup["out"]
    rc, stdout, _ = run(setup, capsys)
    assert rc == 0, stdout
    assert statuses(out) == [("clean", "ran"), ("correct", "ran"), ("short", "ran")]
    rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["stages"]}
    assert rows["clean"]["numbers"] == {"kept": 6, "total": 8}  # q3's two samples copy the benchmark
    assert rows["correct"]["numbers"] == {"kept": 4, "total": 6}  # q0 and q2 have one wrong sample each
    assert rows["short"]["numbers"] == {"kept": 3, "total": 4}  # the long-winded sample is over 30 chars
    assert rows["short"]["outputs"]["data"] == str(out / "03_short" / "kept.jsonl")
    assert len((out / "03_short" / "kept.jsonl").read_text().splitlines()) == 3
    assert "kept 3/4" in stdout and "filter: 6 rows of" in stdout  # the table, and the stages' own output
    first = mtimes(out)
    assert list(first) == ["01_clean", "02_correct", "03_short"]

    rc, stdout, _ = run(setup, capsys)  # unchanged: runs nothing
    assert rc == 0
    assert statuses(out) == [("clean", "skipped"), ("correct", "skipped"), ("short", "skipped")]
    assert mtimes(out) == first
    assert "filter: " not in stdout and stdout.count("skipped") >= 3

    edit(setup, "max_chars: 30", "max_chars: 60")  # the last stage only
    rc, stdout, _ = run(setup, capsys)
    assert rc == 0
    assert "stage short: config changed (max_chars 30 -> 60), rerunning it\n" in stdout
    assert statuses(out) == [("clean", "skipped"), ("correct", "skipped"), ("short", "ran")]
    after = mtimes(out)
    assert after["01_clean"] == first["01_clean"] and after["02_correct"] == first["02_correct"]
    assert after["03_short"] != first["03_short"]

    edit(setup, "ngram: 8", "ngram: 20")  # the first stage: it and both later ones run again
    rc, stdout, _ = run(setup, capsys)
    assert rc == 0
    assert "stage clean: config changed (ngram 8 -> 20), rerunning it and 2 later stages\n" in stdout
    assert "stage correct: stage clean ran again, running it" in stdout
    assert statuses(out) == [("clean", "ran"), ("correct", "ran"), ("short", "ran")]
    rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["stages"]}
    assert rows["clean"]["numbers"] == {"kept": 8, "total": 8}  # no 20 words in a row are shared
    assert rows["correct"]["numbers"] == {"kept": 6, "total": 8}
    assert rows["short"]["numbers"] == {"kept": 4, "total": 6}  # q3's completions are over 60 chars

    setup["traces"].write_text(setup["traces"].read_text().splitlines(keepends=True)[0])  # an input file changes
    rc, stdout, _ = run(setup, capsys)
    assert rc == 0
    assert f"stage clean: input changed ({setup['traces']}), rerunning it and 2 later stages" in stdout
    assert json.loads((out / "summary.json").read_text())["stages"][0]["numbers"] == {"kept": 1, "total": 1}


@pytest.mark.timeout(300)
def test_a_failing_stage_stops_the_pipeline_with_its_log(setup, capsys):
    out = setup["out"]
    edit(setup, "filters: [correct]", "filters: [correct]\n    columns: [answer=gold]")
    rc, stdout, stderr = run(setup, capsys)
    log = out / "02_correct" / "stage.log"
    assert rc == 1
    assert f"nemo-r1 pipeline: stage correct failed (exit code 1); log: {log}" in stderr
    assert "no 'gold' column" in log.read_text() and "no 'gold' column" in stdout + stderr
    assert statuses(out) == [("clean", "ran"), ("correct", "failed"), ("short", "pending")]
    assert not (out / "02_correct" / "done.json").exists() and not (out / "03_short").exists()

    edit(setup, "\n    columns: [answer=gold]", "")  # fixed: the failed stage starts afresh, the first is kept
    rc, stdout, _ = run(setup, capsys)
    assert rc == 0
    assert "stage correct: config changed (columns [\"answer=gold\"] -> <default>) since its interrupted run" in stdout
    assert statuses(out) == [("clean", "skipped"), ("correct", "ran"), ("short", "ran")]
    assert "no 'gold' column" not in (out / "02_correct" / "stage.log").read_text()  # a cleared dir, a new log


@pytest.mark.timeout(300)
def test_one_stage_at_a_time_and_dry_run(setup, capsys):
    out = setup["out"]
    rc, _, stderr = run(setup, capsys, "--stage", "short")
    assert rc == 2
    assert ("--stage short: the earlier stage clean is not finished with the current config (not run yet); run "
            f"`nemo-r1 pipeline --config {setup['config']} --stage clean` first") in stderr

    rc, stdout, _ = run(setup, capsys, "--stage", "clean")
    assert rc == 0
    assert statuses(out) == [("clean", "ran"), ("correct", "pending"), ("short", "pending")]
    rc, stdout, _ = run(setup, capsys, "--dry-run")
    assert rc == 0
    assert "stage correct: not run yet, would run it" in stdout and "stage short: would run (after stage correct)" in stdout
    assert not (out / "02_correct").exists()  # a dry run writes nothing
    rc, _, _ = run(setup, capsys, "--stage", "correct")
    assert rc == 0
    assert statuses(out) == [("clean", "skipped"), ("correct", "ran"), ("short", "pending")]
    rc, _, _ = run(setup, capsys, "--stage", "short")
    assert rc == 0
    assert statuses(out) == [("clean", "skipped"), ("correct", "skipped"), ("short", "ran")]
    assert json.loads((out / "summary.json").read_text())["complete"] is True
    moved = out.parent / "moved"
    out.rename(moved)  # a run dir moved elsewhere keeps its finished stages, and its outputs follow it
    rc, stdout, _ = run(setup, capsys, f"output_dir={moved}")
    assert rc == 0
    rows = json.loads((moved / "summary.json").read_text())["stages"]
    assert [r["status"] for r in rows] == ["skipped"] * 3
    assert rows[2]["outputs"]["data"] == str(moved / "03_short" / "kept.jsonl")
    assert json.loads((moved / "03_short" / "done.json").read_text())["outputs"]["data"] == \
        "${output_dir}/03_short/kept.jsonl"


def test_multi_rank_launches_run_one_stage_and_rank_0_owns_it(setup, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    rc, _, stderr = run(setup, capsys)
    assert rc == 2 and "under a multi-rank launch (WORLD_SIZE=2) run one stage per job with --stage NAME" in stderr
    monkeypatch.setenv("RANK", "1")
    rc, stdout, _ = run(setup, capsys, "--stage", "clean")
    assert rc == 0 and "rank 1: stage clean (decontaminate) runs on rank 0 only" in stdout
    assert not setup["out"].exists()  # markers, logs and the summary are rank 0's


@pytest.mark.timeout(120)
def test_sigterm_stops_after_the_running_stage_and_the_rerun_finishes(setup, capsys):
    """What a launcher's preemption does: SIGTERM reaches the running stage (the trainers save and
    exit), the pipeline returns 0 for the requeue, and the next run picks up from there."""
    out = setup["out"]
    cmd = [sys.executable, "-m", "nemo_r1.cli", "pipeline", "--config", str(setup["config"])]
    log = setup["out"].parent / "sigterm.log"
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (out / "02_correct" / "started.json").exists():  # stage 2 is starting its command
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert "nemo-r1 pipeline: SIGTERM: stopping after the running stage saves its state" in text
    assert "nemo-r1 pipeline: stopped during stage correct; rerun the same command to resume it" in text
    assert statuses(out) == [("clean", "ran"), ("correct", "stopped"), ("short", "pending")]
    assert not (out / "02_correct" / "done.json").exists()
    rc, stdout, _ = run(setup, capsys, "--stage", "correct")
    assert rc == 0
    assert "stage correct: interrupted run found, resuming it (attempt 2)" in stdout
    assert statuses(out) == [("clean", "skipped"), ("correct", "resumed"), ("short", "pending")]
    assert (out / "02_correct" / "stage.log").read_text().count("=== ") == 2  # both attempts, one log

def test_a_second_pipeline_in_the_same_dir_is_refused(setup, capsys):
    from nemo_r1.pipeline.run import hold_lock

    held = hold_lock(setup["out"])  # as a running pipeline holds it
    try:
        rc, _, stderr = run(setup, capsys)
        assert rc == 2
        assert f"{setup['out']} is in use by another nemo-r1 pipeline (pid {os.getpid()} on " in stderr
        assert not (setup["out"] / "01_clean").exists()
        rc, stdout, _ = run(setup, capsys, "--dry-run")  # looking is allowed
        assert rc == 0 and "stage clean: not run yet, would run it" in stdout
    finally:
        held.close()
