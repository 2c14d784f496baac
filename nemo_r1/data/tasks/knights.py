"""Knights and Knaves (the Logic-RL task): knights always tell the truth, knaves always lie; from
what each inhabitant says, name every inhabitant's role.

Statement kinds (each about one or two inhabitants, by name; a one-person statement is about
someone else, a two-person one may name the speaker):
- `is`:  "B is a knight" / "B is a knave"
- `and`: "A is a knight and B is a knave" ("A and B are knaves" when both roles agree)
- `or`:  "A is a knight or B is a knave" (inclusive)
- `if`:  "If A is a knight then B is a knave" (material implication)
- `iff`: "A is a knight if and only if B is a knave"

Each inhabitant makes one statement. A brute-force solver tries all 2^n role assignments; puzzles
are redrawn until exactly one assignment is consistent, so the answer is unique. The answer is
written the way Logic-RL's data writes it, one numbered line per inhabitant:
"(1) Alice is a knight\\n(2) Ben is a knave".
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

KINDS = ("is", "and", "or", "if", "iff")
NAMES = ("Alice", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Iris", "Jack", "Kate",
         "Liam", "Maya", "Noah", "Olivia", "Peter", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor",
         "Wendy", "Xavier", "Yara", "Zoe")
VERBS = ("says", "claims", "tells you", "insists")
MAX_TRIES = 10_000

Leaf = list  # [person index, is_knight]
Statement = list  # ["is", leaf] or [kind, leaf, leaf]


@dataclass(frozen=True)
class KnightsTask:
    """Difficulty knobs of the generated Knights-and-Knaves puzzles."""

    min_people: int = 2
    """Fewest inhabitants (2-8)."""
    max_people: int = 3
    """Most inhabitants (2-8); each puzzle draws its count uniformly in between."""
    kinds: tuple[str, ...] = KINDS
    """Statement kinds to draw from (subset of `is and or if iff`)."""

    def __post_init__(self) -> None:
        if not 2 <= self.min_people <= self.max_people <= 8:
            raise ValueError(f"min_people={self.min_people}, max_people={self.max_people}: need 2 <= "
                             "min_people <= max_people <= 8")
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ValueError(f"kinds={self.kinds!r}: use a non-empty subset of {KINDS}")


def _truth(leaf: Leaf, roles: tuple[bool, ...]) -> bool:
    return roles[leaf[0]] == leaf[1]


def holds(statement: Statement, roles: tuple[bool, ...]) -> bool:
    """Whether `statement` is true when `roles[i]` says inhabitant i is a knight."""
    kind, *leaves = statement
    vals = [_truth(leaf, roles) for leaf in leaves]
    if kind == "is":
        return vals[0]
    a, b = vals
    return {"and": a and b, "or": a or b, "if": (not a) or b, "iff": a == b}[kind]


def solve(statements: list[Statement]) -> list[tuple[bool, ...]]:
    """Every role assignment (True = knight) under which each knight's statement is true and each
    knave's is false. Brute force over 2^n: n <= 8 is at most 256 assignments."""
    n = len(statements)
    return [roles for roles in itertools.product((True, False), repeat=n)
            if all(holds(s, roles) == roles[i] for i, s in enumerate(statements))]


def _role(knight: bool) -> str:
    return "knight" if knight else "knave"


def _leaf_text(leaf: Leaf, names: list[str]) -> str:
    return f"{names[leaf[0]]} is a {_role(leaf[1])}"


def statement_text(statement: Statement, names: list[str]) -> str:
    kind, *leaves = statement
    if kind == "is":
        return _leaf_text(leaves[0], names)
    a, b = (_leaf_text(leaf, names) for leaf in leaves)
    if kind == "and" and leaves[0][1] == leaves[1][1]:
        return f"{names[leaves[0][0]]} and {names[leaves[1][0]]} are {_role(leaves[0][1])}s"
    return {"and": f"{a} and {b}", "or": f"{a} or {b}", "if": f"If {a} then {b}",
            "iff": f"{a} if and only if {b}"}[kind]


def problem_text(names: list[str], statements: list[Statement], verbs: list[str]) -> str:
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    said = " ".join(f'{names[i]} {verbs[i]}, "{statement_text(s, names)}."' for i, s in enumerate(statements))
    return (f"On this island every inhabitant is either a knight, who always tells the truth, or a knave, "
            f"who always lies. You meet {len(names)} inhabitants: {listed}. {said} "
            "Who is a knight and who is a knave?")


def answer_text(names: list[str], roles: tuple[bool, ...]) -> str:
    return "\n".join(f"({i + 1}) {name} is a {_role(r)}" for i, (name, r) in enumerate(zip(names, roles, strict=True)))


def _statement(rng: random.Random, speaker: int, n: int, kinds: tuple[str, ...]) -> Statement:
    kind = rng.choice(kinds)
    if kind == "is":
        other = rng.choice([k for k in range(n) if k != speaker])
        return ["is", [other, rng.random() < 0.5]]
    p, q = rng.sample(range(n), 2)
    return [kind, [p, rng.random() < 0.5], [q, rng.random() < 0.5]]


def draw(rng: random.Random, task: KnightsTask) -> dict[str, Any]:
    """One puzzle row: `problem`, `answer`, `names`, `roles` (knight/knave per name), `statements`."""
    for _ in range(MAX_TRIES):
        n = rng.randint(task.min_people, task.max_people)
        names = rng.sample(NAMES, n)
        statements = [_statement(rng, i, n, task.kinds) for i in range(n)]
        solutions = solve(statements)
        if len(solutions) != 1:
            continue
        verbs = [rng.choice(VERBS) for _ in range(n)]
        roles = solutions[0]
        return {"problem": problem_text(names, statements, verbs), "answer": answer_text(names, roles),
                "names": names, "roles": [_role(r) for r in roles], "statements": statements}
    raise ValueError(f"{task}: no puzzle with a unique solution in {MAX_TRIES} tries; allow more statement kinds")


PROMPT_SUFFIX = ("Think it through inside <think> </think>, then state the role of every inhabitant "
                 "inside <answer> </answer>, one per line, for example <answer> (1) Zoe is a knight\n"
                 "(2) Ben is a knave </answer>.")

_SHOT_NAMES = ["Alice", "Ben"]
_SHOT_STATEMENTS: list[Statement] = [["is", [1, False]], ["and", [0, True], [1, True]]]
FEW_SHOT = (
    {"user": problem_text(_SHOT_NAMES, _SHOT_STATEMENTS, ["says", "says"]) + "\n\n" + PROMPT_SUFFIX,
     "assistant": "<think>If Alice is a knight, Ben is a knave and his claim is false, which fits. If Alice "
                  "is a knave, Ben is a knight, so Alice would be a knight too: impossible.</think>\n"
                  "<answer>(1) Alice is a knight\n(2) Ben is a knave</answer>"},
)
"""One worked turn (the solver agrees, see the tests): it shows the small model the tags and the
numbered answer lines."""
