"""`nemo-r1 generate` on a tiny random Llama with the real vLLM engine: kills resume exactly, shards
merge into the unsharded file, bad input is named."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "eval"))
from eval_helpers import build_tiny_llama, math_rows, write_jsonl  # noqa: E402

from nemo_r1.rollout.generate import (  # noqa: E402
    GenerateError,
    GenerateSettings,
    generate,
    load_problems,
    merge,
    parse_shard,
)

SAMPLING = dict(n=2, temperature=0.8, top_p=0.95, max_new_tokens=12, seed=3)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_llama(tmp_path_factory.mktemp("tiny_llama")))


@pytest.fixture(scope="module")
def engine(tiny_model):
    from nemo_r1.rollout import RolloutConfig, build_generator

    return build_generator(RolloutConfig(model=tiny_model, kv_cache_gib=0.25))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    rows = math_rows(30)
    for i, r in enumerate(rows):
        r["source"] = f"set{i % 3}"  # a problem column that must come through untouched
    return write_jsonl(tmp_path_factory.mktemp("data") / "problems.jsonl", rows)


@pytest.fixture(scope="module")
def reference(tiny_model, engine, data, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ref")
    info = generate(GenerateSettings(model=tiny_model, data=str(data), **SAMPLING), out, engine=engine, progress=False)
    assert info["samples"] == 60 and info["generated_samples"] == 60
    return rows_of(out / "generations.jsonl")


def rows_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def by_key(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["index"], r["sample"]))


def test_rows_keep_the_problem_and_add_the_sample(reference):
    r = by_key(reference)[3]  # problem p1, sample 1
    assert (r["id"], r["index"], r["sample"], r["source"], r["answer"]) == ("p1", 1, 1, "set1", "3")
    assert r["settings"]["temperature"] == 0.8 and r["settings"]["max_new_tokens"] == 12
    assert r["finish_reason"] in ("stop", "length") and 0 < r["completion_tokens"] <= 12
    assert "What is 1 + 2?" in r["prompt"] and r["prompt_tokens"] > 5
    seeds = {x["seed"] for x in reference}
    assert len(seeds) == 60, "every sample has its own seed"
    # two samples of one problem differ (their own seeds), at T=0.8 on a random model
    pairs = {}
    for x in reference:
        pairs.setdefault(x["id"], []).append(x["completion"])
    assert sum(a != b for a, b in pairs.values()) >= 25


def _wait_for_lines(path: Path, at_least: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"run ended or stalled before it could be killed: {proc.stderr.read().decode()[-2000:]}")


def test_killed_twice_then_resumed_equals_the_uninterrupted_run(tiny_model, engine, data, reference, tmp_path):
    out = tmp_path / "killed"
    target = out / "generations.jsonl"
    cmd = [sys.executable, "-m", "nemo_r1.rollout.cli", "--model", tiny_model, "--data", str(data), "--out", str(out),
           "--n", "2", "--temperature", "0.8", "--top-p", "0.95", "--max-new-tokens", "12", "--seed", "3",
           "--max-batch", "2", "--kv-cache-gib", "0.25", "--no-progress"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", VLLM_LOGGING_LEVEL="ERROR")
    seen = 0
    for _kill in range(2):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for_lines(target, seen + 4, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        lines = target.read_text().count("\n")
        assert seen + 4 <= lines < 60, lines
        seen = lines
        with open(target, "a") as f:  # a torn write, as a kill inside os.write leaves
            f.write('{"id": "p29", "index": 29, "sample": 0, "compl')
    info = generate(GenerateSettings(model=tiny_model, data=str(data), **SAMPLING), out, engine=engine, progress=False)
    assert info["generated_samples"] < 60, "only the missing problems are generated"
    final = rows_of(target)
    keys = [(r["index"], r["sample"]) for r in final]
    assert len(keys) == len(set(keys)) == 60, "duplicate or missing samples after two kills"
    assert by_key(final) == by_key(reference)


def test_three_shards_merged_equal_the_unsharded_run(tiny_model, engine, data, reference, tmp_path):
    settings = GenerateSettings(model=tiny_model, data=str(data), **SAMPLING)
    sizes = []
    with pytest.raises(GenerateError, match="no shard files"):
        merge(tmp_path)
    for i in range(3):
        sizes.append(generate(settings, tmp_path, engine=engine, shard=(i, 3), progress=False)["problems"])
        if i == 0:  # a merge before every shard is done is refused
            with pytest.raises(GenerateError, match=r"shard\(s\) \[1, 2\] of 3 missing or unfinished"):
                merge(tmp_path)
    assert sizes == [10, 10, 10]
    info = merge(tmp_path)
    assert info == {"file": "generations.jsonl", "shards": 3, "samples": 60}
    merged = rows_of(tmp_path / "generations.jsonl")
    assert merged == by_key(reference)  # merge orders by (index, sample)


def test_other_settings_in_the_same_dir_are_refused(tiny_model, engine, data, reference, tmp_path):
    generate(GenerateSettings(model=tiny_model, data=str(data), **{**SAMPLING, "n": 1}), tmp_path,
             engine=engine, shard=(0, 10), progress=False)
    with pytest.raises(GenerateError, match=r"temperature.*\[0\.8\].*\[0\.5\]"):
        generate(GenerateSettings(model=tiny_model, data=str(data), **{**SAMPLING, "n": 1, "temperature": 0.5}),
                 tmp_path, engine=engine, shard=(0, 10), progress=False)


def test_bad_input_names_the_row(tmp_path):
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "problem": "x"}, {"id": "a", "problem": "y"}])
    with pytest.raises(GenerateError, match=r"dup.jsonl:2: id 'a' repeats .*dup.jsonl:1"):
        load_problems(GenerateSettings(model="m", data=str(dup)))
    nocol = write_jsonl(tmp_path / "nocol.jsonl", [{"question": "x"}])
    with pytest.raises(GenerateError, match=r"nocol.jsonl:1: no problem text in column 'problem'.*--columns problem="):
        load_problems(GenerateSettings(model="m", data=str(nocol)))
    mapped = load_problems(GenerateSettings(model="m", data=str(nocol), columns={"problem": "question"}))
    assert mapped == [(0, "row0", {"question": "x"})]
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(GenerateError, match="--shard"):
            parse_shard(bad)
    assert parse_shard("2/5") == (2, 5)


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    from nemo_r1.cli import main

    rc = main(["generate", "--model", "m", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"),
               "--shard", "4/2"])
    assert rc == 2
    assert "--shard '4/2': need 0 <= i < k" in capsys.readouterr().err


def test_few_shot_turns_precede_the_problem(tiny_model, tmp_path):
    """A few-shot teacher: the task's worked examples come before the problem in the prompt, in
    order, while the written rows keep the problem alone (what a zero-shot student trains on)."""
    from transformers import AutoTokenizer

    from nemo_r1.data.tasks import TASKS
    from nemo_r1.rollout.cli import load_few_shot
    from nemo_r1.rollout.generate import build_prompt

    turns = load_few_shot("task:arithmetic")
    assert turns == [dict(t) for t in TASKS.get("arithmetic").few_shot] and len(turns) == 2
    tok = AutoTokenizer.from_pretrained(tiny_model)
    plain = build_prompt(tok, "What is 4 + 4?", GenerateSettings(model="m", data="d"))
    shot = build_prompt(tok, "What is 4 + 4?", GenerateSettings(model="m", data="d", few_shot=turns))
    at = [shot.index(t["user"]) for t in turns] + [shot.index(t["assistant"]) for t in turns]
    assert at[0] < at[2] < at[1] < at[3] < shot.index("What is 4 + 4?")
    assert shot.endswith(plain[plain.index("What is 4 + 4?"):]) and turns[0]["user"] not in plain
    f = tmp_path / "shots.yaml"
    f.write_text("- {user: 'Q?', assistant: 'A.'}\n")
    assert load_few_shot(str(f)) == [{"user": "Q?", "assistant": "A."}]
    f.write_text("- {user: 'Q?'}\n")
    with pytest.raises(ValueError, match="exactly the keys user and assistant"):
        load_few_shot(str(f))
    with pytest.raises(ValueError, match="no such file"):
        load_few_shot(str(tmp_path / "none.yaml"))
