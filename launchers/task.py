"""What every submitted task runs: rank env -> health check -> entry point, preemption-safe.

Preemption and time limits follow submitit's protocol (Slurm sends SIGUSR2 `signal_delay_s`
before the limit; rank 0 calls `checkpoint()` on the submitted callable, which returns the
submission to requeue). submitit would requeue the moment the signal arrives, in the middle of a
training step; a multi-rank Megatron checkpoint needs every rank at a step boundary instead. So a
Task takes the signal first on every rank and turns it into SIGTERM, which the trainers already
treat as "save a checkpoint after this step and return" (nemo_r1.signals.StopFlag).
When the entry has returned, rank 0 runs submitit's own requeue path (`checkpoint()` + `scontrol
requeue`); the requeued run resumes from the checkpoint (`train.resume=auto`). An entry that
ignores SIGTERM is requeued after `grace_s` anyway and resumes from its last periodic checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import submitit

from launchers.env import RankEnv, current_rank_env, export
from launchers.health import Rendezvous

# subcommands whose config tree has `train.resume` (see nemo_r1/config.py)
RESUMABLE_SUBCOMMANDS = ("sft", "grpo", "demo")


class CliEntry:
    """Runs `nemo_r1.cli.main(argv)` in the task's process; a non-zero exit code is a failure."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)

    def __call__(self) -> int:
        from nemo_r1.cli import error_line, main

        try:
            rc = main(self.argv, raise_errors=True)
        except Exception as e:  # the job's report shows the command's one-line error, its traceback below
            raise RuntimeError(f"`nemo-r1 {' '.join(self.argv)}` failed: {error_line(e)}") from e
        except SystemExit as e:  # argparse errors exit; make them a failure with a traceback and a result
            rc = e.code if isinstance(e.code, int) else 1
            if rc == 0:
                return 0
            raise RuntimeError(f"`nemo-r1 {' '.join(self.argv)}` exited with {e.code!r}") from None
        if rc != 0:
            raise RuntimeError(f"`nemo-r1 {' '.join(self.argv)}` exited with code {rc}")
        return rc

    def for_requeue(self) -> CliEntry:
        """The command a requeued run executes: the same, resuming from the latest checkpoint."""
        if not self.argv or self.argv[0] not in RESUMABLE_SUBCOMMANDS:
            return self  # eval/generate resume from their own sample stores
        kept = [a for a in self.argv if not a.startswith("train.resume=")]
        return CliEntry(kept + ["train.resume=auto"])

    def __repr__(self) -> str:
        return f"nemo-r1 {' '.join(self.argv)}"


class Task(submitit.helpers.Checkpointable):
    """A picklable callable submitit runs once per task (rank)."""

    def __init__(self, entry: Callable[..., Any], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, health_timeout_s: float = 300.0, grace_s: float = 60.0,
                 attempt: int = 0) -> None:
        self.entry = entry
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.env = dict(env or {})
        self.health_timeout_s = health_timeout_s
        self.grace_s = grace_s
        self.attempt = attempt
        self._preempted: int | None = None
        self._preempted_at = 0.0
        self._term_handler_asked: Any = None
        self._submitit_handler: Any = None

    # -------------------------------------------------------------- the task body

    def __call__(self) -> Any:
        os.environ.update(self.env)
        rank_env = current_rank_env()
        export(rank_env)
        tag = f"[launch] rank {rank_env.rank}/{rank_env.world_size} node {rank_env.node_rank} ({rank_env.hostnames[rank_env.node_rank]})"
        print(f"{tag}: attempt {self.attempt}, master {rank_env.master_addr}:{rank_env.master_port}, "
              f"entry {_name(self.entry)}", flush=True)
        rdv = Rendezvous(rank_env, self.health_timeout_s)
        waited = rdv.check()
        if rank_env.rank == 0:
            print(f"[launch] all {rank_env.world_size} ranks on {rank_env.num_nodes} node(s) reached the "
                  f"rendezvous in {waited:.1f}s", flush=True)
        usr = submitit.JobEnvironment._usr_sig()
        self._submitit_handler = signal.getsignal(usr)
        self._preempted = None
        signal.signal(usr, self._on_preempt_signal)
        signal.signal(signal.SIGALRM, self._on_tick)
        try:
            try:
                result = self.entry(*self.args, **self.kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            # Slurm signals each node on its own clock: the trainers stop together (they all-reduce
            # the stop request), so a rank may return before its own signal arrives. Decide together.
            if rdv.any_rank("preempted", self._preempted is not None):
                self._preempted = self._preempted or usr
                self._requeue(rank_env)
        finally:
            rdv.close()
        return result

    # -------------------------------------------------------------- preemption

    def _on_preempt_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._preempted is not None:
            return
        self._preempted = signum
        self._preempted_at = time.monotonic()
        print(f"[launch] {signal.Signals(signum).name}: time limit or preemption; asking the entry to save a "
              f"checkpoint and return (requeue in at most {self.grace_s:.0f}s)", flush=True)
        self._ask_entry_to_stop()
        signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)

    def _ask_entry_to_stop(self) -> None:
        """SIGTERM is the trainers' stop request (StopFlag); remember whose handler received it."""
        self._term_handler_asked = signal.getsignal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    def _on_tick(self, signum: int, frame: FrameType | None) -> None:
        """Each second after the signal: re-ask an entry that installed its SIGTERM handler only
        after we asked (it was still starting up), and requeue anyway once the grace period ends."""
        if time.monotonic() - self._preempted_at >= self.grace_s:
            signal.setitimer(signal.ITIMER_REAL, 0)
            print(f"[launch] the entry did not return within {self.grace_s:.0f}s of the preemption signal; "
                  "requeueing now (it resumes from its last periodic checkpoint)", flush=True)
            self._requeue(current_rank_env())
        elif signal.getsignal(signal.SIGTERM) is not self._term_handler_asked:
            self._ask_entry_to_stop()

    def _requeue(self, rank_env: RankEnv) -> None:
        """Rank 0 requeues through submitit (which calls self.checkpoint()); the others wait to be
        stopped by the requeue and must not write a result, or submitit would take it as final."""
        assert self._preempted is not None
        if rank_env.rank == 0 and callable(self._submitit_handler):
            self._submitit_handler(self._preempted, None)  # checkpoint() + requeue + sys.exit
        if submitit.JobEnvironment().cluster == "local":
            from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE

            sys.exit(LOCAL_REQUEUE_RETURN_CODE)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # Slurm ends every task of the requeued job
            time.sleep(1)
        sys.exit(1)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on rank 0 once the entry saved its state: the submission to requeue."""
        entry = self.entry.for_requeue() if hasattr(self.entry, "for_requeue") else self.entry
        nxt = Task(entry, self.args, self.kwargs, self.env, self.health_timeout_s, self.grace_s, self.attempt + 1)
        print(f"[launch] requeueing as attempt {nxt.attempt}: {_name(entry)}", flush=True)
        return submitit.helpers.DelayedSubmission(nxt)

    def __repr__(self) -> str:
        return f"Task({_name(self.entry)}, attempt={self.attempt})"


def _name(entry: Callable[..., Any]) -> str:
    if isinstance(entry, CliEntry):
        return repr(entry)
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', type(entry).__name__)}"
