"""`nemo-r1 filter`: each filter's reasons on hand-made rows (real math-verify through the accuracy
reward, the real SmolLM2 tokenizer, the embedded model as judge), the order of filters, and the CLI on
the bundled example with its known counts; kept + dropped = input everywhere."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_r1.data.filter import filter_file, parse_steps, run_filters
from nemo_r1.data.filters import (
    FILTERS,
    FilterContext,
    FilterRegistry,
    correct,
    format_check,
    length,
    pass_rate,
)
from nemo_r1.data.judge import judge_prompt, parse_judgement
from nemo_r1.data.loading import DataError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "data" / "examples" / "filter_traces.jsonl"
CONSOLE = Path(sys.executable).with_name("nemo-r1")


def row(completion: str, answer: str = "72", **extra: object) -> dict[str, object]:
    return {"problem": extra.pop("problem", "How many clips?"), "answer": answer, "completion": completion, **extra}


def ctx(**kw: object) -> FilterContext:
    return FilterContext(workers=0, **kw)  # in-process math-verify: a pool costs more than 10 rows


def reasons(outcomes: list) -> list[tuple[bool, str]]:
    return [(o.keep, o.reason) for o in outcomes]


def test_correct_names_each_reason():
    rows = [row("<think>48+24</think> \\boxed{72}"), row("so \\boxed{73}"), row("it is 72"),
            row("\\boxed{72}", answer="---"), row("\\boxed{?}"), row("\\boxed{72.0}", answer="72"),
            row("\\boxed{\\frac{1}{2}}", answer="0.5")]
    assert reasons(correct(rows, ctx())) == [
        (True, "correct"), (False, "wrong_answer"), (False, "no_answer"), (False, "gold_unparseable"),
        (False, "answer_unparseable"), (True, "correct"), (True, "correct")]


def test_pass_rate_groups_by_id_or_problem_text_and_keeps_the_bounds():
    by_id = [row("\\boxed{72}", id="a"), row("\\boxed{1}", id="a"), row("\\boxed{1}", id="a"), row("\\boxed{1}", id="a"),
             row("\\boxed{72}", id="b"), row("\\boxed{72}", id="b")]
    out = pass_rate(by_id, ctx(), 0.25, 0.5)
    assert reasons(out) == [(True, "ok")] * 4 + [(False, "pass_rate_above")] * 2
    assert out[0].detail == {"pass_rate": 0.25, "samples": 4, "correct": 1}
    assert pass_rate(by_id, ctx(), 0.3, 1.0)[0].reason == "pass_rate_below"
    by_text = [row("\\boxed{72}", problem="p1"), row("\\boxed{2}", problem="p1"), row("\\boxed{72}", problem=" p2 ")]
    assert [o.detail["pass_rate"] for o in pass_rate(by_text, ctx(), 0, 1)] == [0.5, 0.5, 1.0]
    bad_gold = [row("\\boxed{72}", answer="", id="c"), row("\\boxed{72}", answer="", id="c")]
    assert reasons(pass_rate(bad_gold, ctx(), 0, 1)) == [(False, "gold_unparseable")] * 2
    with pytest.raises(ValueError, match="LOW"):
        pass_rate(by_id, ctx(), 0.6, 0.1)


def test_length_truncated_tokens_and_chars():
    rows = [row("short \\boxed{72}", finish_reason="length"), row(" ".join(["word"] * 40)), row("x" * 300), row("fine")]
    out = length(rows[:2], ctx(max_completion_tokens=30))
    assert reasons(out) == [(False, "truncated"), (False, "too_many_tokens")]
    assert out[1].detail == {"tokens": 40}  # SmolLM2: "word" and each " word" are one token
    out = length(rows, ctx(max_chars=250))
    assert reasons(out) == [(False, "truncated"), (True, "ok"), (False, "too_many_chars"), (True, "ok")]
    assert out[2].detail == {"chars": 300}
    assert reasons(length(rows, ctx()))[1:] == [(True, "ok")] * 3  # no limits: only truncation


def test_format_think_block_and_one_boxed_answer():
    rows = [row("<think>a</think> \\boxed{1}"), row("<think>a \\boxed{1}"), row("<think>a</think> 1"),
            row("<think>\\boxed{2}</think> \\boxed{1} and \\boxed{1}"), row("prefilled</think> \\boxed{1}"),
            row("no think, \\fbox{1}")]
    assert reasons(format_check(rows, ctx())) == [
        (True, "ok"), (False, "think_unclosed"), (False, "no_boxed"), (False, "multiple_boxed"), (True, "ok"), (True, "ok")]
    assert reasons(format_check(rows[1:2], ctx(think=False))) == [(True, "ok")]


def test_filters_apply_in_order_and_counts_add_up():
    rows = [row("\\boxed{72}", finish_reason="length"), row("\\boxed{1}"), row("<think>\\boxed{72}")]
    kept, dropped, steps = run_filters(rows, parse_steps(["correct", "length", "format"]), ctx())
    assert kept == [] and [(d["filter"], d["reason"]) for d in dropped] == [
        ("correct", "wrong_answer"), ("length", "truncated"), ("format", "think_unclosed")]
    assert [(s["input"], s["kept"]) for s in steps] == [(3, 2), (2, 1), (1, 0)]
    assert dropped[0]["completion"] == "\\boxed{1}"  # the row itself travels with its reason


def test_registry_and_step_parsing():
    assert FILTERS.names() == ["correct", "pass_rate", "length", "format", "judge"]
    reg = FilterRegistry()
    reg.add("x", correct)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", correct)
    assert parse_steps(["pass_rate", "0.1", "0.6", "correct"]) == [("pass_rate", (0.1, 0.6)), ("correct", ())]
    for bad, msg in ((["pass_rate", "0.1"], "takes 2 numbers"), (["corect"], "unknown filter"), ([], "at least one")):
        with pytest.raises(DataError, match=msg):
            parse_steps(bad)


def test_judge_prompt_and_parsing():
    p = judge_prompt("What is 1/2?", "\\frac{1}{2}", "<think>long thoughts</think>It is one half.")
    assert "\\frac{1}{2}" in p and "It is one half." in p and "long thoughts" not in p and "YES or NO" in p
    assert [parse_judgement(t) for t in ("YES", " no.", "Yes, it matches", "The answer is wrong", "")] == [
        True, False, True, None, None]


def test_judge_decides_only_what_math_verify_cannot(tmp_path):
    """The embedded model on 3 undecidable rows (HF backend of the eval engine): mechanics, not quality."""
    rows = [row("\\boxed{72}"), row("\\boxed{5}"), row("The answer is seventy-two."),
            row("\\boxed{72}", answer="---"), row("I think it's \\boxed{?}")]
    c = ctx(judge_model="embedded:smollm2", judge_backend="hf")
    kept, dropped, steps = run_filters(rows, parse_steps(["judge"]), c)
    s = steps[0]
    assert s["kept"] + sum(s["dropped_reasons"].values()) == 5 and len(kept) + len(dropped) == 5
    assert kept[0] is rows[0] and dropped[0]["reason"] == "wrong_answer"  # decided by math-verify alone
    judged = [d for d in dropped if d["reason"].startswith("judge_")]
    assert s["kept_reasons"].get("judge_yes", 0) + len(judged) == 3
    assert {d["verdict"] for d in judged} <= {"no_answer", "gold_unparseable", "answer_unparseable"}
    for d in judged:  # a NO/unclear matches what the judge said
        assert d["reason"] == {False: "judge_no", None: "judge_unclear"}[parse_judgement(d["judge_output"])]


def test_cli_on_the_bundled_example(tmp_path):
    out = tmp_path / "kept.jsonl"
    cmd = [str(CONSOLE), "filter", "pass_rate", "0.1", "0.6", "correct", "length", "format", "--data", str(EXAMPLE),
           "--out", str(out), "--max-completion-tokens", "300", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "kept.report.json").read_text())
    assert report["counts"] == {"input": 60, "kept": 6, "dropped": 54}
    assert report["dropped_by_reason"] == {
        "pass_rate/pass_rate_above": 16, "pass_rate/pass_rate_below": 8, "pass_rate/gold_unparseable": 4,
        "correct/wrong_answer": 15, "correct/no_answer": 5, "length/truncated": 1, "length/too_many_tokens": 1,
        "format/think_unclosed": 2, "format/multiple_boxed": 2}
    assert [(s["filter"], s["input"], s["kept"]) for s in report["filters"]] == [
        ("pass_rate", 60, 32), ("correct", 32, 12), ("length", 12, 10), ("format", 10, 6)]
    source = [json.loads(x) for x in EXAMPLE.read_text().splitlines()]
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    dropped = [json.loads(x) for x in (tmp_path / "kept.dropped.jsonl").read_text().splitlines()]
    assert all(k in source for k in kept) and {k["kind"] for k in kept} == {"correct"}
    assert len(kept) + len(dropped) == 60
    assert {(d["id"], d["sample"]) for d in dropped} | {(k["id"], k["sample"]) for k in kept} == \
        {(r["id"], r["sample"]) for r in source}
    truncated = next(d for d in dropped if d["reason"] == "truncated")
    assert truncated["kind"] == "truncated_boxed" and truncated["filter"] == "length"
    assert "pass_rate/too" not in proc.stdout and "kept 6" in proc.stdout


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text(json.dumps({"problem": "p", "answer": "1", "text": "x"}) + "\n")
    proc = subprocess.run([str(CONSOLE), "filter", "correct", "--data", str(bad), "--out", str(tmp_path / "o.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
    assert f"{bad}:1: no 'completion' column" in proc.stderr and "--columns completion=NAME" in proc.stderr
    with pytest.raises(DataError, match="needs --judge-model"):
        from nemo_r1.data.filter import main
        main(["judge", "--data", str(bad), "--out", str(tmp_path / "o.jsonl")])


def test_column_mapping(tmp_path):
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"q": "p", "gold": "3", "out": "\\boxed{3}"}) + "\n")
    report = filter_file(str(data), tmp_path / "o.jsonl", parse_steps(["correct"]),
                         ctx(columns={"problem": "q", "answer": "gold", "completion": "out"}))
    assert report["counts"]["kept"] == 1


def test_bundled_example_is_reproducible_and_documented():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from make_filter_example import build
    finally:
        sys.path.pop(0)
    raw = EXAMPLE.read_bytes()
    assert raw == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in build()).encode()
    readme = (ROOT / "data" / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("| examples/filter_traces.jsonl |"))
    assert int(line.split("|")[2]) == raw.count(b"\n") == 60 and hashlib.sha256(raw).hexdigest() in line
