"""Read rows from jsonl/json/parquet files, dataset folders or `hf:` hub sources, with errors that name
file and line.

Local jsonl/json is read line by line here (not by `datasets`' json builder) so that a broken row
is reported as `train.jsonl:1234: ...`, non-UTF-8 bytes included; parquet files, folders and
`hf:owner/name[:config][@split]` go through `datasets` (cached; locations are then `source row N`). Every row is checked for the columns its
format needs; a bad row raises `DataError`, or is skipped and counted when `skip_bad_rows` is set.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REQUIRED = {"problem": ("problem", "answer"), "messages": ("messages",), "prompt_completion": ("prompt", "completion"),
            "text": ("text",)}
CODE_TEST_COLUMNS = ("verification_info", "canonical_solution")
"""A `problem` row with one of these is a code task and needs no `answer`."""
_LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
HF_PREFIX = "hf:"


class DataError(ValueError):
    """A data problem a user can fix: names the file and line (or row) and what to do."""


@dataclass
class Rows:
    rows: list[dict[str, Any]]
    source: str
    skipped: int = 0
    """Bad rows skipped (skip_bad_rows=True)."""
    skip_reasons: dict[str, int] = field(default_factory=dict)
    decontaminated: int = 0
    """Rows dropped for sharing a problem with a benchmark (data.decontaminate)."""


Row = tuple[str, dict[str, Any] | None, str | None]
"""(location, row or None, error or None): a bad row travels as an error so the caller decides."""


def _iter_local(path: Path) -> Iterator[Row]:
    """(location, row or None, error or None) for each row of a local file."""
    if path.suffix == ".parquet":
        import datasets

        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
        for i, row in enumerate(ds):
            yield f"{path} row {i}", dict(row), None
        return
    raw = path.read_bytes()
    if path.suffix == ".json" and raw.lstrip()[:1] in (b"[", b"{"):
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            yield f"{path}:{line}", None, "not valid UTF-8 (re-encode the file as UTF-8)"
            return
        except json.JSONDecodeError as e:
            if raw.lstrip()[:1] == b"{" and b"\n{" in raw:  # really JSON lines named .json
                yield from _iter_lines(path, raw)
                return
            yield f"{path}:{e.lineno}", None, f"invalid JSON: {e.msg}"
            return
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                yield str(path), None, "a .json file must hold a list of rows (or one key mapping to a list)"
                return
            data = lists[0]
        for i, row in enumerate(data):
            yield (f"{path} row {i}", row, None) if isinstance(row, dict) else \
                (f"{path} row {i}", None, f"row is a {type(row).__name__}, not an object")
        return
    yield from _iter_lines(path, raw)


def _iter_lines(path: Path, raw: bytes) -> Iterator[Row]:
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield where, None, f"not valid UTF-8 at byte {e.start} (re-encode the file as UTF-8)"
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            yield where, None, f"invalid JSON at column {e.colno}: {e.msg}"
            continue
        if not isinstance(row, dict):
            yield where, None, f"row is a JSON {type(row).__name__}, not an object"
            continue
        yield where, row, None


def parse_hf_source(source: str) -> tuple[str, str | None, str | None]:
    """`hf:owner/name[:config][@split]` -> (name, config, split); None where not given."""
    spec = source[len(HF_PREFIX):]
    spec, _, split = spec.partition("@")
    name, _, config = spec.partition(":")
    if not name or "@" in split or ":" in config:
        raise DataError(f"data source {source!r}: write hf:owner/name, hf:owner/name:config, "
                        "hf:owner/name@split or hf:owner/name:config@split")
    return name, config or None, split or None


def _load_dataset(source: str, name: str, config: str | None, split: str) -> Any:
    """`datasets.load_dataset`, with every failure (offline, unknown repo, bad split) named by source."""
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as e:  # noqa: BLE001 -- offline, missing repo, wrong config or split: all one message
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        hint = ("check that its files share one set of columns" if Path(name).is_dir() else
                "hub sources need a connected machine (or a datasets cache that already holds them); "
                "offline, point data.train at a local .jsonl/.json/.parquet file")
        raise DataError(f"data source {source!r} could not be loaded through `datasets` ({why}); {hint}") from None


def _iter_dataset(source: str, name: str, config: str | None, split: str) -> Iterator[Row]:
    ds = _load_dataset(source, name, config, split)
    for i, row in enumerate(ds):
        yield f"{source}[{split}] row {i}", dict(row), None


def resolve_local(source: str) -> Path:
    """A relative path is looked up from the working directory, then from the checkout's root, so
    that shipped recipes (`data/gsm8k_train.jsonl`) run from anywhere."""
    path = Path(source).expanduser()
    if path.is_absolute() or path.exists():
        return path
    from nemo_r1.data.bundled import PROJECT_ROOT

    in_project = PROJECT_ROOT / path
    return in_project if in_project.exists() else path


def iter_source(source: str, split: str = "train") -> Iterator[Row]:
    """Rows of a local file or folder, or of `hf:owner/name[:config][@split]` through `datasets`."""
    if source.startswith(HF_PREFIX):
        name, config, hf_split = parse_hf_source(source)
        yield from _iter_dataset(source, name, config, hf_split or split)
        return
    path = resolve_local(source)
    if path.is_dir():  # a local dataset folder: `datasets` finds its data files and splits
        yield from _iter_dataset(source, str(path), None, split)
    elif path.exists():
        if path.suffix not in _LOCAL_SUFFIXES:
            raise DataError(f"data file {path}: unsupported type {path.suffix!r}; use .jsonl, .json or .parquet")
        yield from _iter_local(path)
    elif path.suffix in _LOCAL_SUFFIXES or "/" not in source or source.startswith((".", "/", "~")):
        raise DataError(f"data file {path} does not exist")
    else:
        raise DataError(f"data source {source!r} is not a local file or folder; for a Hugging Face hub "
                        f"dataset write hf:{source}")


_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def gsm8k_final_answer(answer: str) -> str | None:
    """The number after `####` in a GSM8K answer (thousands separators removed), or None."""
    m = _GSM8K_ANSWER.search(answer)
    if not m:
        return None
    return re.sub(r"(?<=\d),(?=\d{3})", "", m.group(1).strip())


def _check_row(row: dict[str, Any], fmt: str) -> str | None:
    """Why the row cannot be used, or None."""
    for col in REQUIRED[fmt]:
        if col == "answer" and any(row.get(k) is not None for k in CODE_TEST_COLUMNS):
            continue  # a code problem: graded by its tests, not a gold answer
        if col not in row or row[col] is None:
            return f"missing column {col!r} (has {sorted(row)}); map it with data.columns, e.g. {{{col}: <name>}}"
    if fmt == "problem":
        if not isinstance(row["problem"], str) or not row["problem"].strip():
            return "empty problem"
        if "answer" in row and not str(row["answer"]).strip():
            return "empty answer"
    if fmt == "messages":
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                               for m in msgs):
            return "messages must be a non-empty list of {role, content} objects"
        if not any(m["role"] == "assistant" for m in msgs):
            return "no assistant message (nothing to train on)"
    if fmt == "text" and (not isinstance(row["text"], str) or not row["text"].strip()):
        return "empty text"
    if fmt == "prompt_completion":
        if not isinstance(row["prompt"], str) or not isinstance(row["completion"], str):
            return "prompt and completion must be strings"
        if not row["completion"].strip():
            return "empty completion (nothing to train on)"
    return None


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def chat_messages(turns: list[Any], system: Any = None) -> list[Any]:
    """Turns as {role, content}: ShareGPT turns ({from: human|gpt, value}, Bespoke-Stratos, OpenThoughts)
    are renamed, and a separate `system` column becomes the first message (unless one is there).
    Turns already in {role, content} form (OpenR1-Math, Mixture-of-Thoughts) pass through; anything
    else is left for the row check to report."""
    out = []
    for t in turns:
        if isinstance(t, dict) and "role" not in t and "from" in t and "value" in t:
            t = {"role": SHAREGPT_ROLES.get(str(t["from"]), str(t["from"])), "content": t["value"]}
        out.append(t)
    if isinstance(system, str) and system.strip() and not (out and isinstance(out[0], dict)
                                                           and out[0].get("role") == "system"):
        out.insert(0, {"role": "system", "content": system})
    return out


def load_rows(source: str, fmt: str = "problem", columns: dict[str, str] | None = None, split: str = "train",
              skip_bad_rows: bool = False, max_samples: int | None = None) -> Rows:
    """Rows of `source` checked for format `fmt`, with `columns` ({target: source}) applied.

    For `problem`, a GSM8K-style answer (`rationale #### 72`) becomes `answer: "72"` and
    `solution: <rationale>`; a row with a `solution` but no `answer` (MATH) gets the content of
    the solution's last `\\boxed{}` as its answer.
    """
    if fmt not in REQUIRED:
        raise DataError(f"unknown data format {fmt!r}; use one of {list(REQUIRED)}")
    columns = dict(columns or {})
    out, skipped, reasons = [], 0, {}
    for where, row, error in iter_source(source, split):
        if row is not None:
            for target, src in columns.items():
                if src in row:
                    row[target] = row[src]
            if fmt == "problem" and isinstance(row.get("answer"), str) and "####" in row["answer"]:
                final = gsm8k_final_answer(row["answer"])
                if final is None:
                    error = "answer has `####` but no value after it"
                else:
                    row["solution"], row["answer"] = row["answer"].split("####")[0].strip(), final
            elif fmt == "messages" and isinstance(row.get("messages"), list):
                row["messages"] = chat_messages(row["messages"], row.get("system"))
            elif fmt == "problem" and row.get("answer") is None and isinstance(row.get("solution"), str):
                from nemo_r1.rewards.extract import last_boxed  # the reward's own reading of \boxed{}

                boxed = last_boxed(row["solution"])  # MATH rows: the gold is the solution's last \boxed{}
                if boxed is not None:
                    row["answer"] = boxed[0]
            error = error or _check_row(row, fmt)
        if error:
            if not skip_bad_rows:
                raise DataError(f"{where}: {error} (set data.skip_bad_rows=true to skip such rows)")
            skipped += 1
            key = error.split(" (")[0].split(";")[0]
            reasons[key] = reasons.get(key, 0) + 1
            continue
        out.append(row)
        if max_samples is not None and len(out) >= max_samples:
            break
    if skipped:
        log.warning("data: skipped %d bad rows of %s: %s", skipped, source, reasons)
    if not out:
        raise DataError(f"{source}: no usable rows" + (f" ({skipped} skipped: {reasons})" if skipped else ""))
    return Rows(out, source, skipped, reasons)
