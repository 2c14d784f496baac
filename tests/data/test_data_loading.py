"""Loading rows: file types, HF-style folders, column mapping, GSM8K answers, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemo_r1.data import DataConfig, DataError, gsm8k_final_answer, load_rows
from nemo_r1.data.bundled import data_dir

SHARED = data_dir()


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, bytes] | None = None) -> Path:
    lines = [json.dumps(r).encode() for r in rows]
    for idx, raw in (raw_lines or {}).items():
        lines.insert(idx, raw)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_gsm8k_answers_are_parsed_after_hashes():
    rows = load_rows(str(SHARED / "gsm8k_train.jsonl"), "problem", {"problem": "question"}, max_samples=50).rows
    assert len(rows) == 50
    assert rows[0]["answer"] == "72" and rows[0]["solution"].startswith("Natalia sold 48/2")
    assert all("####" not in r["answer"] and r["answer"].lstrip("-").replace(".", "").isdigit() for r in rows)
    assert gsm8k_final_answer("so\n#### 1,234") == "1234"
    assert gsm8k_final_answer("no marker") is None


def test_all_bundled_problem_sets_load():
    for name, n in [("math500.jsonl", 500), ("aime24.jsonl", 30), ("gsm8k_test.jsonl", 1319)]:
        cols = {"problem": "question"} if name.startswith("gsm8k") else {}
        assert len(load_rows(str(SHARED / name), "problem", cols).rows) == n


def test_json_parquet_and_hf_folder(tmp_path):
    rows = [{"q": f"What is {i} + 1?", "a": str(i + 1)} for i in range(5)]
    cols = {"problem": "q", "answer": "a"}
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    assert [r["answer"] for r in load_rows(str(tmp_path / "d.json"), "problem", cols).rows] == ["1", "2", "3", "4", "5"]
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    assert len(load_rows(str(tmp_path / "d.parquet"), "problem", cols).rows) == 5
    folder = tmp_path / "hf_style"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "test.jsonl", rows[:2])
    assert len(load_rows(str(folder), "problem", cols, split="test").rows) == 2


def test_bad_rows_name_file_and_line(tmp_path):
    good = {"problem": "What is 1 + 1?", "answer": "2"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, {"problem": "x"}, good])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: missing column 'answer'.*data\.columns"):
        load_rows(str(path), "problem")
    path = write_jsonl(tmp_path / "empty.jsonl", [good, good, {"problem": "  ", "answer": "1"}])
    with pytest.raises(DataError, match=r"empty\.jsonl:3: empty problem"):
        load_rows(str(path), "problem")
    path = write_jsonl(tmp_path / "latin1.jsonl", [good], {1: '{"problem": "caf\xe9", "answer": "1"}'.encode("latin-1")})
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not valid UTF-8"):
        load_rows(str(path), "problem")
    path = write_jsonl(tmp_path / "broken.jsonl", [good], {0: b'{"problem": "x", '})
    with pytest.raises(DataError, match=r"broken\.jsonl:1: invalid JSON"):
        load_rows(str(path), "problem")


def test_bad_rows_skipped_and_counted(tmp_path):
    good = {"problem": "What is 1 + 1?", "answer": "2"}
    path = write_jsonl(tmp_path / "mixed.jsonl", [good, {"problem": "x"}, {"problem": "", "answer": "1"}, good],
                       {2: b"\xff\xfe not utf8", 5: b"[1, 2]"})
    res = load_rows(str(path), "problem", skip_bad_rows=True)
    assert len(res.rows) == 2 and res.skipped == 4
    assert sum(res.skip_reasons.values()) == 4 and any("UTF-8" in k for k in res.skip_reasons)


def test_messages_and_text_rows_are_checked(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match="no assistant message"):
        load_rows(str(path), "messages")
    path = write_jsonl(tmp_path / "text.jsonl", [{"text": "hello"}, {"body": "x"}])
    with pytest.raises(DataError, match=r"text\.jsonl:2: missing column 'text'"):
        load_rows(str(path), "text")


def test_missing_file_and_config_checks(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_rows(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="unsupported type"):
        (tmp_path / "x.csv").write_text("a,b")
        load_rows(str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="data.format"):
        DataConfig(format="chat")


def test_code_problems_need_tests_not_answers():
    rows = load_rows(str(SHARED / "mbppplus.jsonl"), "problem", {"problem": "prompt"}).rows
    assert len(rows) == 378 and "answer" not in rows[0] and rows[0]["entry_point"] == "similar_elements"
