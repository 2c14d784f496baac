"""Rank environment derivation from submitit's JobEnvironment + SLURM_* (no cluster needed).

The variables are the ones srun sets for `sbatch --nodes 2 --ntasks-per-node 8`; the values we
expect are what torchrun would give rank r on that layout (Slurm's default block distribution).
"""

from __future__ import annotations

import pytest

from launchers.env import current_rank_env, derive_master_port, parse_tasks_per_node

NODES = ["gpu-a17", "gpu-a18"]


def _slurm_task(monkeypatch: pytest.MonkeyPatch, rank: int, per_node: int = 8, nodes: int = 2,
                tpn: str = "8(x2)", nodelist: str = "gpu-a[17-18]", job_id: str = "4242", **extra: str) -> None:
    for k in ("SUBMITIT_EXECUTOR", "NEMO_R1_MASTER_ADDR", "NEMO_R1_MASTER_PORT", "SLURM_ARRAY_JOB_ID",
              "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "SLURM_STEP_TASKS_PER_NODE"):
        monkeypatch.delenv(k, raising=False)
    env = {
        "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": job_id, "SLURM_PROCID": str(rank),
        "SLURM_NTASKS": str(per_node * nodes), "SLURM_LOCALID": str(rank % per_node),
        "SLURM_NODEID": str(rank // per_node), "SLURM_JOB_NUM_NODES": str(nodes),
        "SLURM_JOB_NODELIST": nodelist, "SLURM_TASKS_PER_NODE": tpn, "SLURM_LAUNCH_NODE_IPADDR": "10.1.2.17",
        **extra,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_two_nodes_by_eight_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    for rank in range(16):
        _slurm_task(monkeypatch, rank)
        e = current_rank_env(resolve=lambda host: True)
        seen.append(e)
        assert (e.rank, e.world_size) == (rank, 16)
        assert (e.local_rank, e.local_world_size) == (rank % 8, 8)
        assert (e.node_rank, e.num_nodes) == (rank // 8, 2)
        assert e.hostnames == tuple(NODES)
        assert e.master_addr == "gpu-a17"
        env = e.as_env()
        assert env["RANK"] == str(rank) and env["WORLD_SIZE"] == "16" and env["LOCAL_RANK"] == str(rank % 8)
        assert env["MASTER_ADDR"] == "gpu-a17" and env["NODE_RANK"] == str(rank // 8)
    # every task computes the same rendezvous port, inside the allowed range, leaving +1 for the health check
    ports = {e.master_port for e in seen}
    assert len(ports) == 1 and 20000 <= ports.pop() < 60000 - 1
    assert [seen[0].node_of(r) for r in range(16)] == [0] * 8 + [1] * 8
    assert seen[5].host_of(12) == "gpu-a18"


def test_uneven_tasks_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    # 7 tasks on 3 nodes: Slurm gives 3,2,2 -> '3,2(x2)'; rank 4 is node 1's second task
    _slurm_task(monkeypatch, rank=4, tpn="3,2(x2)", nodelist="n[1-3]", nodes=3)
    monkeypatch.setenv("SLURM_NTASKS", "7")
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    e = current_rank_env(resolve=lambda host: True)
    assert e.tasks_per_node == (3, 2, 2)
    assert e.local_world_size == 2 and e.node_of(4) == 1 and e.node_of(6) == 2 and e.node_of(2) == 0
    with pytest.raises(ValueError, match="outside"):
        e.node_of(7)


def test_unresolvable_node_name_falls_back_to_launch_node_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    _slurm_task(monkeypatch, rank=9)
    assert current_rank_env(resolve=lambda host: False).master_addr == "10.1.2.17"
    monkeypatch.setenv("NEMO_R1_MASTER_ADDR", "ib0-gpu-a17")
    monkeypatch.setenv("NEMO_R1_MASTER_PORT", "31337")
    e = current_rank_env(resolve=lambda host: False)
    assert (e.master_addr, e.master_port) == ("ib0-gpu-a17", 31337)


def test_stale_master_vars_from_the_submitting_shell_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    _slurm_task(monkeypatch, rank=3)
    monkeypatch.setenv("MASTER_ADDR", "login-node")
    monkeypatch.setenv("MASTER_PORT", "29500")
    e = current_rank_env(resolve=lambda host: True)
    assert e.master_addr == "gpu-a17" and e.master_port != 29500


def test_ports_differ_per_job_array_task_and_requeue(monkeypatch: pytest.MonkeyPatch) -> None:
    _slurm_task(monkeypatch, rank=0, SLURM_ARRAY_JOB_ID="4242", SLURM_ARRAY_TASK_ID="3")
    e = current_rank_env(resolve=lambda host: True)
    assert e.job_id == "4242_3"
    p0 = e.master_port
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    p1 = current_rank_env(resolve=lambda host: True).master_port
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.delenv("SLURM_RESTART_COUNT")
    p2 = current_rank_env(resolve=lambda host: True).master_port
    assert len({p0, p1, p2}) == 3
    assert all(p % 2 == 0 for p in (p0, p1, p2))  # MASTER_PORT + 1 is the health-check port
    assert derive_master_port("4242_3") == p0


def test_local_executor_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    for k, v in {"SUBMITIT_LOCAL_JOB_ID": "777", "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1",
                 "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("NEMO_R1_MASTER_PORT", raising=False)
    monkeypatch.delenv("NEMO_R1_MASTER_ADDR", raising=False)
    e = current_rank_env()
    assert (e.rank, e.world_size, e.local_rank, e.local_world_size, e.num_nodes) == (1, 2, 1, 2, 1)
    assert e.master_addr == "127.0.0.1"


def test_bad_layouts_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="SLURM_TASKS_PER_NODE"):
        parse_tasks_per_node("8(x2)", 3)
    with pytest.raises(ValueError, match="cannot parse"):
        parse_tasks_per_node("eight", 1)
    _slurm_task(monkeypatch, rank=0, tpn="4(x2)")  # 8 tasks listed, 16 in the job
    with pytest.raises(RuntimeError, match="do not add up"):
        current_rank_env(resolve=lambda host: True)
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    for k in ("SLURM_JOB_ID", "SLURM_PROCID"):
        monkeypatch.delenv(k)
    with pytest.raises(RuntimeError, match="not inside a submitit task"):
        current_rank_env()
