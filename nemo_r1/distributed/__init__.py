"""Process groups (TP x PP x DP via megatron parallel_state) and local multi-rank spawning."""

from nemo_r1.distributed.groups import (
    Layout,
    check_layout,
    current_layout,
    destroy_distributed,
    free_port,
    init_distributed,
)
from nemo_r1.distributed.spawn import RankFailed, run_on_cpu_ranks, under_launcher

__all__ = ["Layout", "RankFailed", "check_layout", "current_layout", "destroy_distributed", "free_port",
           "init_distributed", "run_on_cpu_ranks", "under_launcher"]
