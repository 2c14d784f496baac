"""`nemo-r1 pipeline --config FILE [--stage NAME] [--dry-run] [overrides]`: the stages in order.

Each stage is a child process (`python -m nemo_r1.cli <command> ...`), so a crash, a SIGKILL or the
torch.distributed state of one stage cannot reach the next; its output streams to the terminal and
to `NN_name/stage.log`. SIGTERM/SIGINT are passed on to the running stage (the trainers save a
checkpoint at the step boundary and exit) and the pipeline stops after it, so `nemo-r1 launch`
can requeue the job and the rerun resumes. Under a multi-rank launch only `--stage NAME` runs:
every rank starts an sft/grpo stage's command with its rank's environment, rank 0 alone writes
the markers, and the other commands run on rank 0 only.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from nemo_r1.pipeline.config import Pipeline, PipelineError, Stage, load_pipeline, resolve
from nemo_r1.pipeline.kinds import KINDS
from nemo_r1.pipeline.markers import (
    DONE,
    LOG,
    STARTED,
    Decision,
    absolutize,
    decide,
    digest,
    input_files,
    read_json,
    relativize,
    write_json,
)
from nemo_r1.pipeline.stages import (
    StagePlan,
    child_command,
    follow_up,
    headline,
    numbers_of,
    outputs_of,
    plan_stage,
    prepare,
)

SUMMARY = "summary.json"
LOCK = ".pipeline.lock"
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
            "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")
"""What a launcher sets per rank; removed for the commands that run on rank 0 alone."""
FOLLOW_TIMEOUT_S = 1800.0


@dataclass
class Row:
    """One stage in the summary."""

    name: str
    kind: str
    dir: str
    status: str
    """ran | resumed | skipped | failed | stopped | pending | would run"""
    seconds: float = 0.0
    """Wall time of this invocation (0 for a skipped stage; its done.json keeps the original)."""
    reason: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    exit_code: int | None = None


class Runner:
    """Runs a loaded pipeline: decides per stage, starts its command, writes markers and the summary."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal: int | None = None

    # ------------------------------------------------------------------------- the loop

    def run(self, only: str | None = None, dry_run: bool = False) -> int:
        """Exit code: 0 when every stage asked for is done (or the run was stopped by SIGTERM for a
        requeue), 1 when a stage failed, 130 after Ctrl-C."""
        pipe = self.pipe
        target = pipe.stage(only) if only else None
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and target is None:
            raise PipelineError(f"{pipe.source}: under a multi-rank launch (WORLD_SIZE={world}) run one stage per "
                                "job with --stage NAME (docs/launch.md), or launch the whole pipeline as one task")
        if world > 1 and rank != 0:
            return self.follow(target)  # type: ignore[arg-type]
        t_start = time.perf_counter()
        lock = None if dry_run else hold_lock(pipe.output_dir)
        what = f"stage {target.name} only" if target else f"{len(pipe.stages)} stages"
        print(f"nemo-r1 pipeline: {pipe.source}, {what} -> {pipe.output_dir}", flush=True)
        rows: list[Row] = []
        outputs: dict[str, dict[str, Any]] = {}
        prev: tuple[str, str] | None = None  # (name, run id) of the last finished stage
        rerun_from: str | None = None
        previous = self._handle_signals()
        try:
            for stage in pipe.stages:
                if target is not None and stage.index > target.index:
                    rows.append(self._row(stage, "pending"))
                    continue
                if dry_run and rerun_from is not None:
                    rows.append(self._row(stage, "would run", reason=f"after stage {rerun_from}"))
                    print(f"stage {stage.name}: would run (after stage {rerun_from})", flush=True)
                    continue
                plan = plan_stage(pipe, stage, resolve(pipe, stage, outputs))
                inputs = stage_inputs(plan, prev, pipe.output_dir)
                decision = decide(plan.dir, plan.config, inputs)
                if decision.action == "skip":
                    done = read_json(plan.dir / DONE) or {}
                    print(f"stage {stage.name}: done ({plan.dir.name}/{DONE}), skipped", flush=True)
                    outputs[stage.name] = self._outputs(done)
                    rows.append(self._row(stage, "skipped", reason="done", numbers=done.get("numbers") or {},
                                          outputs=outputs[stage.name]))
                    prev = (stage.name, done.get("run_id", ""))
                    continue
                if target is not None and stage is not target:
                    raise PipelineError(
                        f"--stage {target.name}: the earlier stage {stage.name} is not finished with the current "
                        f"config ({decision.reason}); run `nemo-r1 pipeline --config {pipe.source} --stage "
                        f"{stage.name}` first, or the whole pipeline without --stage")
                self._announce(stage, decision, rerun_from, dry_run)
                rerun_from = rerun_from or stage.name
                if dry_run:
                    rows.append(self._row(stage, "would run", reason=decision.reason))
                    continue
                if self.stop_signal is not None:  # a signal between stages: start no new one
                    rows += [self._row(s, "pending") for s in pipe.stages if s.index >= stage.index]
                    self._summary(rows, time.perf_counter() - t_start)
                    print(f"nemo-r1 pipeline: stopped before stage {stage.name}", flush=True)
                    return 130 if self.stop_signal == signal.SIGINT else 0
                row = self._run_stage(plan, decision, inputs)
                rows.append(row)
                if row.status not in ("ran", "resumed"):
                    rows += [self._row(s, "pending") for s in pipe.stages if s.index > stage.index]
                    self._summary(rows, time.perf_counter() - t_start)
                    if row.status == "stopped":
                        print(f"nemo-r1 pipeline: stopped during stage {stage.name}; rerun the same command to "
                              f"resume it", flush=True)
                        return 130 if self.stop_signal == signal.SIGINT else 0
                    how = f"exit code {row.exit_code}" if (row.exit_code or 0) >= 0 else \
                        f"killed by {signal.Signals(-(row.exit_code or 0)).name}"
                    print(f"nemo-r1 pipeline: stage {stage.name} failed ({how}); log: {row.log}", file=sys.stderr,
                          flush=True)
                    return 1
                done = read_json(plan.dir / DONE) or {}
                outputs[stage.name], prev = row.outputs, (stage.name, done.get("run_id", ""))
            self._summary(rows, time.perf_counter() - t_start, dry_run=dry_run)
            return 0
        finally:
            self._restore_signals(previous)
            if lock is not None:
                lock.close()  # releases the flock

    def _announce(self, stage: Stage, decision: Decision, rerun_from: str | None, dry_run: bool) -> None:
        later = len(self.pipe.stages) - stage.index
        verb = "would rerun" if dry_run else "rerunning"
        if decision.changed and rerun_from is None:
            tail = f", {verb} it and {later} later stage{'s' if later != 1 else ''}" if later else f", {verb} it"
            print(f"stage {stage.name}: {decision.reason}{tail}", flush=True)
        elif decision.action == "resume":
            print(f"stage {stage.name}: {decision.reason}{' (dry run)' if dry_run else ''}", flush=True)
        else:
            print(f"stage {stage.name}: {decision.reason}, {'would run' if dry_run else 'running'} it", flush=True)

    def _run_stage(self, plan: StagePlan, decision: Decision, inputs: dict[str, Any]) -> Row:
        stage, d = plan.stage, plan.dir
        if decision.changed:
            shutil.rmtree(d)  # it holds a started/done marker: the pipeline made it
        elif decision.action == "run" and d.exists() and any(d.iterdir()):
            raise PipelineError(f"{self.pipe.where(stage)}: {d} exists and was not written by this pipeline (no "
                                f"{STARTED}); move it away or choose another output_dir")
        prepare(plan)
        log = d / LOG
        started = {"stage": stage.name, "kind": stage.kind, "attempt": decision.attempt,
                   "config_hash": digest(plan.config), "inputs_hash": digest(inputs), "config": plan.config,
                   "inputs": inputs, "started_at": _now(), "command": child_command(plan)}
        write_json(d / STARTED, started)
        t0 = time.perf_counter()
        header = (f"=== {_now()} nemo-r1 pipeline: stage {stage.name} ({stage.kind}), attempt {decision.attempt}: "
                  f"{decision.reason} ===\n")
        rc = self._child(child_command(plan), log, header, distributed=not KINDS[stage.kind].flags)
        if rc == 0 and self.stop_signal is None:
            try:
                extra = follow_up(plan)
            except PipelineError as e:  # e.g. no checkpoint to export: the stage failed, say why
                print(f"nemo-r1 pipeline: {e}", file=sys.stderr, flush=True)
                with log.open("a") as f:
                    f.write(f"nemo-r1 pipeline: {e}\n")
                extra, rc = None, 1
            if extra is not None:
                rc = self._child([sys.executable, "-m", "nemo_r1.cli", *extra], log, f"=== export: {' '.join(extra)}\n")
        seconds = time.perf_counter() - t0
        status = "resumed" if decision.action == "resume" else "ran"
        if self.stop_signal is not None:
            return self._row(stage, "stopped", seconds=seconds, reason=decision.reason, exit_code=rc)
        if rc != 0:
            return self._row(stage, "failed", seconds=seconds, reason=decision.reason, exit_code=rc)
        numbers, outputs = numbers_of(plan), outputs_of(self.pipe, stage, plan)
        done = {**started, "run_id": uuid.uuid4().hex, "finished_at": _now(), "seconds": round(seconds, 3),
                "outputs": relativize(outputs, self.pipe.output_dir), "numbers": numbers}
        write_json(d / DONE, done)
        print(f"stage {stage.name}: done in {seconds:.1f}s{': ' + headline(stage.kind, numbers) if numbers else ''}",
              flush=True)
        return self._row(stage, status, seconds=seconds, reason=decision.reason, numbers=numbers, outputs=outputs)

    def _outputs(self, done: dict[str, Any]) -> dict[str, Any]:
        """A done marker's outputs with `${output_dir}` written out: a moved run dir still works."""
        return absolutize(done.get("outputs") or {}, self.pipe.output_dir)

    def follow(self, target: Stage) -> int:
        """A rank other than 0 under `--stage`: wait for rank 0 to start the stage, then run the same
        training command with this rank's environment (flag commands run on rank 0 alone)."""
        pipe, rank = self.pipe, os.environ.get("RANK", "?")
        if KINDS[target.kind].flags:
            print(f"rank {rank}: stage {target.name} ({target.kind}) runs on rank 0 only", flush=True)
            return 0
        dones = {s.name: read_json(pipe.stage_dir(s) / DONE) or {} for s in pipe.stages if s.index < target.index}
        plan = plan_stage(pipe, target, resolve(pipe, target, {n: self._outputs(d) for n, d in dones.items()}))
        before = pipe.stages[target.index - 2].name if target.index > 1 else None
        inputs = stage_inputs(plan, (before, dones[before].get("run_id", "")) if before else None, pipe.output_dir)
        want = (digest(plan.config), digest(inputs))
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while True:  # rank 0 clears a changed stage first, then writes started.json with these hashes
            started = read_json(plan.dir / STARTED) or {}
            if (started.get("config_hash"), started.get("inputs_hash")) == want:
                break
            if time.monotonic() > deadline:
                raise PipelineError(f"rank {rank}: rank 0 did not start stage {target.name} within "
                                    f"{FOLLOW_TIMEOUT_S:.0f}s (no matching {plan.dir / STARTED})")
            time.sleep(1.0)
        previous = self._handle_signals()
        try:
            rc = self._child(child_command(plan), plan.dir / f"stage.rank{rank}.log", f"=== rank {rank} ===\n",
                             distributed=True, echo=False)
        finally:
            self._restore_signals(previous)
        return 0 if rc == 0 or self.stop_signal is not None else 1

    # ------------------------------------------------------------------------- the child process

    def _child(self, cmd: list[str], log_path: Path, header: str, distributed: bool = False,
               echo: bool = True) -> int:
        """Run `cmd`, streaming its stdout+stderr to the terminal and appending it to the log."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if not distributed:
            for key in RANK_ENV:
                env.pop(key, None)
        with log_path.open("ab") as log:
            log.write(header.encode() + f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=_stop_with_parent)
            self.child = proc
            try:
                assert proc.stdout is not None
                fd = proc.stdout.fileno()
                while chunk := os.read(fd, 65536):
                    log.write(chunk)
                    log.flush()
                    if echo:
                        _echo(chunk)
            finally:
                rc = proc.wait()
                self.child = None
        return rc

    def _handle_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: whoever called us owns the signals
                pass
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """First signal: ask the running stage to stop (trainers save a checkpoint at the step
        boundary); a second one kills it."""
        again = self.stop_signal is not None
        self.stop_signal = signum
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGKILL if again else signal.SIGTERM)
        print(f"\nnemo-r1 pipeline: {signal.Signals(signum).name}: "
              f"{'killing the stage' if again else 'stopping after the running stage saves its state'}", flush=True)

    # ------------------------------------------------------------------------- the summary

    def _row(self, stage: Stage, status: str, **kw: Any) -> Row:
        d = self.pipe.stage_dir(stage)
        return Row(name=stage.name, kind=stage.kind, dir=str(d), status=status, log=str(d / LOG), **kw)

    def _summary(self, rows: list[Row], seconds: float, dry_run: bool = False) -> dict[str, Any]:
        """Print the table and, unless this is a dry run, write summary.json atomically."""
        head = ("stage", "kind", "status", "seconds", "result")
        table = [head] + [(r.name, r.kind, r.status, f"{r.seconds:.1f}" if r.seconds else "-",
                           headline(r.kind, r.numbers) if r.numbers else (r.reason if r.status == "would run" else ""))
                          for r in rows]
        widths = [max(len(str(line[i])) for line in table) for i in range(len(head) - 1)]
        print(f"\npipeline summary ({seconds:.1f}s):", flush=True)
        for line in table:
            print("  " + "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1])
        summary = {"pipeline": self.pipe.source, "output_dir": str(self.pipe.output_dir),
                   "complete": all(r.status in ("ran", "resumed", "skipped") for r in rows),
                   "seconds": round(seconds, 3), "stages": [asdict(r) | {"seconds": round(r.seconds, 3)} for r in rows]}
        if not dry_run:
            write_json(self.pipe.output_dir / SUMMARY, summary)
            print(f"summary: {self.pipe.output_dir / SUMMARY}", flush=True)
        return summary


def hold_lock(output_dir: Path) -> IO[str]:
    """An exclusive flock on output_dir/.pipeline.lock for this run: a second pipeline in the same
    dir would clear or resume stages under the first one's feet. The kernel drops the lock when the
    process dies (even by SIGKILL), so a killed run never leaves a stale lock."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK
    f = path.open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise PipelineError(f"{output_dir} is in use by another nemo-r1 pipeline ({holder}); wait for it to "
                            "finish or stop it, or choose another output_dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {_now()}\n")
    f.flush()
    return f


