"""Startup health check: every rank must reach the rendezvous before training starts.

Why: a multi-node job whose rank 13 never started (bad node, failed import, wrong MASTER_ADDR)
otherwise hangs in `init_process_group` or the first collective until the Slurm time limit, with
no hint of which node is at fault. Here every rank checks in to a TCPStore hosted by rank 0 (on
MASTER_PORT + 1, so torch.distributed's own store on MASTER_PORT is untouched) and rank 0 names
the ranks and nodes that did not arrive within the timeout; the others fail with the same text.
"""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from typing import Any

from launchers.env import RankEnv


class RendezvousError(RuntimeError):
    """Not all ranks reached the rendezvous in time; the message names the missing ranks/nodes."""


def _summarize(ranks: list[int]) -> str:
    """[0,1,2,5] -> '0-2,5' (a 256-rank job may miss a whole node)."""
    out, start = [], None
    for i, r in enumerate(ranks):
        if start is None:
            start = r
        if i + 1 == len(ranks) or ranks[i + 1] != r + 1:
            out.append(str(start) if start == r else f"{start}-{r}")
            start = None
    return ",".join(out)


def missing_report(env: RankEnv, arrived: dict[int, str], timeout_s: float) -> str:
    """The error text: which ranks are missing, on which nodes, and what usually causes it."""
    missing = [r for r in range(env.world_size) if r not in arrived]
    by_node: dict[str, list[int]] = {}
    for r in missing:
        by_node.setdefault(env.host_of(r), []).append(r)
    nodes = "; ".join(f"node {h}: ranks {_summarize(rs)}" for h, rs in by_node.items())
    return (f"{len(missing)} of {env.world_size} ranks did not reach the rendezvous at "
            f"{env.master_addr}:{env.master_port + 1} within {timeout_s:.0f}s (job {env.job_id}). "
            f"Missing: {nodes}. Check those nodes' task logs for a crash before startup, and that they "
            f"can reach {env.master_addr} (set NEMO_R1_MASTER_ADDR to another interface if not).")


class Rendezvous:
    """A TCPStore on MASTER_PORT + 1 hosted by rank 0 for the job's lifetime: the startup check,
    then small votes between ranks (e.g. "was any rank preempted?") without a process group."""

    def __init__(self, env: RankEnv, timeout_s: float = 300.0, poll_s: float = 0.2) -> None:
        self.env, self.timeout_s, self.poll_s = env, timeout_s, poll_s
        self.store: Any = None

    def check(self) -> float:
        """Block until all ranks checked in (returns seconds waited) or raise RendezvousError."""
        env = self.env
        if env.world_size == 1:
            return 0.0
        from torch.distributed import TCPStore

        t0 = time.monotonic()
        port = env.master_port + 1
        is_master = env.rank == 0
        try:
            self.store = TCPStore(env.master_addr, port, None, is_master, timedelta(seconds=self.timeout_s),
                                  wait_for_workers=False)
        except Exception as e:  # the client retries until `timeout`, then raises a generic error
            where = f"node {env.hostnames[env.node_rank]}"
            if is_master:
                raise RendezvousError(f"rank 0 on {where} could not open the rendezvous port {port}: {e}") from None
            raise RendezvousError(
                f"rank {env.rank} on {where} could not reach the rendezvous at {env.master_addr}:{port} within "
                f"{self.timeout_s:.0f}s: rank 0 (node {env.hostnames[0]}) did not start, crashed early, or that "
                f"address is unreachable from this node (set NEMO_R1_MASTER_ADDR). Cause: {e}") from None
        store = self.store
        store.set(f"arrived/{env.rank}", socket.gethostname())
        if not is_master:
            return self._follow(t0)
        keys = [f"arrived/{r}" for r in range(env.world_size)]
        deadline = t0 + self.timeout_s
        while True:
            present = [k for k in keys if store.check([k])]
            if len(present) == len(keys):
                break
            if time.monotonic() > deadline:
                msg = missing_report(env, {int(k.split("/")[1]): "" for k in present}, self.timeout_s)
                store.set("verdict", "fail:" + msg)
                self._linger("acked", len(present) - 1, 5.0)  # let the others read why
                raise RendezvousError(msg)
            time.sleep(self.poll_s)
        store.set("verdict", "ok")
        return time.monotonic() - t0

    def _follow(self, t0: float) -> float:
        """Non-zero ranks: wait for rank 0's verdict, acknowledge it, fail with its text if bad."""
        store, env = self.store, self.env
        deadline = t0 + self.timeout_s + 30  # rank 0 decides at its own deadline; allow for clock skew
        while not store.check(["verdict"]):
            if time.monotonic() > deadline:
                raise RendezvousError(f"rank {env.rank}: rank 0 gave no rendezvous verdict within "
                                      f"{self.timeout_s + 30:.0f}s")
            time.sleep(self.poll_s)
        verdict = store.get("verdict").decode()
        store.add("acked", 1)
        if verdict != "ok":
            raise RendezvousError(verdict.removeprefix("fail:"))
        return time.monotonic() - t0

    def any_rank(self, name: str, flag: bool, timeout_s: float = 120.0) -> bool:
        """True if `flag` is True on any rank (each rank calls this once per `name`). Ranks that do
        not vote within the timeout (crashed) are left out."""
        if self.env.world_size == 1 or self.store is None:
            return flag
        store, world = self.store, self.env.world_size
        store.set(f"{name}/{self.env.rank}", "1" if flag else "0")
        keys = [f"{name}/{r}" for r in range(world)]
        deadline = time.monotonic() + timeout_s
        while not all(store.check([k]) for k in keys) and time.monotonic() < deadline:
            time.sleep(self.poll_s)
        result = flag or any(store.get(k) == b"1" for k in keys if store.check([k]))
        store.add(f"{name}/read", 1)
        if self.env.rank == 0:  # the store lives in rank 0: keep it up until everyone has read
            self._linger(f"{name}/read", world, timeout_s)
        return result

    def _linger(self, counter: str, expected: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while int(self.store.add(counter, 0)) < expected and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.store = None


def check_rendezvous(env: RankEnv, timeout_s: float = 300.0, poll_s: float = 0.2) -> float:
    """The startup check alone: block until all ranks checked in or raise RendezvousError."""
    r = Rendezvous(env, timeout_s, poll_s)
    try:
        waited = r.check()
        if env.rank == 0 and r.store is not None:
            r._linger("acked", env.world_size - 1, timeout_s)  # everyone read the verdict
        return waited
    finally:
        r.close()
