"""Grading and data loading: real math-verify via the rewards, real bundled benchmark files."""

import json

import pytest

from nemo_r1.eval.benchmarks import (
    BENCHMARKS,
    DataError,
    data_benchmark,
    get_benchmark,
    gsm8k_gold,
    load_problems,
)
from nemo_r1.eval.grading import gold_parses, grade_code, grade_math


def test_grade_math_cases():
    completions = [
        "so the total is 9*2 = 18. \\boxed{18}",
        "The answer is \\boxed{\\frac{1}{2}}",
        "I think it is 18 but I will not box it",
        "\\boxed{17}",
        "\\boxed{18}",
    ]
    golds = ["18", "0.5", "18", "18", "\\frac{3}{"]
    g = grade_math(completions, golds)
    assert [x.correct for x in g] == [True, True, False, False, None]
    assert [x.answer for x in g] == ["18", "\\frac{1}{2}", None, "17", "18"]


def test_unparseable_gold_is_never_correct():
    assert not gold_parses(None) and not gold_parses("") and not gold_parses("\\frac{3}{")
    assert gold_parses("\\left( 3, \\frac{\\pi}{2} \\right)")
    # the completion repeats the broken gold verbatim: still unscorable, not correct
    assert grade_math(["\\boxed{\\frac{3}{}"], ["\\frac{3}{"])[0].correct is None


def test_gsm8k_gold():
    assert gsm8k_gold("He pays 3*4=<<3*4=12>>12.\n#### 1,234") == "1234"
    assert gsm8k_gold("no marker") is None


def test_mbppplus_graded_in_the_sandbox():
    rows = load_problems(get_benchmark("mbppplus"), limit=2)
    good = [f"Here it is:\n```python\n{p.row['canonical_solution']}\n```" for p in rows]
    bad = ["```python\ndef nothing():\n    return 0\n```", "I cannot write code."]
    g = grade_code(good + bad, [p.row for p in rows] * 2)
    assert [x.correct for x in g] == [True, True, False, False]
    assert g[0].answer.strip() == rows[0].row["canonical_solution"].strip() and g[3].answer is None


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_bundled_benchmark_loads(name):
    probs = load_problems(get_benchmark(name))
    expected = {"math500": 500, "aime24": 30, "amc23": 40, "gsm8k": 1319, "minerva": 272,
                "olympiadbench": 674, "mbppplus": 378}[name]
    assert len(probs) == expected and len({p.id for p in probs}) == expected
    if BENCHMARKS[name].kind == "math":
        assert all(p.gold for p in probs)


def test_data_file_errors_name_file_and_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"q": "1+1?", "a": "2"}) + "\n" + json.dumps({"q": "", "a": "3"}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: missing or empty problem column 'problem'"):
        load_problems(data_benchmark(f))
    with pytest.raises(DataError, match=r"d.jsonl:2: missing or empty problem column 'q'"):
        load_problems(data_benchmark(f, {"problem": "q", "answer": "a"}))
    f.write_text('{"problem": "x", "answer": "1"}\n{oops\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: not valid JSON"):
        load_problems(data_benchmark(f))
    with pytest.raises(DataError, match="did you mean 'math500'"):
        get_benchmark("math5000")


def test_data_may_be_an_hf_source(tmp_path):
    """`--data hf:...` goes through `datasets` (a local dataset folder here); the split defaults to test."""
    folder = tmp_path / "my_bench"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"question": "2+2?", "final": "4"}) + "\n")
    (folder / "test.jsonl").write_text("".join(json.dumps({"question": f"{i}+1?", "final": str(i + 1)}) + "\n"
                                               for i in range(3)))
    bench = data_benchmark(f"hf:{folder}", {"problem": "question", "answer": "final"})
    probs = load_problems(bench)
    assert bench.name == "my_bench" and [(p.problem, p.gold) for p in probs] == [("0+1?", "1"), ("1+1?", "2"),
                                                                                ("2+1?", "3")]
    assert [p.id for p in probs] == ["my_bench-0", "my_bench-1", "my_bench-2"]
    assert len(load_problems(data_benchmark(f"hf:{folder}@train", {"problem": "question", "answer": "final"}))) == 1
    bad = tmp_path / "bad_bench"
    bad.mkdir()
    (bad / "test.jsonl").write_text(json.dumps({"problem": "a?", "answer": "1"}) + "\n"
                                    + json.dumps({"problem": " ", "answer": "1"}) + "\n")
    with pytest.raises(DataError, match=r"hf:.*bad_bench\[test\] row 1: missing or empty problem column 'problem'"):
        load_problems(data_benchmark(f"hf:{bad}"))