def stage_inputs(plan: StagePlan, prev: tuple[str, str] | None, output_dir: Path) -> dict[str, Any]:
    """What the inputs hash covers: the previous stage's run id and the local files the stage reads."""
    return {"after": prev[1] if prev else None, "after_stage": prev[0] if prev else None,
            "files": input_files(plan.reads, output_dir)}


def _echo(chunk: bytes) -> None:
    sys.stdout.flush()
    buf = getattr(sys.stdout, "buffer", None)
    if buf is not None:
        buf.write(chunk)
        buf.flush()
    else:
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()


def _stop_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it when the pipeline dies, so a killed pipeline
    leaves no training process behind (the trainers save a checkpoint on SIGTERM)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---------------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nemo-r1 pipeline",
        description="Run the stages of a pipeline file in order, each in its own process under "
                    "OUTPUT_DIR/NN_name: finished stages are skipped, an interrupted one resumes, a changed one "
                    "reruns with every stage after it. Overrides: output_dir=..., vars.NAME=..., "
                    "stages.STAGE.KEY=... (e.g. stages.sft.optim.lr=2e-5).")
    p.add_argument("--config", "-c", required=True, help="pipeline YAML (configs/pipeline/*.yaml)")
    p.add_argument("--stage", default=None, help="run only this stage (the earlier ones must be finished): "
                   "one launcher job per stage")
    p.add_argument("--dry-run", action="store_true", help="print what would run and why; run nothing")
    p.add_argument("--verbose", "-v", action="store_true", help="every library message in the stages' output")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    return p


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Entry point: the CLI's namespace (raw argv in `rest`) or an argv list."""
    from nemo_r1.console import VERBOSE_ENV, raw_argv

    ns = build_parser().parse_intermixed_args(raw_argv(args))
    if ns.verbose:
        os.environ[VERBOSE_ENV] = "1"  # the stages inherit it
    pipe = load_pipeline(ns.config, ns.overrides)
    return Runner(pipe).run(only=ns.stage, dry_run=ns.dry_run)
