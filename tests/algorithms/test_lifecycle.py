"""Stop signals become a flag (no lost step), step seeds are stable, sample logs truncate on resume."""

import json
import os
import signal

from nemo_r1.signals import StopFlag
from nemo_r1.trainers.lifecycle import SampleLog, step_seed


def test_sigterm_sets_flag_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with StopFlag() as flag:
        assert not flag.stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.stop and flag.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def test_step_seed_depends_on_all_parts():
    a = step_seed(0, 5, "generate")
    assert a == step_seed(0, 5, "generate")
    assert len({a, step_seed(1, 5, "generate"), step_seed(0, 6, "generate"), step_seed(0, 5, "prompts")}) == 4


def test_sample_log_resume(tmp_path):
    log = SampleLog(tmp_path / "samples.jsonl")
    log.write(1, [{"completion": "a"}])
    log.write(2, [{"completion": "b"}, {"completion": "c"}])
    with open(tmp_path / "samples.jsonl", "a") as f:
        f.write('{"step": 3, "compl')  # torn by a crash
    SampleLog(tmp_path / "samples.jsonl", resume_step=1).write(2, [{"completion": "B"}])
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "completion": "a"}, {"step": 2, "completion": "B"}]


def test_optim_settings_carry_the_optim_section_with_warmup_resolved():
    from dataclasses import fields

    from nemo_r1.config import OptimConfig
    from nemo_r1.trainers.lifecycle import optim_settings

    optim = OptimConfig(lr=3e-4, min_lr=1e-5, weight_decay=0.1, adam_beta1=0.8, adam_beta2=0.95, adam_eps=1e-6,
                        warmup_ratio=0.03, scheduler="cosine", decay_steps=900, distributed_optimizer=False)
    s = optim_settings(optim, total_steps=1000)
    assert s.warmup_steps == 30  # the ratio's share of this run
    for f in fields(s):
        if f.name != "warmup_steps":
            assert getattr(s, f.name) == getattr(optim, f.name), f.name
