"""`generate()`: n completions per problem of a dataset, written as they finish, exactly resumable.

Each output row is the problem's own columns plus the sample: key (`id`, `index` = the row's place
in the source, `sample`), model, settings, seed, prompt, completion, finish reason, token counts.

Why it reproduces: sample j of problem `id` is drawn with `sample_seed(seed, "generate", id, j)`,
so its text depends neither on batching nor on which shard or rerun produced it. Why nothing is lost
or doubled: a problem's n rows go to disk in one atomic append (`SampleStore`), a killed run's torn
tail is dropped when the file is reopened, and a rerun generates only the problems not on disk.
Sharding (`shard=(i, k)`) takes rows with `index % k == i`; `merge()` joins the k shard files into
one, ordered by (index, sample) and checked complete.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nemo_r1.rollout.base import RolloutConfig, SamplingConfig
from nemo_r1.rollout.parallel import EnginePool, Job, sample_seed
from nemo_r1.rollout.store import SampleStore, atomic_write_text

OUTPUT = "generations"
GENERATED = ("id", "index", "sample", "model", "settings", "seed", "prompt", "completion", "finish_reason",
             "prompt_tokens", "completion_tokens")
"""The columns `generate` adds to each problem's own (a same-named input column is replaced)."""


class GenerateError(ValueError):
    """A problem with the input or the output directory that the user can fix."""


@dataclass
class GenerateSettings:
    """What determines the samples: every shard and rerun writing into one directory must agree."""

    model: str
    data: str
    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = -1
    max_new_tokens: int = 4096
    seed: int = 0
    system_prompt: str | None = None
    chat_template: str | None = None
    instruction: bool = True
    """Append the \\boxed{} instruction after the problem (as eval and GRPO prompts do)."""
    columns: dict[str, str] = field(default_factory=dict)
    few_shot: list[dict[str, str]] = field(default_factory=list)
    """Worked examples ({user, assistant} turns) before the problem: a few-shot-prompted teacher
    whose traces a zero-shot student is then fine-tuned on (rows keep the problem alone)."""

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(n=1, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              max_new_tokens=self.max_new_tokens)

    def row_settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("temperature", "top_p", "top_k", "max_new_tokens", "system_prompt",
                                              "chat_template", "few_shot")}


def shard_path(out: Path, shard: tuple[int, int] | None) -> Path:
    if shard is None:
        return out / f"{OUTPUT}.jsonl"
    i, k = shard
    return out / f"{OUTPUT}.shard-{i:05d}-of-{k:05d}.jsonl"


def parse_shard(text: str) -> tuple[int, int]:
    """`i/k` (0 <= i < k) -> (i, k)."""
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise GenerateError(f"--shard {text!r}: write i/k, e.g. 0/4 (shard 0 of 4)") from None
    if not 0 <= i < k:
        raise GenerateError(f"--shard {text!r}: need 0 <= i < k")
    return i, k


def load_problems(settings: GenerateSettings) -> list[tuple[int, str, dict[str, Any]]]:
    """(index, id, row) for every row of the source; `id` is the row's id column or `row<index>`."""
    from nemo_r1.data.loading import DataError, iter_source

    cols = settings.columns
    pcol, icol = cols.get("problem", "problem"), cols.get("id", "id")
    out, seen = [], {}
    try:
        for index, (where, row, error) in enumerate(iter_source(settings.data, "train")):
            if row is None:
                raise GenerateError(f"{where}: {error}")
            if not isinstance(row.get(pcol), str) or not row[pcol].strip():
                raise GenerateError(f"{where}: no problem text in column {pcol!r} (has {sorted(row)}); "
                                    "map it with --columns problem=<column>")
            pid = str(row[icol]) if row.get(icol) is not None else f"row{index}"
            if pid in seen:
                raise GenerateError(f"{where}: id {pid!r} repeats {seen[pid]}; ids key the output, map a unique "
                                    "column with --columns id=<column>")
            seen[pid] = where
            out.append((index, pid, row))
    except DataError as e:
        raise GenerateError(str(e)) from None
    if not out:
        raise GenerateError(f"{settings.data}: no rows")
    return out


def build_prompt(tokenizer: Any, problem: str, settings: GenerateSettings) -> str:
    """The problem as eval and GRPO send it (system prompt, few-shot turns, optional \\boxed
    instruction, template)."""
    from nemo_r1.data.templates import BOXED_SUFFIX, problem_messages, render_prompt

    msgs = problem_messages(problem, settings.system_prompt, suffix=BOXED_SUFFIX if settings.instruction else "",
                            few_shot=settings.few_shot)
    if settings.chat_template == "none":
        return "\n\n".join(m["content"] for m in msgs) + "\n"
    return render_prompt(msgs, tokenizer, settings.chat_template)


def _check_settings(out: Path, settings: GenerateSettings, overwrite: bool) -> None:
    path = out / "settings.json"
    mine = asdict(settings)
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(mine) | set(old) if mine.get(k) != old.get(k))
        if diff:
            raise GenerateError(f"{out} holds generations made with other settings ({', '.join(diff)}: "
                                f"{[old.get(k) for k in diff]} there, {[mine.get(k) for k in diff]} now); "
                                "use a new --out, or --overwrite to start afresh")
    if overwrite:
        for f in out.glob(f"{OUTPUT}*.jsonl"):
            f.unlink()
        for f in out.glob(f"{OUTPUT}*.done.json"):
            f.unlink()
    atomic_write_text(path, json.dumps(mine, indent=2) + "\n")


