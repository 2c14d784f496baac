"""CLI: `--help` lists exactly the commands that are built, each of them resolves, plot is wired."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_r1.cli import HANDLERS, built, main, module_exists, resolve
from nemo_r1.metrics import MetricsLogger

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_process_wide_console_setup(monkeypatch):
    """main() sets up the console for the whole process (filters, env); a test process keeps its own."""
    monkeypatch.setattr("nemo_r1.console.setup", lambda verbose_flag=None: False)


def _listed(help_text: str) -> set[str]:
    """Command names in the COMMAND block of `nemo-r1 --help`."""
    block = help_text.split("COMMAND\n", 2)[-1].split("\noptions:")[0]
    return {m.group(1) for m in re.finditer(r"^    (\S+)", block, re.M)}


def test_help_lists_exactly_the_built_commands():
    out = subprocess.run([sys.executable, "-m", "nemo_r1.cli", "--help"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert _listed(out) == set(built())
    assert {"grpo", "demo", "eval", "convert", "launch", "plan", "bench", "plot"} <= _listed(out)
    for name, c in HANDLERS.items():
        assert (name in _listed(out)) == module_exists(c.module), name


def test_built_handlers_resolve():
    for name in built():
        assert callable(resolve(name)), name


def test_module_exists_reads_files_not_imports():
    assert module_exists("nemo_r1.trainers.grpo") and module_exists("nemo_r1.eval") and module_exists("launchers.cli")
    assert not module_exists("nemo_r1.trainers.no_such_module") and not module_exists("no_such_package.x")


def test_a_planned_command_says_it_is_not_built(capsys, monkeypatch):
    from nemo_r1.cli import Command

    monkeypatch.setitem(HANDLERS, "later", Command("nemo_r1.not_built_yet", "main", "a planned command", "config"))
    assert "later" not in built()
    assert main(["later", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert "not part of this build" in err and "grpo" in err


def test_no_issue_numbers_in_code():
    pattern = re.compile(r"\bissues?\s*#?\d+|#\d+\b", re.I)
    hits = []
    for folder in ("nemo_r1", "launchers", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, hits


def test_config_error_is_a_message_not_a_traceback(capsys, tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  max_step: 1\n")
    rc = main(["grpo", "--config", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'train.max_steps'" in err and "Traceback" not in err


def test_plot_command(tmp_path, capsys):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(0, {"train/loss": 1.0})
        log.log(1, {"train/loss": 0.5})
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "plots" / "train.png").exists()


def test_raw_commands_take_options_right_after_the_command(capsys):
    with pytest.raises(SystemExit) as e:  # argparse's --help exits 0 after printing
        main(["plan", "--help"])
    assert e.value.code == 0 and "--nodes" in capsys.readouterr().out


def test_plot_of_a_pipeline_draws_its_eval_stages(tmp_path, capsys):
    import json

    from nemo_r1.cli import main
    from nemo_r1.plot import plot_eval_stages

    rows = [{"name": "eval_base", "kind": "eval", "numbers": {"problems/pass@1": 0.1, "problems/stderr": 0.02}},
            {"name": "sft", "kind": "sft", "numbers": {"train/loss": 1.0}},
            {"name": "eval_sft", "kind": "eval", "numbers": {"problems/pass@1": 0.4, "problems/stderr": 0.03}}]
    (tmp_path / "summary.json").write_text(json.dumps({"stages": rows}))
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "plots" / "evals.png").stat().st_size > 1000
    (tmp_path / "summary.json").write_text(json.dumps({"stages": rows[1:2]}))
    with pytest.raises(ValueError, match="no finished eval stage"):
        plot_eval_stages(tmp_path)
