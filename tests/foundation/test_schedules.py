"""Schedules of scalar config values: the value of each step, applying them to a config, and the
load-time errors that name the scheduled key."""

from pathlib import Path

import pytest

from nemo_r1.config import ConfigError, load_config, save_config
from nemo_r1.schedules import SCHEDULABLE, Schedule, apply_schedules, value_at

DEMO = "configs/grpo/demo.yaml"  # max_seq_len 512, max_new_tokens 32, beta 0


def sched(key: str, steps: list, values: list, interp: str = "step") -> str:
    return f"schedules={{{key}: {{steps: {steps}, values: {values}, interp: {interp}}}}}"


def test_step_schedule_holds_each_value_until_the_next_point():
    s = Schedule(steps=[0, 500, 1000], values=[8192, 16384, 24576])
    got = {step: value_at(s, step) for step in (0, 1, 499, 500, 501, 999, 1000, 5000)}
    assert got == {0: 8192, 1: 8192, 499: 8192, 500: 16384, 501: 16384, 999: 16384, 1000: 24576, 5000: 24576}


def test_linear_schedule_interpolates_between_points_and_holds_the_last():
    s = Schedule(steps=[0, 100, 300], values=[0.0, 1.0e-6, 0.0], interp="linear")
    assert value_at(s, 0) == 0.0
    assert value_at(s, 25) == pytest.approx(0.25e-6)
    assert value_at(s, 100) == pytest.approx(1.0e-6)
    assert value_at(s, 200) == pytest.approx(0.5e-6)  # on the way down
    assert value_at(s, 300) == 0.0 and value_at(s, 10_000) == 0.0
    with pytest.raises(ValueError, match="before the first point"):
        value_at(Schedule(steps=[5], values=[1]), 4)


def test_apply_sets_the_config_and_returns_the_metrics_of_the_step():
    cfg = load_config(DEMO, [sched("rollout.max_new_tokens", [0, 2], [4, 8]),
                             sched("grpo.eps_high", [0, 4], [0.2, 0.4], "linear")])
    seen = []
    for step in range(5):
        row = apply_schedules(cfg, step)
        seen.append((cfg.rollout.max_new_tokens, round(cfg.grpo.eps_high, 6), row))
        # the loop builds its sampling settings from the config after the hook
        assert cfg.rollout.sampling(2, 0).max_new_tokens == cfg.rollout.max_new_tokens
    assert [s[0] for s in seen] == [4, 4, 8, 8, 8]
    assert [s[1] for s in seen] == [0.2, 0.25, 0.3, 0.35, 0.4]
    assert seen[2][2] == {"schedule/rollout.max_new_tokens": 8, "schedule/grpo.eps_high": pytest.approx(0.3)}
    # a pure function of the step: going back gives the earlier values (what a resumed run relies on)
    apply_schedules(cfg, 1)
    assert cfg.rollout.max_new_tokens == 4 and cfg.grpo.eps_high == pytest.approx(0.25)


def test_linear_int_key_gets_rounded_ints():
    cfg = load_config(DEMO, [sched("rollout.max_new_tokens", [0, 4], [10, 20], "linear")])
    got = [apply_schedules(cfg, s)["schedule/rollout.max_new_tokens"] for s in range(5)]
    assert got == [10, 13, 15, 18, 20] and all(type(v) is int for v in got)  # 12.5 -> 13, 17.5 -> 18


def test_float_key_takes_int_values_as_floats():
    cfg = load_config(DEMO, ["grpo.beta=0.1", sched("grpo.beta", [0, 10], [1, 0])])
    apply_schedules(cfg, 0)
    assert cfg.grpo.beta == 1.0 and type(cfg.grpo.beta) is float


def test_schedules_from_yaml_survive_the_saved_config(tmp_path: Path):
    run = tmp_path / "run.yaml"
    run.write_text(f"defaults: [{Path(DEMO).resolve()}]\nschedules:\n"
                   "  rollout.max_new_tokens: {steps: [0, 1040, 1520], values: [64, 128, 256]}\n")
    cfg = load_config(run)
    again = load_config(save_config(cfg, tmp_path / "out"))  # rerunning OUTPUT_DIR/config.yaml
    assert again.schedules == cfg.schedules
    assert again.schedules["rollout.max_new_tokens"] == Schedule([0, 1040, 1520], [64, 128, 256], "step")


