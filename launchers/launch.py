"""Submit in-process entry points to Slurm or the local machine through submitit.

`launch(opts, entry, *args)` submits one job of `nodes x tasks_per_node` tasks, each of which runs
`Task(entry)` (rank env, health check, preemption-safe entry call). `launch_array(opts, calls)`
submits one Slurm array (or one local job per shard) and `gather(jobs)` waits for all shards and
lists the failed ones with their log paths. No shell strings are built here: submitit pickles the
callable and runs it with the same Python on the nodes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from launchers.task import Task

EXECUTORS = ("slurm", "local")


@dataclass
class LaunchOptions:
    """Where and how big a job is; the defaults launch one task on this machine."""

    executor: str = "local"
    """`slurm` (sbatch + srun on a cluster) or `local` (subprocesses on this machine, one node)."""
    nodes: int = 1
    tasks_per_node: int = 1
    """Processes per node: one per GPU for training (8 on an 8-GPU node)."""
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    """Memory per node (Slurm --mem); None leaves the cluster default."""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | int = 60
    """Time limit: minutes, or [D-]HH:MM[:SS] as sbatch takes it."""
    job_name: str = "nemo-r1"
    log_dir: str = "outputs/launch"
    """submitit's folder: pickles and per-task stdout/stderr logs (%j = job id). Must be shared storage."""
    array_parallelism: int | None = None
    """At most this many array shards run at once (Slurm `--array=...%N`)."""
    health_timeout_s: float = 300.0
    """All ranks must reach the startup rendezvous within this, else a clear error names the missing ones."""
    signal_delay_s: int = 120
    """Slurm sends SIGUSR2 this long before the time limit; the run checkpoints and requeues."""
    max_requeues: int = 3
    """Requeues after time limits before the job is given up (preemptions do not count)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run in the sbatch script before srun (e.g. `module load cuda`)."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables set in every task before the entry runs."""
    slurm_extra: dict[str, str] = field(default_factory=dict)
    """Further sbatch options, e.g. {constraint: h100, exclusive: true}."""

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor={self.executor!r} is not one of {list(EXECUTORS)}")
        for name in ("nodes", "tasks_per_node"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.executor == "local" and self.nodes != 1:
            raise ValueError(f"the local executor runs on this machine only (nodes={self.nodes}); "
                             "use --executor slurm for multi-node jobs")
        minutes = time_minutes(self.time)
        if minutes * 60 < self.signal_delay_s + 60:
            raise ValueError(f"time={self.time!r} leaves no room for signal_delay_s={self.signal_delay_s}: Slurm "
                             "signals up to 30 s before that, possibly while Python is still starting; lower "
                             "signal_delay_s or raise the time limit")


def time_minutes(t: str | int) -> int:
    """Slurm time formats -> whole minutes (rounded up): 90, '90', '1:30:00', '2-00:00:00', '45:00'."""
    if isinstance(t, int):
        return t
    s = str(t).strip()
    if re.fullmatch(r"\d+", s):
        return int(s)
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if m is None:
        raise ValueError(f"time={t!r} is not minutes or [D-]HH:MM[:SS] (e.g. 90, '04:00:00', '1-00:00:00')")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        secs = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        secs = a * 3600 + b * 60 + c
    else:  # MM:SS
        secs = a * 60 + (b or 0)
    return max(1, -(-secs // 60))


def make_executor(opts: LaunchOptions) -> submitit.AutoExecutor:
    """A submitit AutoExecutor with the job's size, limits and Slurm options."""
    opts.validate()
    folder = Path(opts.log_dir).absolute() / "%j"
    ex = submitit.AutoExecutor(folder=folder, cluster=opts.executor, slurm_max_num_timeout=opts.max_requeues)
    params: dict[str, Any] = dict(name=opts.job_name, nodes=opts.nodes, tasks_per_node=opts.tasks_per_node,
                                  timeout_min=time_minutes(opts.time))
    if opts.gpus_per_node:
        params["gpus_per_node"] = opts.gpus_per_node
    if opts.cpus_per_task:
        params["cpus_per_task"] = opts.cpus_per_task
    if opts.mem_gb:
        params["mem_gb"] = opts.mem_gb
    if opts.executor == "slurm":
        slurm: dict[str, Any] = dict(slurm_partition=opts.partition, slurm_account=opts.account,
                                     slurm_qos=opts.qos, slurm_signal_delay_s=opts.signal_delay_s,
                                     slurm_setup=list(opts.setup) or None,
                                     slurm_array_parallelism=opts.array_parallelism,
                                     slurm_additional_parameters={"requeue": True, **opts.slurm_extra})
        params.update({k: v for k, v in slurm.items() if v is not None})
    elif opts.setup:
        params["local_setup"] = list(opts.setup)
    ex.update_parameters(**params)
    if opts.executor == "local":
        # LocalExecutor documents signal_delay_s but AutoExecutor does not forward it
        ex._executor.update_parameters(signal_delay_s=opts.signal_delay_s)
    return ex


def _task(opts: LaunchOptions, entry: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
    grace = max(10.0, opts.signal_delay_s - 30.0)  # leave time to requeue before the hard kill
    return Task(entry, args, kwargs, env=opts.env, health_timeout_s=opts.health_timeout_s, grace_s=grace)


def launch(opts: LaunchOptions, entry: Callable[..., Any], *args: Any, **kwargs: Any) -> submitit.Job:
    """Submit one job whose every task runs `entry(*args, **kwargs)` with torchrun-style env set.

    Results: `job.results()` (one per task); failures raise submitit's FailedJobError with the
    task's traceback. The entry must be importable on the nodes (a module-level function or a
    picklable callable object).
    """
    return make_executor(opts).submit(_task(opts, entry, args, kwargs))


Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def launch_array(opts: LaunchOptions, calls: Sequence[Call]) -> list[submitit.Job]:
    """Submit one shard per (entry, args, kwargs); on Slurm they form one job array."""
    if not calls:
        raise ValueError("launch_array needs at least one shard")
    ex = make_executor(opts)
    with ex.batch():
        jobs = [ex.submit(_task(opts, fn, tuple(a), dict(kw))) for fn, a, kw in calls]
    return jobs


@dataclass
class ShardFailure:
    index: int
    job_id: str
    state: str
    error: str
    """The task's traceback (or why no result exists)."""
    stdout: str
    stderr: str


@dataclass
class ArrayResult:
    """Outcome of all shards: results in shard order (None for failed shards) and the failures."""

    results: list[Any]
    failures: list[ShardFailure]

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        lines = [f"{len(self.results) - len(self.failures)}/{len(self.results)} shards succeeded"]
        for f in self.failures:
            last = f.error.strip().splitlines()[-1] if f.error.strip() else ""
            lines.append(f"  shard {f.index} (job {f.job_id}, {f.state}): {last}\n"
                         f"    stderr: {f.stderr}\n    stdout: {f.stdout}")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if self.failures:
            raise ShardsFailed(self.summary())


class ShardsFailed(RuntimeError):
    """Some array shards failed; the message lists each with its log paths."""


def gather(jobs: Sequence[submitit.Job], poll_s: float = 2.0, timeout_s: float | None = None,
           progress: bool = True) -> ArrayResult:
    """Wait until every shard finished (success, failure, cancellation) and collect the outcomes."""
    from tqdm import tqdm

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    pending = set(range(len(jobs)))
    bar = tqdm(total=len(jobs), desc="shards", unit="shard", disable=not progress)
    last_force = 0.0
    while pending:
        force = time.monotonic() - last_force > 10  # sacct at most every 10 s, result files every poll
        if force:
            last_force = time.monotonic()
        done = {i for i in pending if jobs[i].done(force_check=force)}
        bar.update(len(done))
        pending -= done
        if pending and deadline is not None and time.monotonic() > deadline:
            bar.close()
            raise TimeoutError(f"{len(pending)} shards still running after {timeout_s:.0f}s: "
                               + ", ".join(jobs[i].job_id for i in sorted(pending)))
        if pending:
            time.sleep(poll_s)
    bar.close()
    results: list[Any] = []
    failures: list[ShardFailure] = []
    for i, job in enumerate(jobs):
        try:
            out = job.results()
            results.append(out[0] if len(out) == 1 else out)
        except Exception as e:  # FailedJobError (traceback) or UncompletedJobError (killed, cancelled)
            results.append(None)
            failures.append(ShardFailure(index=i, job_id=str(job.job_id), state=job.state, error=str(e),
                                         stdout=str(job.paths.stdout).replace("%t", "0"),
                                         stderr=str(job.paths.stderr).replace("%t", "0")))
    return ArrayResult(results=results, failures=failures)
