#!/usr/bin/env bash
# Distillation on CPU, end to end: evaluate the embedded SmolLM2-135M-Instruct on GSM8K test (first
# 500, greedy), SFT it on GSM8K's worked solutions (configs/sft/gsm8k_distill_cpu.yaml), evaluate the
# final checkpoint the same way, and print both accuracies with the gain in standard errors.
# Every stage resumes: a rerun skips finished evals and continues the SFT from its last checkpoint.
#   bash tools/distill_gsm8k.sh [sft overrides...]      (make distill)
set -euo pipefail
cd "$(dirname "$0")/.."
NEMO=${NEMO:-.venv/bin/nemo-r1}
OUT=${OUT:-outputs/distill_gsm8k}
EVAL=(--benchmarks gsm8k --limit 500 --temperature 0 --max-new-tokens 300 --seed 0 --no-progress)

"$NEMO" eval --model embedded:smollm2 "${EVAL[@]}" --out "$OUT/eval_base"
start=$(date +%s)
"$NEMO" sft --config configs/sft/gsm8k_distill_cpu.yaml output_dir="$OUT/sft" "$@"
echo "sft wall time: $(( $(date +%s) - start )) s" | tee "$OUT/sft/wall_time.txt"
last=$(ls "$OUT/sft/checkpoints" | sed 's/^step_//' | sort -n | tail -1)
"$NEMO" eval --model "$OUT/sft/checkpoints/step_$last" "${EVAL[@]}" --out "$OUT/eval_sft"

"$(dirname "$NEMO")/python" - "$OUT" <<'PY'
import json, math, sys
out = sys.argv[1]
rows = {name: json.load(open(f"{out}/eval_{name}/results.json"))["benchmarks"]["gsm8k"] for name in ("base", "sft")}
for name, r in rows.items():
    print(f"{name:>4}: gsm8k first {r['problems']}, greedy: accuracy {r['pass@1']:.3f} +- {r['stderr']:.3f} "
          f"(no boxed answer {r['extraction_failure_rate']:.1%}, mean length {r['mean_length']:.0f} tokens)")
gain = rows["sft"]["pass@1"] - rows["base"]["pass@1"]
se = math.sqrt(rows["sft"]["stderr"] ** 2 + rows["base"]["stderr"] ** 2)
print(f"gain {gain:+.3f} = {gain / se if se else float('inf'):.1f} standard errors of the difference")
PY
