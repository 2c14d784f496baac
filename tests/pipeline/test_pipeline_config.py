"""The pipeline file: stage shapes, overrides, interpolation, command lines, and the errors a user sees."""

import textwrap
from pathlib import Path

import pytest

from nemo_r1.pipeline import PipelineError, load_pipeline
from nemo_r1.pipeline.config import resolve
from nemo_r1.pipeline.stages import outputs_of, parse_generated, plan_stage

ROOT = Path(__file__).resolve().parents[2]
CHAIN = """\
output_dir: OUT_DIR
vars:
  model: /models/student
stages:
  - name: gen
    kind: generate
    model: ${vars.model}
    data: generated:arithmetic:6
    n: 2
    max_new_tokens: 8
    columns: {problem: problem}
  - name: kept
    kind: filter
    data: ${stages.gen.data}
    filters: [pass_rate, 0.25, 0.75, correct]
    columns: {answer: answer}
  - name: sft
    kind: sft
    model: {path: "${vars.model}"}
    data: {train: "${stages.kept.data}", format: prompt_completion}
    optim: {lr: 1.0e-5}
  - name: ev
    kind: eval
    model: ${stages.sft.checkpoint}
    benchmarks: gsm8k
    limit: 4
    set: [rollout.kv_cache_gib=0.25]
"""


