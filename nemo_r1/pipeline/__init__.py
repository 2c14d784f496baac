"""`nemo-r1 pipeline`: the R1 recipe's stages (generate, filter, decontaminate, sft, grpo, eval,
convert) as one resumable run, each stage the same command a user would type, in its own process.

Config shape (`configs/pipeline/*.yaml`)::

    output_dir: outputs/pipeline/my_run     # stage k runs in output_dir/NN_name/ (NN = 01, 02, ...)
    vars:                                   # free values for ${vars.NAME} (override: vars.model=...)
      model: embedded:smollm2
    stages:                                 # a list (each with `name`) or a mapping name -> stage
      - name: traces
        kind: generate                      # generate | filter | decontaminate | sft | grpo | eval | convert
        model: ${vars.model}                # flag commands: their options as keys (`--max-new-tokens`
        data: generated:arithmetic:64       #   -> max_new_tokens); lists/mappings for repeated options
        n: 4
      - name: kept
        kind: filter
        data: ${stages.traces.data}         # an earlier stage's output, resolved by OmegaConf
        filters: [length]                   # positional arguments under their argparse name
      - name: sft
        kind: sft
        config: configs/sft/my_sft.yaml     # sft/grpo: an optional config file, then its YAML
        model: {path: "${vars.model}"}      #   sections as overrides (`nemo-r1 sft --config F k=v`);
        data: {train: "${stages.kept.data}", format: prompt_completion}   # quote ${} in {...}
        nproc_per_node: 1                   # > 1: under torch.distributed.run (GPUs of one node)
        export_hf: true                     # the final checkpoint also as an HF dir (`checkpoint`)
      - name: eval
        kind: eval
        model: ${stages.sft.checkpoint}
        benchmarks: gsm8k

Outputs a later stage may name as `${stages.NAME.OUTPUT}` (`kinds.py`, `stages.outputs_of`):
every stage has `dir`; generate `data` (generations.jsonl) and `problems` (its input); filter and
decontaminate `data` (the kept rows) and `report`; sft and grpo `checkpoint` (the final weights
exported to an HF dir, which every command accepts), `mcore_checkpoint` (the last Megatron
`checkpoints/step_N`), `output_dir` and `metrics`; eval `results` and `scores` (benchmark ->
pass@1); convert `checkpoint`. Interpolation resolves against the pipeline (`vars`, `output_dir`,
`stages`), not the run configs. The pipeline owns where each stage writes (`--out`, `output_dir`)
and `train.resume` (always `auto`). A `data` option `generated:NAME[:heldout][:ROWS[:SEED]]` of
generate, filter, decontaminate or eval is a generated task (nemo_r1/data/tasks: arithmetic,
countdown, ...), written to the stage's `problems.jsonl` first (ROWS default: the task's run size;
SEED default 0).

Each finished stage leaves `done.json` (written atomically): the hash of its resolved config and of
its inputs (the previous stage's run id and digests of the local files it reads; `markers.py`), its
outputs and headline numbers. A rerun skips stages whose hashes match, resumes the interrupted one
(`started.json` with the same hashes: sft/grpo continue from their last checkpoint, generate and
eval from their sample stores), and reruns a changed stage and every stage after it. `summary.json`
holds one row per stage. `--stage NAME` runs one stage after checking that every earlier one is
finished (one launcher job per stage).
"""

from nemo_r1.pipeline.config import Pipeline, PipelineError, Stage, load_pipeline

__all__ = ["Pipeline", "PipelineError", "Stage", "load_pipeline"]
