"""The per-benchmark samples file: append-only jsonl that survives kills and resumes cleanly.

A problem's n samples are written in ONE `os.write` on an O_APPEND descriptor followed by fsync,
so a kill leaves either all of a problem's lines or a torn tail. On open, the tail is repaired:
complete problems are kept, anything else (a torn last line, a problem with fewer than n samples,
duplicates) is dropped by rewriting the file atomically (temp file + os.replace). A rerun then
generates exactly the missing problems, so no sample appears twice.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a half."""
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


class SampleStore:
    """Completed problems of one benchmark, keyed by problem id, each a list of n sample records."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = Path(path), n
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, list[dict[str, Any]]] = {}
        self.repaired = 0
        """Lines dropped on open (torn or incomplete problems from an interrupted run)."""
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        groups: dict[str, dict[int, dict[str, Any]]] = {}
        order: list[str] = []
        total = 0
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            total += 1
            try:
                rec = json.loads(line)
                pid, idx = str(rec["id"]), int(rec["sample"])
            except (ValueError, KeyError, TypeError):
                continue  # torn tail of a killed write
            if pid not in groups:
                groups[pid] = {}
                order.append(pid)
            groups[pid].setdefault(idx, rec)
        for pid in order:
            g = groups[pid]
            if set(g) == set(range(self.n)):
                self.done[pid] = [g[i] for i in range(self.n)]
            elif max(g) >= self.n:
                raise ValueError(f"{self.path}: problem {pid!r} has sample index {max(g)} but --n is {self.n}; "
                                 "use the run's original --n or a new --out")
        kept = sum(len(v) for v in self.done.values())
        self.repaired = total - kept
        if self.repaired or not raw.endswith(b"\n") and raw:
            atomic_write_text(self.path, "".join(_lines(recs) for recs in self.done.values()))

    def append_problem(self, records: list[dict[str, Any]]) -> None:
        """Append one problem's n samples atomically (one write, then fsync)."""
        if len(records) != self.n or sorted(r["sample"] for r in records) != list(range(self.n)):
            raise ValueError(f"append_problem needs samples 0..{self.n - 1} of one problem")
        pid = str(records[0]["id"])
        if pid in self.done:
            raise ValueError(f"{self.path}: problem {pid!r} already written")
        data = _lines(records).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):  # only on a full disk; the repair on the next open drops it
                raise OSError(f"{self.path}: short write ({written}/{len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done[pid] = list(records)


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
