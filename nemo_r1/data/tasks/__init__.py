"""Generated verifiable tasks: seeded generators with difficulty knobs, a train / held-out split,
their rewards and prompts. `generated:NAME` is a task's train split as a data source,
`generated:NAME:heldout` its held-out split (see registry.py for how the split is decided).

| task | knobs | reward |
|---|---|---|
| arithmetic | ArithmeticTask: ops, max_operand, num_operands, nonnegative | accuracy |
| countdown | CountdownTask: min/max_count (3-6 numbers), min/max_value, max_target, ops | countdown |
| knights_knaves | KnightsTask: min/max_people (2-8), statement kinds | knights_knaves |
"""

from nemo_r1.data.tasks import arithmetic, countdown, knights
from nemo_r1.data.tasks.arithmetic import FEW_SHOT, ArithmeticTask, demo_data_config, generate, write_jsonl
from nemo_r1.data.tasks.countdown import CountdownTask
from nemo_r1.data.tasks.knights import KnightsTask
from nemo_r1.data.tasks.registry import (
    HELDOUT,
    PREFIX,
    TASKS,
    TRAIN,
    TaskSpec,
    default_rows,
    parse_source,
    split_of,
    task_data_config,
    task_rows,
    write_task,
)

TASKS.add(TaskSpec(
    name="arithmetic", knobs=ArithmeticTask, draw=arithmetic.draw,
    # The default difficulty has only 610 distinct problems (400 sums, 210 non-negative
    # differences of 1..20); 40% held out leaves 200+ of them for evaluation and the rest to train.
    heldout_fraction=0.4,
    rewards=({"name": "accuracy", "weight": 1.0},), prompt_suffix="", few_shot=tuple(FEW_SHOT),
    train_rows=300, heldout_rows=200, doc="small-number arithmetic, \\boxed{} answer"))
TASKS.add(TaskSpec(
    name="countdown", knobs=CountdownTask, draw=countdown.draw,
    heldout_fraction=0.1,  # a vast pool: 10% keeps the held-out draw cheap and the train split large
    rewards=({"name": "countdown", "weight": 1.0},), prompt_suffix=countdown.PROMPT_SUFFIX,
    few_shot=countdown.FEW_SHOT, train_rows=2000, heldout_rows=200,
    doc="reach the target with + - * /, each number once; equation in <answer>"))
TASKS.add(TaskSpec(
    name="knights_knaves", knobs=KnightsTask, draw=knights.draw,
    heldout_fraction=0.1,
    rewards=({"name": "knights_knaves", "weight": 1.0},), prompt_suffix=knights.PROMPT_SUFFIX,
    few_shot=knights.FEW_SHOT, train_rows=2000, heldout_rows=200,
    doc="name every inhabitant's role; numbered lines in <answer>"))


def task_names() -> list[str]:
    return TASKS.names()


__all__ = ["FEW_SHOT", "HELDOUT", "PREFIX", "TASKS", "TRAIN", "ArithmeticTask", "CountdownTask", "KnightsTask",
           "TaskSpec", "default_rows", "demo_data_config", "generate", "parse_source", "split_of",
           "task_data_config", "task_names", "task_rows", "write_jsonl", "write_task"]
