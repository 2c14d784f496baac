"""Config loading: YAML chains, overrides, and errors that name key, file, line and a suggestion."""

from pathlib import Path

import pytest
import yaml

from nemo_r1.config import Config, ConfigError, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_without_file():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.grpo.loss_type == "dapo" and cfg.train.resume == "auto"


def test_inheritance_parent_then_child_then_overrides(tmp_path):
    write(tmp_path, "base.yaml", "train:\n  max_steps: 5\n  seed: 3\noptim:\n  lr: 1.0e-5\n")
    child = write(tmp_path, "child.yaml", "defaults: [base.yaml]\ntrain:\n  max_steps: 7\n")
    cfg = load_config(child, ["optim.lr=2e-4", "parallel.tensor=2", "data.columns.problem=question",
                              "rewards=[{name: format, weight: 0.5, params: {mode: boxed}}]"])
    assert cfg.train.max_steps == 7  # child beats parent
    assert cfg.train.seed == 3  # inherited
    assert cfg.optim.lr == pytest.approx(2e-4)  # override beats files
    assert cfg.parallel.tensor == 2
    assert cfg.data.columns == {"problem": "question"}
    assert cfg.rewards[0].name == "format" and cfg.rewards[0].weight == 0.5
    assert cfg.rewards[0].params == {"mode": "boxed"}


def test_unknown_key_names_file_line_and_closest_key(tmp_path):
    p = write(tmp_path, "c.yaml", "output_dir: x\ntrain:\n  seed: 1\n  max_step: 7\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:4" in msg and "'train.max_step'" in msg and "did you mean 'train.max_steps'" in msg


def test_unknown_key_in_parent_names_the_parent(tmp_path):
    write(tmp_path, "base.yaml", "optim:\n  lrate: 1\n")
    child = write(tmp_path, "child.yaml", "defaults: base.yaml\n")
    with pytest.raises(ConfigError, match=r"base\.yaml:2: unknown config key 'optim.lrate'; did you mean 'optim.lr'"):
        load_config(child)


def test_unknown_top_level_section(tmp_path):
    p = write(tmp_path, "c.yaml", "rollouts:\n  temperature: 1.0\n")
    with pytest.raises(ConfigError, match="did you mean 'rollout'"):
        load_config(p)


def test_wrong_type_names_key_file_and_line(tmp_path):
    p = write(tmp_path, "c.yaml", "train:\n  seed: 2\n  max_steps: lots\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:3" in str(e.value) and "wrong type for 'train.max_steps'" in str(e.value)


def test_bad_yaml_gives_line_and_column(tmp_path):
    p = write(tmp_path, "c.yaml", "train:\n  max_steps: [1\n  seed: 2\n")
    with pytest.raises(ConfigError, match=rf"{p}:3:7: invalid YAML"):
        load_config(p)


def test_override_errors():
    with pytest.raises(ConfigError, match="'optim.lrr'; did you mean 'optim.lr'"):
        load_config(None, ["optim.lrr=3"])
    with pytest.raises(ConfigError, match="wrong type for 'train.seed'"):
        load_config(None, ["train.seed=abc"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["train.seed"])


def test_value_checks_suggest():
    with pytest.raises(ConfigError, match="did you mean 'dapo'"):
        load_config(None, ["grpo.loss_type=dapoo"])
    with pytest.raises(ConfigError, match="parallel.tensor=0 must be >= 1"):
        load_config(None, ["parallel.tensor=0"])
    with pytest.raises(ConfigError, match="grpo.beta=-0.1 must be >= 0"):
        load_config(None, ["grpo.beta=-0.1"])


def test_include_cycle_and_missing_file(tmp_path):
    a = write(tmp_path, "a.yaml", "defaults: [b.yaml]\n")
    write(tmp_path, "b.yaml", "defaults: [a.yaml]\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(a)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.max_steps=9", "rollout.stop=[</answer>]"])
    path = save_config(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert yaml.safe_load(path.read_text())["train"]["max_steps"] == 9
    again = load_config(path)
    assert again == cfg
    assert not list((tmp_path / "run").glob(".config.*"))  # no temp file left behind


def test_all_shipped_configs_load():
    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.rglob("*.yaml"))
    for f in files:
        if f.name.startswith("_") or "cluster" in f.parts:
            continue
        if "pipeline" in f.parts:  # a stage list, each stage checked against its command's options
            from nemo_r1.pipeline import load_pipeline

            load_pipeline(f)
            continue
        load_config(f)


def test_warmup_ratio_gives_a_share_of_the_run():
    from nemo_r1.config import OptimConfig

    assert OptimConfig(warmup_ratio=0.03).warmup_for(1000) == 30
    assert OptimConfig(warmup_ratio=0.03).warmup_for(10) == 1  # never rounds to no warmup
    assert OptimConfig(warmup_ratio=0.03, warmup_steps=7).warmup_for(1000) == 7  # explicit steps win
    assert OptimConfig().warmup_for(1000) == 0
    with pytest.raises(ConfigError, match="optim.warmup_ratio must be in"):
        load_config(None, ["optim.warmup_ratio=1.5"])


def test_openr1_distill_recipe_keeps_the_source_settings():
    """The cluster SFT recipe is OpenR1-Distill-7B's: a drifted number is a different experiment."""
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs/cluster/train/qwen2.5-math-7b_distill_sft.yaml")
    assert (cfg.optim.lr, cfg.optim.min_lr / cfg.optim.lr, cfg.optim.scheduler) == (4e-5, pytest.approx(0.1), "cosine")
    assert (cfg.optim.warmup_steps, cfg.optim.warmup_ratio, cfg.sft.epochs) == (0, 0.03, 5)
    assert (cfg.train.max_seq_len, cfg.train.global_batch_size, cfg.train.grad_clip) == (32768, 128, 0.2)
    assert (cfg.model.dtype, cfg.data.format) == ("bfloat16", "messages")
    assert cfg.data.train.startswith("hf:open-r1/Mixture-of-Thoughts")


def test_grpo_refuses_a_global_batch_size_it_would_ignore(tmp_path):
    """GRPO derives its batch (prompts x generations); a differing train.global_batch_size the user set
    is an error that names both, while the schema default (an SFT setting) is not."""
    from nemo_r1.config import is_given
    from nemo_r1.trainers.grpo_run import check_grpo_batch

    cfg = load_config(CONFIGS / "grpo/demo.yaml", ["grpo.prompts_per_step=2"])
    assert not is_given(cfg, "train.global_batch_size") and is_given(cfg, "grpo.prompts_per_step")
    check_grpo_batch(cfg)  # default 16, not chosen: fine
    assert is_given(cfg, "grpo.num_generations")  # set in demo.yaml
    check_grpo_batch(load_config(CONFIGS / "grpo/demo.yaml", ["train.global_batch_size=32"]))  # 8 x 4 = 32
    with pytest.raises(ConfigError, match=r"train.global_batch_size=64, but a GRPO step trains .* 8 x 4 = 32"):
        check_grpo_batch(load_config(CONFIGS / "grpo/demo.yaml", ["train.global_batch_size=64"]))
    # a fully written config (a pipeline stage's) carries the schema default without anyone choosing it
    check_grpo_batch(load_config(CONFIGS / "grpo/demo.yaml", ["train.global_batch_size=16"]))
