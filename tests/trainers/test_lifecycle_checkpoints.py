"""The checkpoint bookkeeping both trainers share: which checkpoint `train.resume` names, pruning."""

import pytest

from nemo_r1.models.checkpoint import META_FILE
from nemo_r1.trainers.lifecycle import any_rank, prune_checkpoints, resume_dir


def _ckpt(root, step: int, complete: bool = True):
    d = root / "checkpoints" / f"step_{step}"
    d.mkdir(parents=True)
    if complete:
        for name in ("metadata.json", META_FILE):
            (d / name).write_text("{}")
    return d


def test_resume_dir_and_prune(tmp_path):
    assert resume_dir("auto", tmp_path) is None
    for s in (2, 10, 4):
        _ckpt(tmp_path, s)
    _ckpt(tmp_path, 12, complete=False)  # a save cut short is not resumed from
    assert resume_dir("auto", tmp_path).name == "step_10"  # numeric, not lexical, order
    assert resume_dir("none", tmp_path) is None
    assert resume_dir(str(tmp_path / "checkpoints" / "step_2"), tmp_path).name == "step_2"
    with pytest.raises(FileNotFoundError, match="train.resume"):
        resume_dir(str(tmp_path / "nope"), tmp_path)
    prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_10", "step_12"]
    prune_checkpoints(tmp_path, 0)  # keep 0 = keep all
    assert len(list((tmp_path / "checkpoints").iterdir())) == 2
    assert any_rank(True) and not any_rank(False)  # one process: its own flag
