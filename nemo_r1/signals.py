"""Stop requests as a flag: what the trainers' loops and the launchers' smoke run both check.

SIGTERM (Slurm preemption, `kill`, a launcher's task passing on a time-limit signal) and SIGINT
(Ctrl-C) must not lose work: the handler only sets a flag; the loop notices it at the next step
boundary, saves a checkpoint and exits cleanly. It lives at the package top so that launchers and
trainers share it without either importing the other.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


class StopFlag:
    """Set by SIGTERM/SIGINT; a second Ctrl-C restores the default handler (hard stop)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: the caller owns signals
                pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.signal = signum
        print(f"\n[nemo-r1] received {signal.Signals(signum).name}: saving a checkpoint after this step, then exiting",
              flush=True)

    @property
    def stop(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
