"""Evaluation: pass@k on reasoning benchmarks with our engine, and a lighteval bridge.

`evaluate(model, benchmarks=[...], n=4, ...) -> dict` is the API; `nemo-r1 eval` is its CLI.
Imports are lazy so `nemo-r1 eval --help` does not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "evaluate_lighteval", "pass_at_k", "summarize"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from nemo_r1.eval.runner import evaluate

        return evaluate
    if name == "evaluate_lighteval":
        from nemo_r1.eval.lighteval_bridge import evaluate_lighteval

        return evaluate_lighteval
    if name in ("pass_at_k", "summarize"):
        from nemo_r1.eval import scores

        return getattr(scores, name)
    raise AttributeError(name)
