"""Startup rendezvous check over a real TCPStore on localhost (no cluster needed).

Ranks are threads of this process: the store, sockets and timeouts are the real ones, and threads
spare each rank a torch import (seconds each on 2 cores)."""

from __future__ import annotations

import queue
import socket
import threading

from launchers.env import RankEnv
from launchers.health import Rendezvous, RendezvousError, check_rendezvous


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _env(rank: int, world: int, port: int) -> RankEnv:
    per_node = (2, world - 2) if world > 2 else (world,)
    hosts = ("nodeA", "nodeB")[: len(per_node)]
    node = 0 if rank < 2 else 1
    return RankEnv(rank=rank, world_size=world, local_rank=rank if rank < 2 else rank - 2,
                   local_world_size=per_node[node], node_rank=node, num_nodes=len(per_node),
                   master_addr="127.0.0.1", master_port=port, hostnames=hosts, tasks_per_node=per_node, job_id="1")


def _worker(rank: int, world: int, port: int, timeout: float, out: queue.Queue) -> None:
    try:
        waited = check_rendezvous(_env(rank, world, port), timeout_s=timeout)
        out.put((rank, "ok", waited))
    except RendezvousError as e:
        out.put((rank, "error", str(e)))


def _run(ranks: list[int], world: int, timeout: float) -> dict[int, tuple[str, object]]:
    q: queue.Queue = queue.Queue()
    port = _free_port() - 1  # the check listens on MASTER_PORT + 1
    procs = [threading.Thread(target=_worker, args=(r, world, port, timeout, q), daemon=True) for r in ranks]
    for p in procs:
        p.start()
    results = {}
    for _ in ranks:
        rank, status, detail = q.get(timeout=timeout + 90)
        results[rank] = (status, detail)
    for p in procs:
        p.join(timeout=30)
    return results


def test_all_ranks_arrive() -> None:
    res = _run([0, 1, 2], world=3, timeout=60)
    assert all(status == "ok" for status, _ in res.values()), res
    assert all(float(w) < 60 for _, w in res.values())


def test_missing_rank_is_named_with_its_node() -> None:
    res = _run([0, 1], world=3, timeout=4)
    for rank in (0, 1):
        status, msg = res[rank]
        assert status == "error", res
        assert "1 of 3 ranks did not reach the rendezvous" in msg
        assert "node nodeB: ranks 2" in msg and "within 4s" in msg


def test_missing_rank_zero_names_the_master() -> None:
    res = _run([1], world=2, timeout=3)
    status, msg = res[1]
    assert status == "error"
    assert "rank 1 on node nodeA could not reach the rendezvous at 127.0.0.1" in msg
    assert "rank 0 (node nodeA) did not start" in msg


def _voter(rank: int, world: int, port: int, flag: bool, out: queue.Queue) -> None:
    r = Rendezvous(_env(rank, world, port), timeout_s=60)
    r.check()
    first = r.any_rank("preempted", flag, timeout_s=60)
    second = r.any_rank("again", False, timeout_s=60)
    out.put((rank, first, second))
    r.close()


def test_any_rank_vote_after_the_check() -> None:
    """A rank that saw no preemption signal still learns that another one did (requeue together)."""
    q: queue.Queue = queue.Queue()
    port = _free_port() - 1
    flags = [False, True, False]
    threads = [threading.Thread(target=_voter, args=(r, 3, port, flags[r], q), daemon=True) for r in range(3)]
    for t in threads:
        t.start()
    got = sorted(q.get(timeout=120) for _ in range(3))
    assert got == [(0, True, False), (1, True, False), (2, True, False)]
