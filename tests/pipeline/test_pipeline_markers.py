"""Hashes and markers: what makes a stage skip, resume or run again, and the reason printed."""

import json
import os

from nemo_r1.pipeline.markers import (
    DONE,
    STARTED,
    config_diff,
    decide,
    digest,
    file_digest,
    flatten,
    input_files,
    relativize,
    write_json,
)

CONFIG = {"kind": "sft", "optim.lr": 1e-5, "data.train": "${output_dir}/02_kept/kept.jsonl"}
INPUTS = {"after": "run-a", "after_stage": "kept", "files": {"data/x.jsonl": "sha256:00"}}


def mark(stage_dir, name, config=CONFIG, inputs=INPUTS, **extra):
    write_json(stage_dir / name, {"config_hash": digest(config), "inputs_hash": digest(inputs), "config": config,
                                  "inputs": inputs, **extra})


def test_digest_is_canonical_and_sensitive():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1, "b": [1, 2]}) != digest({"a": 1, "b": [2, 1]})
    assert digest({"lr": 1e-5}) != digest({"lr": 2e-5})
    assert len(digest({})) == 64


def test_flatten_and_relativize(tmp_path):
    assert flatten({"optim": {"lr": 1e-5, "betas": [0.9, 0.99]}, "columns": {}, "n": 2}) == {
        "optim.lr": 1e-5, "optim.betas": [0.9, 0.99], "columns": {}, "n": 2}
    out = tmp_path / "run"
    assert relativize({"a": f"{out}/01_gen/x.jsonl", "b": [str(out)], "c": f"{out}2/x", "d": 3}, out) == {
        "a": "${output_dir}/01_gen/x.jsonl", "b": ["${output_dir}"], "c": f"{out}2/x", "d": 3}


def test_config_diff_names_each_changed_key():
    new = {**CONFIG, "optim.lr": 2e-5, "train.max_steps": 10}
    assert config_diff(CONFIG, new) == ["optim.lr 1e-05 -> 2e-05", "train.max_steps <default> -> 10"]
    assert config_diff(new, CONFIG) == ["optim.lr 2e-05 -> 1e-05", "train.max_steps 10 -> <default>"]


def test_a_stage_without_markers_runs(tmp_path):
    d = decide(tmp_path, CONFIG, INPUTS)
    assert (d.action, d.reason, d.changed) == ("run", "not run yet", False)


def test_a_finished_stage_with_the_same_hashes_is_skipped(tmp_path):
    mark(tmp_path, DONE)
    mark(tmp_path, STARTED)
    assert decide(tmp_path, CONFIG, INPUTS).action == "skip"
    assert decide(tmp_path, dict(reversed(CONFIG.items())), INPUTS).action == "skip"  # key order is no change


def test_a_changed_config_reruns_and_says_what_changed(tmp_path):
    mark(tmp_path, DONE)
    d = decide(tmp_path, {**CONFIG, "optim.lr": 2e-5}, INPUTS)
    assert (d.action, d.changed) == ("run", True)
    assert d.reason == "config changed (optim.lr 1e-05 -> 2e-05)"
    many = {**CONFIG, **{f"k{i}": i for i in range(5)}}
    assert decide(tmp_path, many, INPUTS).reason.endswith("k2 <default> -> 2, +2 more)")


def test_changed_inputs_rerun_with_their_reason(tmp_path):
    mark(tmp_path, DONE)
    again = decide(tmp_path, CONFIG, {**INPUTS, "after": "run-b"})
    assert (again.action, again.reason) == ("run", "stage kept ran again")
    edited = decide(tmp_path, CONFIG, {**INPUTS, "files": {"data/x.jsonl": "sha256:11"}})
    assert (edited.action, edited.reason) == ("run", "input changed (data/x.jsonl)")


def test_an_interrupted_stage_resumes_unless_it_changed(tmp_path):
    mark(tmp_path, STARTED, attempt=1)
    d = decide(tmp_path, CONFIG, INPUTS)
    assert (d.action, d.attempt, d.changed) == ("resume", 2, False)
    assert d.reason == "interrupted run found, resuming it (attempt 2)"
    changed = decide(tmp_path, {**CONFIG, "optim.lr": 3e-5}, INPUTS)
    assert (changed.action, changed.changed) == ("run", True)
    assert changed.reason == "config changed (optim.lr 1e-05 -> 3e-05) since its interrupted run"


def test_a_torn_marker_counts_as_none(tmp_path):
    (tmp_path / DONE).write_text('{"config_hash": "ab')  # cannot happen through write_json; a hand edit can
    assert decide(tmp_path, CONFIG, INPUTS).action == "run"


def test_write_json_leaves_no_temp_files(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1})
    write_json(tmp_path / "m.json", {"a": 2})
    assert os.listdir(tmp_path) == ["m.json"]
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}


def test_input_files_digest_local_inputs_outside_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    (out / "01_gen").mkdir(parents=True)
    (out / "01_gen" / "generations.jsonl").write_text("{}\n")
    (tmp_path / "traces.jsonl").write_text('{"a": 1}\n')
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (tmp_path / "length").write_text("a file named like a filter")
    values = {"data": "traces.jsonl", "model": str(model), "filters": ["length"], "prev": str(out / "01_gen"),
              "gen": f"{out}/01_gen/generations.jsonl", "hub": "hf:openai/gsm8k", "missing": "nope.jsonl"}
    first = input_files(values, out)
    assert set(first) == {"traces.jsonl", str(model)}  # not the run's own files, bare words, hub names
    assert first["traces.jsonl"] == file_digest(tmp_path / "traces.jsonl")
    (tmp_path / "traces.jsonl").write_text('{"a": 2}\n')
    (model / "config.json").write_text('{"x": 1}')
    os.utime(model / "config.json", ns=(1, 1))
    second = input_files(values, out)
    assert second["traces.jsonl"] != first["traces.jsonl"] and second[str(model)] != first[str(model)]
