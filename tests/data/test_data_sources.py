"""Where data comes from: the bundled folder, relative paths, `hf:` sources through `datasets`, and
decontamination against the benchmarks."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_r1.data import DataConfig, DataError, load_examples, load_rows
from nemo_r1.data.bundled import BENCHMARKS, PROJECT_ROOT, benchmark_problems, data_dir
from nemo_r1.data.decontam import NgramIndex, decontaminate, resolve_benchmarks, words
from nemo_r1.data.loading import parse_hf_source


def test_bundled_data_lives_in_the_checkout_and_matches_its_readme():
    assert data_dir() == PROJECT_ROOT / "data"
    readme = (data_dir() / "README.md").read_text()
    files = sorted(p.name for p in data_dir().glob("*.jsonl"))
    assert set(files) >= {BENCHMARKS[b].file for b in BENCHMARKS} | {"gsm8k_train.jsonl"}
    for name in files:  # each file's row in the README carries its true row count and sha256
        raw = (data_dir() / name).read_bytes()
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1].replace(",", "")) == raw.count(b"\n"), name
        assert hashlib.sha256(raw).hexdigest() in row, name


def test_nemo_r1_data_overrides_the_bundled_folder(tmp_path, monkeypatch):
    (tmp_path / "aime24.jsonl").write_text(json.dumps({"id": "a", "problem": "What is 1+1?", "answer": "2"}) + "\n")
    monkeypatch.setenv("NEMO_R1_DATA", str(tmp_path))
    assert benchmark_problems("aime24") == ["What is 1+1?"]
    monkeypatch.setenv("NEMO_R1_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="NEMO_R1_DATA"):
        data_dir()


def test_relative_paths_resolve_from_the_checkout_whatever_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(load_rows("data/aime24.jsonl").rows) == 30
    (tmp_path / "data").mkdir()  # a file under the working directory wins over the checkout's
    (tmp_path / "data" / "aime24.jsonl").write_text(json.dumps({"problem": "p?", "answer": "1"}) + "\n")
    assert len(load_rows("data/aime24.jsonl").rows) == 1
    with pytest.raises(DataError, match=r"write hf:openai/gsm8k"):
        load_rows("openai/gsm8k")


def test_hf_source_syntax():
    assert parse_hf_source("hf:openai/gsm8k") == ("openai/gsm8k", None, None)
    assert parse_hf_source("hf:openai/gsm8k:main@test") == ("openai/gsm8k", "main", "test")
    assert parse_hf_source("hf:org/MATH@train") == ("org/MATH", None, "train")
    for bad in ("hf:", "hf:a/b:c:d", "hf:a/b@x@y"):
        with pytest.raises(DataError, match="hf:owner/name"):
            parse_hf_source(bad)


def test_hf_source_goes_through_datasets(tmp_path):
    """`hf:` on a dataset folder runs the real `datasets.load_dataset` path, split from `@`."""
    folder = tmp_path / "my_set"
    folder.mkdir()
    rows = [{"problem": f"What is {i} + {i}?", "solution": f"It is $\\boxed{{{2 * i}}}$."} for i in range(4)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "test.jsonl").write_text(json.dumps(rows[0]) + "\n")
    got = load_rows(f"hf:{folder}").rows
    assert [r["answer"] for r in got] == ["0", "2", "4", "6"]  # MATH layout: gold = last \boxed{} of solution
    assert len(load_rows(f"hf:{folder}@test").rows) == 1


def test_offline_hub_source_is_one_clear_error(tmp_path):
    code = ("from nemo_r1.data import load_rows\n"
            "try:\n    load_rows('hf:no-such-owner/no-such-set@train')\n"
            "except Exception as e:\n    print(type(e).__name__, '|', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path).stdout
    assert out.startswith("DataError | data source 'hf:no-such-owner/no-such-set@train' could not be loaded")
    assert "local .jsonl" in out


def test_normalisation_sees_through_latex_and_punctuation():
    assert words("Find $\\frac{1}{2}$ of  X,  please!") == ["find", "frac", "1", "2", "of", "x", "please"]


def test_decontamination_drops_copies_and_keeps_the_rest():
    math500 = benchmark_problems("math500")
    disguised = math500[3].replace(" ", "  ").upper() + " Explain."  # same words, other spacing/case
    eight = " ".join(words(math500[10])[:8])
    seven = " ".join(words(math500[10])[:7])
    rows = [{"problem": disguised}, {"problem": "How many apples are in a basket of 12 apples?"},
            {"problem": f"Unrelated start, then {eight} and more."}, {"problem": f"{seven} only"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": math500[7]}]}]
    kept, dropped = decontaminate(rows, ["math500"])
    assert [i for i, _ in dropped] == [0, 2, 4]
    assert kept == [rows[1], rows[3]]
    assert dropped[1][1].benchmark == "math500" and dropped[1][1].words == eight
    short = NgramIndex()
    short.add("tiny", ["What is 2+2?"])  # shorter than 8 words: only an exact copy matches
    assert short.match("what is 2 + 2").kind == "exact" and short.match("what is 2+3") is None


def test_decontaminate_config_names_benchmarks():
    assert resolve_benchmarks(["all"]) == list(BENCHMARKS)
    with pytest.raises(DataError, match=re.escape("unknown benchmark 'math50'")):
        DataConfig(train="x.jsonl", decontaminate=["math50"])


def test_training_on_a_benchmark_with_decontamination_is_an_error():
    cfg = DataConfig(train="data/aime24.jsonl", decontaminate=["aime24"])
    with pytest.raises(DataError, match="every row shares a problem"):
        load_examples(cfg)


def test_no_code_or_doc_names_a_folder_outside_the_checkout():
    """A user's clone has no sibling data folder and none of this machine's paths."""
    pattern = re.compile(r"(\.\./shared|shared/data|(?<![\w.])/work/|(?<![\w.])/root/|/home/[a-z]+/)")
    examples = {("nemo_r1/sandbox/runner.py", "/home/u/proj")}  # an example path in a docstring
    roots = ["nemo_r1", "launchers", "tools", "tests", "configs", "docs", "README.md", "Makefile", "pyproject.toml",
             ".ci", "data/README.md"]
    hits = []
    for root in roots:
        base = PROJECT_ROOT / root
        for path in [base] if base.is_file() else sorted(base.rglob("*")):
            if not path.is_file() or path.suffix in (".png", ".pyc") or path.name == Path(__file__).name:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                rel = str(path.relative_to(PROJECT_ROOT))
                if pattern.search(line) and not any(f == rel and ex in line for f, ex in examples):
                    hits.append(f"{rel}:{n}: {line.strip()}")
    assert hits == []
