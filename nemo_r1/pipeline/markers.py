"""Stage hashes and markers: what decides skip, resume or rerun.

A stage is identified by two hashes: of its resolved config (flattened: a flag command's options,
an sft/grpo stage's values that differ from the schema defaults; the pipeline's own output_dir
written as `${output_dir}` so a moved run directory stays valid) and of its inputs (the previous
stage's run id, and digests of the local files and folders its options name outside output_dir). The run id is new each time a stage finishes, so when a stage runs again every stage
after it runs again too, even where its config did not change: its input may have.

`started.json` is written before the command starts and `done.json` after it succeeded, both
atomically (temp file + rename): a killed run leaves at most `started.json`, which makes the next
run resume the stage (same hashes) or start it afresh (changed).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DONE = "done.json"
STARTED = "started.json"
LOG = "stage.log"
BIG_FILE = 256 << 20
"""Files larger than this are identified by size and mtime, not their bytes (see `file_digest`)."""
MAX_DIFFS = 3
"""Changed keys named in a rerun reason; the rest are counted."""


@dataclass
class Decision:
    """What a run does with a stage, and why (printed, and kept in summary.json)."""

    action: str
    """`skip` (done, same hashes), `resume` (interrupted, same hashes) or `run` (new or changed)."""
    reason: str
    changed: bool = False
    """True when an earlier result exists that no longer matches: the stage dir is cleared first."""
    attempt: int = 1


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1e-5}} -> {"optim.lr": 1e-5}; lists stay whole values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value} if prefix else {}


def relativize(value: Any, root: Path) -> Any:
    """Strings under `root` written as `${output_dir}/...`, recursively."""
    base = str(root)
    if isinstance(value, str):
        if value == base or value.startswith(base + os.sep):
            return "${output_dir}" + value[len(base):]
        return value
    if isinstance(value, dict):
        return {k: relativize(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [relativize(v, root) for v in value]
    return value


def absolutize(value: Any, root: Path) -> Any:
    """The inverse of `relativize`: `${output_dir}/...` strings under `root`."""
    if isinstance(value, str):
        return str(root) + value[len("${output_dir}"):] if value.startswith("${output_dir}") else value
    if isinstance(value, dict):
        return {k: absolutize(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [absolutize(v, root) for v in value]
    return value


def file_digest(path: Path) -> str:
    """A file: sha256 of its bytes. A folder (a model, a dataset dir) or a file over BIG_FILE: sha256
    of each file's relative path, size and mtime, since reading every weight or data shard of a large
    run on each invocation would cost minutes; a rewritten file changes its mtime."""
    h = hashlib.sha256()
    if path.is_file() and path.stat().st_size > BIG_FILE:
        st = path.stat()
        return "stat:" + hashlib.sha256(f"{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return "sha256:" + h.hexdigest()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "tree:" + h.hexdigest()


def input_files(values: Any, output_dir: Path) -> dict[str, str]:
    """Digests of the existing local files and folders named by string values, outside output_dir
    (stages' own outputs are covered by the run-id chain). Relative paths are looked up as the
    commands look them up: the working directory, then the checkout (`data/gsm8k_train.jsonl`)."""
    from nemo_r1.data.loading import resolve_local

    found: dict[str, str] = {}
    cwd = Path.cwd()
    for text in _strings(values):
        if not text or len(text) > 4096 or "\n" in text or ":" in text.split("/")[0]:
            continue  # hf:..., generated:..., embedded:... and free text are not paths
        if "/" not in text and "." not in text:
            continue  # a bare word (a filter name, `cosine`, `auto`) is a setting, even where a file has its name
        try:
            path = resolve_local(text).absolute()
            exists = path.exists()
        except (OSError, ValueError):
            continue
        if not exists or path == output_dir or output_dir in path.parents:
            continue
        if path == cwd or path in cwd.parents or (path.is_dir() and (path / ".git").exists()):
            continue  # the working directory or a checkout, not an input
        found[text] = file_digest(path)
    return found


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`optim.lr 1e-05 -> 2e-05` for every flattened key that differs. A key that is absent holds
    the command's default (configs record the values chosen, options the flags given)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<default>"), new.get(key, "<default>")
        if a != b:
            out.append(f"{key} {_short(a)} -> {_short(b)}")
    return out


def explain_change(marker: dict[str, Any], config: dict[str, Any], inputs: dict[str, Any]) -> str:
    """Why a stage's previous result no longer holds, in words."""
    parts = []
    diffs = config_diff(marker.get("config") or {}, config)
    if diffs:
        more = f", +{len(diffs) - MAX_DIFFS} more" if len(diffs) > MAX_DIFFS else ""
        parts.append(f"config changed ({', '.join(diffs[:MAX_DIFFS])}{more})")
    old_inputs = marker.get("inputs") or {}
    if old_inputs.get("after") != inputs.get("after"):
        parts.append(f"stage {inputs.get('after_stage')} ran again" if inputs.get("after_stage")
                     else "an earlier stage ran again")
    old_files, new_files = old_inputs.get("files") or {}, inputs.get("files") or {}
    changed = sorted(k for k in set(old_files) | set(new_files) if old_files.get(k) != new_files.get(k))
    if changed:
        parts.append(f"input changed ({', '.join(changed[:MAX_DIFFS])})")
    if not parts and marker.get("config_hash") != digest(config):
        parts.append("config changed")
    return ", ".join(parts) or "its hashes differ"


def decide(stage_dir: Path, config: dict[str, Any], inputs: dict[str, Any]) -> Decision:
    """Skip a finished stage whose hashes match, resume an interrupted one, else run it (clearing
    a previous result that no longer matches)."""
    config_hash, inputs_hash = digest(config), digest(inputs)
    done, started = read_json(stage_dir / DONE), read_json(stage_dir / STARTED)
    if done is not None:
        if done.get("config_hash") == config_hash and done.get("inputs_hash") == inputs_hash:
            return Decision("skip", "done")
        return Decision("run", explain_change(done, config, inputs), changed=True)
    if started is not None:
        if started.get("config_hash") == config_hash and started.get("inputs_hash") == inputs_hash:
            attempt = int(started.get("attempt", 1)) + 1
            return Decision("resume", f"interrupted run found, resuming it (attempt {attempt})", attempt=attempt)
        return Decision("run", explain_change(started, config, inputs) + " since its interrupted run", changed=True)
    return Decision("run", "not run yet")


def read_json(path: Path) -> dict[str, Any] | None:
    """A marker, or None when there is none (a marker that cannot be read counts as none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, obj: Any) -> None:
    """A marker or summary, written atomically (see `write_text`)."""
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
