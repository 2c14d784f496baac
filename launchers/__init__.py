"""Launching nemo-r1 on Slurm or locally through submitit (see docs/launch.md).

    from launchers.launch import LaunchOptions, launch, launch_array, gather
    from launchers.cli import launch_cli          # `nemo-r1 launch ...`
    from launchers.plan import plan               # `nemo-r1 plan ...`
"""
