"""The quiet console: known library noise is dropped by origin and text, everything else still shows."""

import io
import logging
import os
import sys
import warnings

from nemo_r1 import console


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, "x.py", 1, msg, None, None)


def test_known_log_records_are_dropped_by_logger_and_text():
    f = console.KnownNoise()
    refit = "ParallelLMHead: Failed to load weights"
    layerwise = "vllm.model_executor.model_loader.reload.layerwise"
    assert not f.filter(_record(layerwise, logging.WARNING, refit))
    assert f.filter(_record(layerwise, logging.ERROR, refit))  # a known text at a higher level still shows
    assert f.filter(_record(layerwise, logging.WARNING, "Linear: Failed to load weights"))  # another layer shows
    assert f.filter(_record("nemo_r1.rollout", logging.WARNING, refit))  # same text elsewhere shows
    assert not f.filter(_record("vllm.v1.worker.cpu_worker", logging.WARNING,
                                "libtcmalloc is not found in LD_PRELOAD. For best performance, ..."))


def test_known_warnings_are_ignored_by_module_and_text():
    te = "Transformer Engine and Apex are not installed. Falling back to Torch optimizers."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.filter_warnings()
        warnings.warn_explicit(te, UserWarning, "optimizer/__init__.py", 24, module="megatron.core.optimizer")
        warnings.warn_explicit(te, UserWarning, "mine.py", 1, module="mypackage")  # not megatron's: shown
        warnings.warn_explicit("something new", UserWarning, "optimizer.py", 66, module="megatron.core.optimizer")
        warnings.warn_explicit(te, DeprecationWarning, "optimizer.py", 1, module="megatron.core.optimizer")
    assert [(str(w.message)[:14], w.category) for w in caught] == [
        ("Transformer En", UserWarning), ("something new", UserWarning), ("Transformer En", DeprecationWarning)]


def test_library_startup_drops_known_native_lines_and_keeps_the_rest(capfd, monkeypatch):
    monkeypatch.setenv(console.VERBOSE_ENV, "0")
    with console.library_startup():
        os.write(2, b"[W1201 02:42:25 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy for memory\n")
        os.write(2, b"a real problem\n")
    err = capfd.readouterr().err
    assert "a real problem" in err and "NUMA" not in err


def test_library_startup_writes_back_on_error(capfd, monkeypatch):
    monkeypatch.setenv(console.VERBOSE_ENV, "0")
    try:
        with console.library_startup():
            os.write(2, b"engine said why\n")
            raise RuntimeError("engine failed")
    except RuntimeError:
        pass
    assert "engine said why" in capfd.readouterr().err


def test_verbose_leaves_native_output_alone(capfd, monkeypatch):
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    with console.library_startup():
        os.write(2, b"Warning: NUMA binding: Using MEMBIND policy\n")
    assert "NUMA" in capfd.readouterr().err


def test_progress_in_a_log_is_a_few_plain_lines():
    out = io.StringIO()
    p = console.Progress(100, stream=out)
    for step in range(1, 101):
        p.update(step, {"reward": "0.500", "s/step": "1.0"})
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) <= 21 and "\r" not in out.getvalue()
    assert lines[0].startswith("grpo step   1/100  reward 0.500  s/step 1.0") and "eta" in lines[0]
    assert lines[-1].startswith("grpo step 100/100") and "eta" not in lines[-1]


def test_progress_of_a_short_run_shows_every_step():
    out = io.StringIO()
    p = console.Progress(20, initial=5, stream=out)
    for step in range(6, 21):
        p.update(step, {"reward": "0.5"})
    assert len(out.getvalue().splitlines()) == 15


def test_progress_off_the_first_rank_prints_nothing():
    out = io.StringIO()
    p = console.Progress(3, stream=out, enabled=False)
    p.update(1, {})
    assert out.getvalue() == ""


def test_duration():
    assert [console.duration(s) for s in (5.2, 75, 3725)] == ["5s", "1m15s", "1h02m"]


def test_unusable_triton_is_kept_out_only_on_a_cpu_torch_build(monkeypatch):
    import importlib.metadata

    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.13.0+cu128")
    console._skip_unusable_triton()
    assert "triton" not in sys.modules  # a CUDA build keeps it importable
