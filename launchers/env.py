"""torchrun-style rank environment for a task started by submitit (Slurm or local).

Why not torchrun: Slurm already starts one process per task (srun), so a second launcher per node
would only add a rendezvous that can hang. Each task reads its place from submitit's
`JobEnvironment` (which reads SLURM_* or submitit's local variables) and exports the variables
`torch.distributed.init_process_group("env://")` and megatron expect.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

PORT_RANGE = (20000, 60000)


@dataclass(frozen=True)
class RankEnv:
    """Where one task sits in the job, plus the rendezvous address all tasks agree on."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    num_nodes: int
    master_addr: str
    master_port: int
    hostnames: tuple[str, ...]
    """Node names of the job, in node-rank order."""
    tasks_per_node: tuple[int, ...]
    """Tasks on each node, in node-rank order (Slurm's block distribution)."""
    job_id: str

    def as_env(self) -> dict[str, str]:
        """The variables torch.distributed (env://), torchrun-aware code and megatron read."""
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "GROUP_RANK": str(self.node_rank),
            "NODE_RANK": str(self.node_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }

    def node_of(self, rank: int) -> int:
        """Node rank that holds a global rank (block distribution: node 0 gets the first ranks)."""
        start = 0
        for node, n in enumerate(self.tasks_per_node):
            if rank < start + n:
                return node
            start += n
        raise ValueError(f"rank {rank} is outside a job of {self.world_size} tasks")

    def host_of(self, rank: int) -> str:
        return self.hostnames[self.node_of(rank)]


def parse_tasks_per_node(spec: str, num_nodes: int) -> tuple[int, ...]:
    """Expand Slurm's compressed SLURM_TASKS_PER_NODE, e.g. '8(x2)' or '2(x3),1', per node."""
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if m is None:
            raise ValueError(f"cannot parse SLURM_TASKS_PER_NODE={spec!r} (expected e.g. '8(x2)' or '2,1')")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    if len(out) != num_nodes:
        raise ValueError(f"SLURM_TASKS_PER_NODE={spec!r} lists {len(out)} nodes but the job has {num_nodes}")
    return tuple(out)


def derive_master_port(job_id: str, restart_count: int = 0) -> int:
    """A port every task of a job computes alike; a requeued run (new restart count) gets another
    one, so a socket of the previous run still in TIME_WAIT cannot block the rendezvous."""
    lo, hi = PORT_RANGE
    digits = int(re.sub(r"\D", "", job_id) or 0)
    # two ports per run: MASTER_PORT for torch.distributed, MASTER_PORT + 1 for the health check
    return lo + ((digits * 7919 + restart_count * 104729) % ((hi - lo) // 2)) * 2


def _resolvable(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except OSError:
        return False


def current_rank_env(resolve: Callable[[str], bool] = _resolvable) -> RankEnv:
    """RankEnv of this process, which must be a task that submitit started (Slurm or local).

    Rank, world size, local rank, node and the node list come from `submitit.JobEnvironment`
    (SLURM_PROCID/NTASKS/LOCALID/NODEID/JOB_NODELIST, or submitit's local variables); Slurm's
    SLURM_TASKS_PER_NODE gives the per-node task counts (they may differ, e.g. '2(x3),1').
    Under Slurm, MASTER_ADDR is the first node of the job; if that name does not resolve (emulated
    nodes, node names missing from DNS) the batch host's SLURM_LAUNCH_NODE_IPADDR is used instead,
    which is the same node: sbatch runs srun on the first node of the allocation.
    NEMO_R1_MASTER_ADDR / NEMO_R1_MASTER_PORT override both (e.g. to rendezvous over a particular
    network); plain MASTER_ADDR/MASTER_PORT are ignored because sbatch copies the submitting
    shell's environment into the job, where a stale value would point at the wrong host.
    """
    import submitit

    try:
        job = submitit.JobEnvironment()
    except RuntimeError as e:
        raise RuntimeError(f"not inside a submitit task ({e}); start it with launchers.launch()") from None
    environ = os.environ
    world, rank, local_rank = job.num_tasks, job.global_rank, job.local_rank
    node, num_nodes = job.node, job.num_nodes
    hostnames = list(job.hostnames)
    if job.cluster == "slurm":
        spec = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
        per_node = parse_tasks_per_node(spec, num_nodes) if spec else tuple([world // num_nodes] * num_nodes)
        restarts = int(environ.get("SLURM_RESTART_COUNT") or 0)
        addr = hostnames[0]
        if not resolve(addr):
            addr = environ.get("SLURM_LAUNCH_NODE_IPADDR") or addr
    else:  # submitit's local executor: one node, this host
        per_node, restarts, addr = (world,), 0, "127.0.0.1"
        hostnames = hostnames[:1]
    if len(hostnames) != num_nodes:
        raise RuntimeError(f"node list {hostnames} has {len(hostnames)} names but the job has {num_nodes} nodes")
    if sum(per_node) != world:
        raise RuntimeError(f"tasks per node {per_node} do not add up to the job's {world} tasks")
    job_id = job.job_id
    port_override = environ.get("NEMO_R1_MASTER_PORT")
    port = int(port_override) if port_override else derive_master_port(job_id, restarts)
    return RankEnv(rank=rank, world_size=world, local_rank=local_rank, local_world_size=per_node[node],
                   node_rank=node, num_nodes=num_nodes, master_addr=environ.get("NEMO_R1_MASTER_ADDR") or addr,
                   master_port=port, hostnames=tuple(hostnames), tasks_per_node=per_node, job_id=job_id)


def export(env: RankEnv) -> None:
    """Put the variables in os.environ, overwriting stale ones (a requeued run may inherit them)."""
    os.environ.update(env.as_env())
