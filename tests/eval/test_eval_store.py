"""The samples file: atomic per-problem appends, repair of torn/incomplete tails, no duplicates."""

import json

import pytest

from nemo_r1.eval.store import SampleStore


def recs(pid, n, tag="x"):
    return [{"id": pid, "sample": j, "completion": f"{tag}{j}", "answer": None, "correct": False, "length": 1}
            for j in range(n)]


def test_append_and_reload(tmp_path):
    path = tmp_path / "s.jsonl"
    st = SampleStore(path, n=2)
    st.append_problem(recs("a", 2))
    st.append_problem(recs("b", 2))
    again = SampleStore(path, n=2)
    assert list(again.done) == ["a", "b"] and again.repaired == 0
    assert [r["completion"] for r in again.done["b"]] == ["x0", "x1"]
    with pytest.raises(ValueError, match="already written"):
        again.append_problem(recs("a", 2))
    with pytest.raises(ValueError, match="samples 0..1"):
        again.append_problem(recs("c", 1))


def test_torn_and_incomplete_tail_is_dropped(tmp_path):
    path = tmp_path / "s.jsonl"
    st = SampleStore(path, n=3)
    st.append_problem(recs("a", 3))
    with open(path, "a") as f:  # what a kill can leave: one whole line of problem b, then half a line
        f.write(json.dumps(recs("b", 3)[0]) + "\n")
        f.write(json.dumps(recs("b", 3)[1])[:17])
    st2 = SampleStore(path, n=3)
    assert list(st2.done) == ["a"] and st2.repaired == 2
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["id"] == "a" for x in lines)
    st2.append_problem(recs("b", 3, tag="y"))
    final = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["id"], r["sample"]) for r in final] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]


def test_other_n_is_an_error(tmp_path):
    path = tmp_path / "s.jsonl"
    SampleStore(path, n=4).append_problem(recs("a", 4))
    with pytest.raises(ValueError, match="--n is 2"):
        SampleStore(path, n=2)
