"""Start a training command and SIGKILL its whole session once the first checkpoint exists: the
crash the resume tests recover from (nothing of the run survives, the next step is lost or half done)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from nemo_r1.models.checkpoint import latest_checkpoint


def kill_after_first_checkpoint(cmd: list[str], output_dir: Path, log: Path, cwd: Path, timeout_s: float,
                                poll_s: float = 0.1, env: dict[str, str] | None = None) -> Path:
    """Run `cmd`, kill it at its first checkpoint under `output_dir`; that checkpoint's path."""
    with log.open("w") as f:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=f, start_new_session=True, env=env)
    deadline = time.monotonic() + timeout_s
    while latest_checkpoint(output_dir) is None:
        assert proc.poll() is None, f"run ended before its first checkpoint: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint within {timeout_s:.0f} s"
        time.sleep(poll_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return latest_checkpoint(output_dir)