@pytest.mark.parametrize("override, message", [
    (sched("rollout.max_new_token", [0, 2], [4, 8]),
     "schedules: unknown config key 'rollout.max_new_token'; did you mean 'rollout.max_new_tokens'?"),
    (sched("rewards", [0, 2], [1, 2]), "schedules.rewards: 'rewards' is not a single number or string"),
    (sched("rollout", [0, 2], [1, 2]), "schedules.rollout: 'rollout' is a section"),
    (sched("model.path", [0, 2], ["a", "b"]),
     "schedules.model.path: 'model.path' cannot change inside a run: it is read once, when the run starts. "
     "A schedule can set only the keys the GRPO loop re-reads every step: rollout.max_new_tokens"),
    (sched("parallel.tensor", [0, 2], [1, 2]), "'parallel.tensor' cannot change inside a run"),
    (sched("train.max_steps", [0, 2], [10, 20]), "'train.max_steps' cannot change inside a run"),
    (sched("optim.lr", [0, 100], [0.0, 1.0e-6], "linear"), "set optim.warmup_steps"),
    (sched("rollout.temperature", [0, 100], [1.0, 0.6]), "at the temperature it was built with"),
    (sched("grpo.eps_high", [0, 100, 50], [0.2, 0.28, 0.3]),
     "schedules.grpo.eps_high.steps must be strictly increasing, got [0, 100, 50] (at 50)"),
    (sched("grpo.eps_high", [0, 100, 100], [0.2, 0.28, 0.3]), "strictly increasing"),
    (sched("grpo.eps_high", [10, 100], [0.2, 0.3]), "schedules.grpo.eps_high.steps must start at 0"),
    (sched("grpo.eps_high", [0, 100], [0.2]),
     "schedules.grpo.eps_high: steps and values must have the same length (>= 1), got 2 steps and 1 values"),
    (sched("grpo.eps_high", [0, 100], [0.2, 0.3], "lin"), "interp='lin' is not one of ['step', 'linear']; "
                                                           "did you mean 'linear'?"),
    (sched("rollout.max_new_tokens", [0, 2], [4, 8.5]),
     "schedules.rollout.max_new_tokens: value 8.5 at step 2 is not an int; rollout.max_new_tokens takes ints"),
    (sched("grpo.eps_high", [0, 2], [0.2, "wide"]), "value 'wide' at step 2 is not a number"),
    (sched("grpo.mu", [0, 2], [1, 0]), "value 0 at step 2 is out of range: grpo.mu must be >= 1"),
    (sched("grpo.dual_clip", [0, 2], [3.0, 1.0]), "grpo.dual_clip must be > 1"),
    (sched("rollout.top_p", [0, 2], [1.0, 0.0]), "value 0.0 at step 2: rollout.top_p=0.0 must be in (0, 1]"),
    # 512 = train.max_seq_len of the demo: a prompt of >= 1 token + 512 new tokens cannot fit
    (sched("rollout.max_new_tokens", [0, 2], [32, 512]),
     "schedules.rollout.max_new_tokens reaches 512 new tokens, but prompt + completion must fit the engine's "
     "context, train.max_seq_len (rollout.max_model_len is null) = 512"),
    (sched("grpo.beta", [0, 2], [0.0, 0.01]), "grpo.beta=0 builds no reference model"),
    ("schedules.rollout.max_new_tokens.steps=[0,2]", "schedules.rollout has unknown fields ['max_new_tokens']"),
    ("schedules=[1,2]", "schedules must be a mapping of dotted config keys"),
])
def test_bad_schedules_are_refused_at_load_time_naming_the_key(override: str, message: str):
    with pytest.raises(ConfigError) as e:
        load_config(DEMO, [override])
    assert message in str(e.value)


def test_budget_that_fits_the_engine_context_loads():
    assert load_config(DEMO, [sched("rollout.max_new_tokens", [0, 2], [32, 511])])  # 1 prompt token + 511
    cfg = load_config(DEMO, ["rollout.max_model_len=2048", sched("rollout.max_new_tokens", [0, 2], [32, 2000])])
    assert cfg.schedules["rollout.max_new_tokens"].values == [32, 2000]


def test_yaml_number_without_a_dot_gets_a_hint(tmp_path: Path):
    run = tmp_path / "run.yaml"
    run.write_text(f"defaults: [{Path(DEMO).resolve()}]\ngrpo: {{beta: 0.1}}\n"
                   "schedules:\n  grpo.beta: {steps: [0, 10], values: [1e-3, 0.01]}\n")
    with pytest.raises(ConfigError, match=r"write 1\.0e-6"):
        load_config(run)


def test_a_list_in_place_of_a_schedule_names_the_file_and_line(tmp_path: Path):
    run = tmp_path / "run.yaml"
    run.write_text("train: {seed: 1}\nschedules:\n  grpo.beta: [0, 1]\n")
    with pytest.raises(ConfigError, match=rf"{run}:2: schedules.grpo.beta must be a mapping"):
        load_config(run)


@pytest.mark.parametrize("key, values", [
    ("rollout.max_new_tokens", [16, 32]), ("rollout.top_p", [1.0, 0.9]), ("grpo.beta", [0.1, 0.01]),
    ("grpo.eps_low", [0.2, 0.1]), ("grpo.eps_high", [0.2, 0.28]), ("grpo.dual_clip", [3.0, 2.0]),
    ("grpo.tis_cap", [2.0, 1.5]), ("grpo.mu", [1, 2]),
])
def test_every_schedulable_key_loads_and_applies(key: str, values: list):
    assert set(SCHEDULABLE) == {"rollout.max_new_tokens", "rollout.top_p", "grpo.beta", "grpo.eps_low",
                                "grpo.eps_high", "grpo.dual_clip", "grpo.tis_cap", "grpo.mu"}
    cfg = load_config(DEMO, ["grpo.beta=0.1", sched(key, [0, 3], values)])
    section, name = key.split(".")
    apply_schedules(cfg, 3)
    assert getattr(getattr(cfg, section), name) == values[1]


def test_sft_refuses_schedules():
    from nemo_r1.trainers.sft import check_sft_config

    cfg = load_config("configs/sft/gsm8k_distill_cpu.yaml", [sched("grpo.eps_high", [0, 2], [0.2, 0.3])])
    with pytest.raises(ConfigError, match="but nemo-r1 sft reads none of the keys a schedule can change"):
        check_sft_config(cfg)