def write(tmp_path: Path, text: str, name: str = "pipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).replace("OUT_DIR", str(tmp_path / "run")))
    return path


def test_list_and_mapping_forms_give_the_same_stages(tmp_path):
    listed = load_pipeline(write(tmp_path, CHAIN))
    mapping = CHAIN.replace("  - name: gen\n", "  gen:\n").replace("  - name: kept\n", "  kept:\n") \
        .replace("  - name: sft\n", "  sft:\n").replace("  - name: ev\n", "  ev:\n")
    mapped = load_pipeline(write(tmp_path, mapping, "map.yaml"))
    assert [(s.name, s.kind, s.dirname) for s in listed.stages] == [
        ("gen", "generate", "01_gen"), ("kept", "filter", "02_kept"), ("sft", "sft", "03_sft"), ("ev", "eval", "04_ev")]
    assert [s.options for s in mapped.stages] == [s.options for s in listed.stages]
    assert listed.stages[0].line == 5 and listed.stages[3].line == 22  # errors point at the stage


def test_overrides_reach_stages_and_vars(tmp_path):
    pipe = load_pipeline(write(tmp_path, CHAIN), ["stages.sft.optim.lr=2e-5", "vars.model=/other", "stages.gen.n=3",
                                                  f"output_dir={tmp_path / 'elsewhere'}"])
    assert pipe.output_dir == tmp_path / "elsewhere"
    assert pipe.stage("sft").options["optim"]["lr"] == 2e-5
    assert pipe.stage("gen").options["n"] == 3
    assert resolve(pipe, pipe.stage("gen"), {})["options"]["model"] == "/other"


def test_interpolation_resolves_earlier_outputs_into_command_lines(tmp_path):
    pipe = load_pipeline(write(tmp_path, CHAIN))
    gen, kept, sft, ev = pipe.stages
    run = tmp_path / "run"
    g = plan_stage(pipe, gen, resolve(pipe, gen, {}))
    assert g.argv == ["generate", "--model", "/models/student", "--data", str(run / "01_gen" / "problems.jsonl"),
                      "--n", "2", "--max-new-tokens", "8", "--columns", "problem=problem", "--no-progress",
                      "--out", str(run / "01_gen")]
    assert len(g.generated) == 6 and {"problem", "answer"} <= set(g.generated[0])
    outs = {"gen": outputs_of(pipe, gen, g)}
    assert outs["gen"]["data"] == str(run / "01_gen" / "generations.jsonl")
    assert outs["gen"]["problems"] == str(run / "01_gen" / "problems.jsonl")
    k = plan_stage(pipe, kept, resolve(pipe, kept, outs))
    # positionals first, in order; an `append` option repeated per item; the switch only when true
    assert k.argv == ["filter", "pass_rate", "0.25", "0.75", "correct", "--data", outs["gen"]["data"],
                      "--columns", "answer=answer", "--no-progress", "--out", str(run / "02_kept" / "kept.jsonl")]
    outs["kept"] = outputs_of(pipe, kept, k)
    s = plan_stage(pipe, sft, resolve(pipe, sft, outs))
    assert s.argv == ["sft", "--config", str(run / "03_sft" / "stage.yaml")]
    assert s.config["data.train"] == "${output_dir}/02_kept/kept.jsonl"  # moved run dirs keep their hashes
    assert s.config["optim.lr"] == 1e-5 and "optim.adam_beta1" not in s.config  # chosen values, not defaults
    assert "output_dir: " + str(run / "03_sft") in s.files["stage.yaml"]
    assert "resume: auto" in s.files["stage.yaml"]
    outs["sft"] = outputs_of(pipe, sft, s)
    assert outs["sft"]["checkpoint"] == str(run / "03_sft" / "hf")
    e = plan_stage(pipe, ev, resolve(pipe, ev, outs))
    assert e.argv == ["eval", "--model", str(run / "03_sft" / "hf"), "--benchmarks", "gsm8k", "--limit", "4",
                      "--set", "rollout.kv_cache_gib=0.25", "--no-progress", "--out", str(run / "04_ev")]


def test_string_interpolation_and_output_dir(tmp_path):
    text = CHAIN.replace("benchmarks: gsm8k", "data: ${stages.gen.dir}/../notes_${vars.model}.jsonl")
    text = text.replace("model: ${stages.sft.checkpoint}", "model: ${output_dir}/base")
    pipe = load_pipeline(write(tmp_path, text))
    outs = {s.name: outputs_of(pipe, s, None) for s in pipe.stages[:3]}
    options = resolve(pipe, pipe.stage("ev"), outs)["options"]
    assert options["data"] == f"{tmp_path / 'run' / '01_gen'}/../notes_/models/student.jsonl"
    assert options["model"] == f"{tmp_path / 'run'}/base"


def test_generated_sources():
    assert parse_generated("generated:arithmetic:8", "w") == ("arithmetic", "train", 8, 0)
    assert parse_generated("generated:arithmetic:heldout:5:2", "w") == ("arithmetic", "heldout", 5, 2)
    assert parse_generated("generated:countdown", "w") == ("countdown", "train", 2000, 0)
    with pytest.raises(PipelineError, match="unknown generated task 'arithmetc'; did you mean 'arithmetic'"):
        parse_generated("generated:arithmetc:8", "w")
    with pytest.raises(PipelineError, match="unknown split 'test'"):
        parse_generated("generated:arithmetic:test", "w")
    with pytest.raises(PipelineError, match=r"write generated:NAME\[:heldout\]\[:ROWS\[:SEED\]\]"):
        parse_generated("generated:arithmetic:0", "w")


def test_the_generated_rows_are_part_of_the_hash(tmp_path):
    six = load_pipeline(write(tmp_path, CHAIN))
    seven = load_pipeline(write(tmp_path, CHAIN), ["stages.gen.data=generated:arithmetic:7"])
    a = plan_stage(six, six.stages[0], resolve(six, six.stages[0], {}))
    b = plan_stage(seven, seven.stages[0], resolve(seven, seven.stages[0], {}))
    assert a.config["data"] == "generated:arithmetic:6" and b.config["data"] == "generated:arithmetic:7"
    assert a.config["data_rows"] != b.config["data_rows"]
    assert b.generated[:6] == a.generated  # the first k rows of n are the rows of k


@pytest.mark.parametrize("edit, message", [
    (("model: ${stages.sft.checkpoint}", "model: ${stages.eval.checkpoint}"),
     r"pipe.yaml:22: stage ev: \$\{stages.eval...\} names no stage \(did you mean 'ev'\?\); stages: gen, kept, sft, ev"),
    (("data: ${stages.gen.data}", "data: ${stages.sft.checkpoint}"),
     r"pipe.yaml:12: stage kept: \$\{stages.sft.checkpoint\} refers to stage sft, which runs after it \(stage 3 of "
     r"4\); a stage can use the outputs of earlier stages only: gen"),
    (("model: ${stages.sft.checkpoint}", "model: ${stages.ev.results}"), r"stage ev: .*refers to itself"),
    (("model: ${stages.sft.checkpoint}", "model: ${stages.sft.ckpt}"),
     r"stage ev: \$\{stages.sft.ckpt\}: a sft stage has no output 'ckpt'; its outputs: dir, checkpoint, "
     r"mcore_checkpoint, output_dir, metrics"),
    (("kind: filter", "kind: filtr"), r"pipe.yaml:12: stage kept: kind 'filtr' is not one of .* \(did you mean 'filter'\?\)"),
    (("max_new_tokens: 8", "max_new_token: 8"),
     r"stage gen: `nemo-r1 generate` has no option 'max_new_token' \(did you mean 'max_new_tokens'\?\)"),
    (("n: 2", "n: lots"), r"stage gen: `nemo-r1 generate` rejects the options: argument --n: invalid int value: 'lots'"),
    (("n: 2", "out: somewhere"), r"stage gen: `out` is set by the pipeline"),
    (("optim: {lr: 1.0e-5}", "optim: {lrr: 1.0e-5}"),
     r"pipe.yaml:17: stage sft: its sections: unknown config key 'optim.lrr'; did you mean 'optim.lr'\?"),
    (("optim: {lr: 1.0e-5}", "train: {resume: none}"), r"stage sft: `train.resume` is set by the pipeline"),
    (("optim: {lr: 1.0e-5}", "config: no/such.yaml"), r"stage sft: config file no/such.yaml does not exist"),
    (("  - name: kept\n", "  - name: gen\n"), r"two stages are named 'gen'"),
    (("limit: 4", "limit: 4\n    nproc_per_node: 2"), r"stage ev: 'nproc_per_node' applies to sft and grpo stages only"),
    (("vars:", "varz:"), r"unknown top-level key 'varz' \(did you mean 'vars'\?\)"),
    (("    n: 2\n", "    n: [2\n"), r"pipe.yaml:\d+:\d+: invalid YAML"),
])
def test_errors_name_the_stage_and_the_fix(tmp_path, edit, message):
    old, new = edit
    assert old in CHAIN
    with pytest.raises(PipelineError, match=message):
        load_pipeline(write(tmp_path, CHAIN.replace(old, new, 1)))


@pytest.mark.parametrize("override, message", [
    ("stages.sfx.optim.lr=1", r"override 'stages.sfx.optim.lr=1': no stage 'sfx' \(did you mean 'sft'\?\); stages: "
                              r"gen, kept, sft, ev"),
    ("optim.lr=1", r"'optim' is not a pipeline key.*stages.STAGE.KEY="),
    ("stages.sft=1", r"name a key of stage 'sft'"),
    ("stages.sft.optim.lr", r"is not key=value"),
])
def test_override_errors(tmp_path, override, message):
    with pytest.raises(PipelineError, match=message):
        load_pipeline(write(tmp_path, CHAIN), [override])


def test_convert_stage_takes_its_direction_and_flags(tmp_path):
    text = """\
    output_dir: OUT_DIR
    stages:
      - name: to_mcore
        kind: convert
        direction: hf-to-mcore
        hf: /models/student
        tp: 2
      - name: back
        kind: convert
        direction: mcore-to-hf
        ckpt: ${stages.to_mcore.checkpoint}
    """
    pipe = load_pipeline(write(tmp_path, text))
    first, back = pipe.stages
    p1 = plan_stage(pipe, first, resolve(pipe, first, {}))
    assert p1.argv == ["convert", "hf-to-mcore", "--hf", "/models/student", "--tp", "2",
                       "--out", str(tmp_path / "run" / "01_to_mcore" / "model")]
    p2 = plan_stage(pipe, back, resolve(pipe, back, {"to_mcore": outputs_of(pipe, first, p1)}))
    assert p2.argv[:4] == ["convert", "mcore-to-hf", "--ckpt", str(tmp_path / "run" / "01_to_mcore" / "model")]
    with pytest.raises(PipelineError, match="a convert stage needs direction: hf-to-mcore or mcore-to-hf"):
        load_pipeline(write(tmp_path, text.replace("direction: mcore-to-hf", "direction: sideways")))


def test_the_documented_shape_loads(tmp_path):
    """The example in nemo_r1/pipeline/__init__.py is the reference for new pipeline files."""
    import nemo_r1.pipeline as package

    doc = package.__doc__
    block = doc[doc.index("::\n") + 3:doc.index("\nOutputs a later stage")]
    path = tmp_path / "doc.yaml"
    path.write_text(textwrap.dedent(block))
    pipe = load_pipeline(path, check_options=False)
    assert [(s.name, s.kind) for s in pipe.stages] == [("traces", "generate"), ("kept", "filter"), ("sft", "sft"),
                                                       ("eval", "eval")]
    assert pipe.stage("sft").config == "configs/sft/my_sft.yaml" and pipe.stage("sft").export_hf is True
    # every option in it is one its command takes (with a config file that exists for the sft stage)
    real = ROOT / "configs" / "sft" / "gsm8k_distill_cpu.yaml"
    assert load_pipeline(path, [f"stages.sft.config={real}"]).stage("sft").config == str(real)


def test_the_shipped_pipeline_configs_load():
    for path in sorted((ROOT / "configs" / "pipeline").glob("*.yaml")):
        pipe = load_pipeline(path)
        assert pipe.stages, path


def test_eval_scores_resolve_once_the_eval_ran(tmp_path):
    text = CHAIN + """\
  - name: note
    kind: generate
    model: ${stages.sft.checkpoint}
    data: data/x.jsonl
    system_prompt: "the teacher scored ${stages.ev.scores.gsm8k}"
"""
    pipe = load_pipeline(write(tmp_path, text))  # no score to check yet: the stage is checked when it runs
    outs = {s.name: outputs_of(pipe, s, None) for s in pipe.stages[:4]}
    outs["ev"]["scores"] = {"gsm8k": 0.25}
    assert resolve(pipe, pipe.stage("note"), outs)["options"]["system_prompt"] == "the teacher scored 0.25"
