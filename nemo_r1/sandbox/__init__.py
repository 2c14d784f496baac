"""Sandbox for model-written code: a fresh isolated process per program (see `_boot.py`)."""

from nemo_r1.sandbox.runner import (
    Program,
    RunResult,
    SandboxLimits,
    isolation_mode,
    run_program,
    run_programs,
)

__all__ = ["Program", "RunResult", "SandboxLimits", "isolation_mode", "run_program", "run_programs"]
