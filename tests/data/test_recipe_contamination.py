"""No shipped recipe trains on a problem the project evaluates on.

For a bundled training file, the rows a run would train on (after the recipe's own
`data.decontaminate`) are compared with every benchmark: no exact copy, no shared 8-gram. A source
this test cannot read (an `hf:` dataset, a cluster path) must decontaminate against every benchmark.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nemo_r1.config import load_config
from nemo_r1.data.bundled import BENCHMARKS, PROJECT_ROOT
from nemo_r1.data.decontam import NgramIndex, decontaminate_rows, resolve_benchmarks
from nemo_r1.data.loading import HF_PREFIX, load_rows, resolve_local

RECIPES = sorted(p for p in (PROJECT_ROOT / "configs").rglob("*.yaml")
                 if not {"launch", "stages"} & set(yaml.safe_load(p.read_text()) or {}))
"""Every run config; launcher recipes (a `launch:` section) name a run config, which is walked itself;
pipelines (`stages:`) train on their own stages' outputs and name their sft/grpo configs, walked here."""


@pytest.fixture(scope="module")
def index() -> NgramIndex:
    return NgramIndex.from_benchmarks(BENCHMARKS)


def contamination(recipe: Path, index: NgramIndex) -> list[str]:
    """What in the recipe's training data overlaps a benchmark (empty = clean)."""
    data = load_config(recipe).data
    source = data.train
    if not source or source.startswith("generated:"):  # generated tasks: synthetic problems, seeded
        return []
    path = None if source.startswith(HF_PREFIX) else resolve_local(source)
    if path is None or not path.exists():
        missing = set(BENCHMARKS) - set(resolve_benchmarks(data.decontaminate))
        return [f"{recipe.name}: trains on {source}, which this test cannot read, without decontaminating "
                f"against {sorted(missing)}"] if missing else []
    rows = load_rows(source, data.format, data.columns, data.split, data.skip_bad_rows, data.max_samples)
    if data.decontaminate:
        rows = decontaminate_rows(rows, data.decontaminate)
    found = []
    for i, row in enumerate(rows.rows):
        m = index.match_row(row)
        if m is not None:
            found.append(f"{recipe.name}: {source} row {i} shares {m.kind} {m.words!r} with {m.benchmark}")
    return found


def test_every_recipe_is_walked():
    names = {p.name for p in RECIPES}
    assert {"r1_zero_gsm8k.yaml", "r1_zero_math.yaml", "qwen2.5-math-7b_grpo.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(PROJECT_ROOT / "configs")))
def test_recipe_trains_on_no_benchmark_problem(recipe, index):
    assert contamination(recipe, index) == []


def test_a_recipe_training_on_math500_is_caught(tmp_path, index):
    """The recipe as it once was: R1-Zero 'on MATH' with MATH-500 itself as the training file."""
    old = tmp_path / "r1_zero_math.yaml"
    old.write_text(f"defaults: [{PROJECT_ROOT / 'configs/grpo/r1_zero_gsm8k.yaml'}]\n"
                   "data:\n  train: data/math500.jsonl\n  columns: {problem: problem}\n  decontaminate: []\n")
    found = contamination(old, index)
    assert len(found) == 500 and "with math500" in found[0]
    hub = tmp_path / "hub.yaml"  # an unreadable source without decontamination is refused too
    hub.write_text(f"defaults: [{PROJECT_ROOT / 'configs/grpo/r1_zero_gsm8k.yaml'}]\n"
                   "data:\n  train: hf:someone/math-train\n  decontaminate: [gsm8k]\n")
    assert "cannot read" in contamination(hub, index)[0]


def test_gsm8k_recipe_loses_only_its_overlapping_rows(index):
    data = load_config(PROJECT_ROOT / "configs/grpo/r1_zero_gsm8k.yaml").data
    rows = decontaminate_rows(load_rows(data.train, data.format, data.columns), data.decontaminate)
    assert rows.decontaminated == 99 and len(rows.rows) == 7473 - 99  # the count README quotes