def generate(settings: GenerateSettings, out_dir: str | Path, engine_config: RolloutConfig | None = None,
             shard: tuple[int, int] | None = None, dp: int = 1, max_batch: int = 256, engine: Any = None,
             overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Generate the missing samples of this shard into out_dir; returns a summary (also written to
    `<output>.done.json` once the shard is complete). `engine`: reuse an existing `Generator`."""
    from transformers import AutoTokenizer

    problems = load_problems(settings)  # bad input fails before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings, overwrite)
    if shard is not None:
        problems = [p for p in problems if p[0] % shard[1] == shard[0]]
    path = shard_path(out, shard)
    store = SampleStore(path, settings.n)
    if store.repaired:
        print(f"{path.name}: dropped {store.repaired} incomplete line(s) of an interrupted run")
    todo = [p for p in problems if p[1] not in store.done]
    spec = replace(engine_config or RolloutConfig(), model=settings.model, seed=settings.seed)
    tok = engine.tokenizer if engine is not None else AutoTokenizer.from_pretrained(settings.model)
    t0, traces, new_tokens = time.perf_counter(), 0, 0
    if todo:
        from tqdm.auto import tqdm

        pool = EnginePool(spec, dp=dp, engine=engine)
        ctx = pool.max_model_len
        jobs, prompts, rows = [], {}, {}
        for index, pid, row in todo:
            text = build_prompt(tok, row[settings.columns.get("problem", "problem")], settings)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) >= ctx:
                pool.close()
                raise GenerateError(f"{settings.data} row {index} (id {pid!r}): its prompt has {len(ids)} tokens, "
                                    f"the context {ctx}; raise rollout.max_model_len or drop the row")
            budget = min(settings.max_new_tokens, ctx - len(ids))
            prompts[pid], rows[pid] = (text, len(ids)), (index, row)
            jobs.append(Job(key=pid, prompts=[ids] * settings.n,
                            seeds=[sample_seed(settings.seed, "generate", pid, j) for j in range(settings.n)],
                            max_new_tokens=[budget] * settings.n))
        bar = tqdm(total=len(todo) * settings.n, unit="trace", desc="generate", disable=not progress,
                   dynamic_ncols=True)
        try:
            for pid, comps in pool.run(jobs, settings.sampling(), max_batch):
                index, row = rows[pid]
                text, n_prompt = prompts[pid]
                records = []
                for j, c in enumerate(comps):
                    rec = dict(row)
                    rec.update(id=pid, index=index, sample=j, model=settings.model, settings=settings.row_settings(),
                               seed=sample_seed(settings.seed, "generate", pid, j), prompt=text,
                               completion=c.text, finish_reason=c.finish_reason, prompt_tokens=n_prompt,
                               completion_tokens=len(c.token_ids))
                    records.append(rec)
                    new_tokens += len(c.token_ids)
                store.append_problem(records)
                traces += len(comps)
                dt = time.perf_counter() - t0
                bar.set_postfix(traces_s=f"{traces / dt:.2f}", tokens_s=f"{new_tokens / dt:.0f}", refresh=False)
                bar.update(len(comps))
        finally:
            bar.close()
            pool.close()
    seconds = time.perf_counter() - t0
    missing = [p[1] for p in problems if p[1] not in store.done]
    if missing:
        raise RuntimeError(f"{path}: {len(missing)} problems have no samples after generation")
    summary = {"file": path.name, "shard": list(shard) if shard else None, "problems": len(problems),
               "samples": len(problems) * settings.n, "generated_samples": traces, "generated_tokens": new_tokens,
               "seconds": round(seconds, 3), "traces_per_s": traces / seconds if traces else None,
               "tokens_per_s": new_tokens / seconds if traces else None}
    atomic_write_text(path.with_suffix(".done.json"), json.dumps(summary, indent=2) + "\n")
    return summary


def merge(out_dir: str | Path) -> dict[str, Any]:
    """Join a directory's shard files into `<output>.jsonl`, ordered by (index, sample); refuses
    when a shard is missing or unfinished, or two shards hold the same sample."""
    out = Path(out_dir)
    shards = sorted(out.glob(f"{OUTPUT}.shard-*-of-*.jsonl"))
    if not shards:
        raise GenerateError(f"{out}: no shard files ({OUTPUT}.shard-*-of-*.jsonl) to merge")
    counts = {int(p.name.split("-of-")[1].split(".")[0]) for p in shards}
    if len(counts) != 1:
        raise GenerateError(f"{out}: shards of different splits {sorted(counts)}; merge one split per directory")
    k = counts.pop()
    have = {int(p.name.split("shard-")[1].split("-")[0]) for p in shards}
    unfinished = sorted(set(range(k)) - {i for i in have if shard_path(out, (i, k)).with_suffix(".done.json").exists()})
    if unfinished:
        raise GenerateError(f"{out}: shard(s) {unfinished} of {k} missing or unfinished; run them (each resumes) "
                            "before merging")
    rows: dict[tuple[int, int], str] = {}
    for p in shards:
        for line in p.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            key = (int(rec["index"]), int(rec["sample"]))
            if key in rows:
                raise GenerateError(f"{p}: row {key[0]} sample {key[1]} is also in another shard")
            rows[key] = line
    target = shard_path(out, None)
    atomic_write_text(target, "".join(rows[key] + "\n" for key in sorted(rows)))
    return {"file": target.name, "shards": k, "samples": len(rows)}
