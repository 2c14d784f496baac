#!/usr/bin/env python
"""Start or stop a real single-host Slurm cluster (slurmctld, emulated slurmd nodes, slurmdbd on
MariaDB) for trying `nemo-r1 launch --executor slurm` on one machine. Needs root and the packages
of tools/install_slurm.sh.

    .venv/bin/python tools/slurm_local.py start --dir /tmp/slurm --nodes 2 --cpus 2
    export SLURM_CONF=/tmp/slurm/etc/slurm.conf; sinfo
    .venv/bin/nemo-r1 launch --executor slurm --nodes 2 --tasks-per-node 1 -- plot outputs/run
    .venv/bin/python tools/slurm_local.py stop --dir /tmp/slurm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launchers.local_cluster import LocalSlurm  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--dir", required=True, help="runtime dir (configs, state, logs, sockets)")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="CPUs each emulated node advertises")
    args = p.parse_args(argv)
    root = Path(args.dir).absolute()
    if args.action == "start":
        root.mkdir(parents=True, exist_ok=True)
        cluster = LocalSlurm(nodes=args.nodes, cpus_per_node=args.cpus, root=root).start()
        print(f"Slurm is up ({', '.join(cluster.node_names)}); stop it with: {sys.argv[0]} stop --dir {root}")
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        LocalSlurm.attach(root).stop()
        print(f"stopped the Slurm daemons under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
