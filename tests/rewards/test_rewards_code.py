"""`code`: extraction, both test formats, output comparison, reward hacks and hostile completions."""

from __future__ import annotations

import json
import math
import os

import pytest

from nemo_r1.data.bundled import data_dir
from nemo_r1.rewards import get_reward
from nemo_r1.rewards.code import extract_code
from nemo_r1.rewards.code_harness import decode, encode_value, outputs_match, stdout_matches
from nemo_r1.rewards.mbpp import conform_inputs, function_call_info

needs_namespaces = pytest.mark.skipif(os.geteuid() != 0, reason="hostile-code tests need the namespace sandbox (root)")
code_fast = get_reward("code", cpu_s=2, wall_s=4, max_parallel=2)


def block(src: str) -> str:
    return f"Here is my solution:\n```python\n{src}\n```\nDone."


SUM_INFO = json.dumps({"language": "python", "test_cases": [
    {"type": "stdin_stdout", "input": "1 2\n", "output": "3\n"},
    {"type": "stdin_stdout", "input": "10 -4\n", "output": "6"},
    {"type": "stdin_stdout", "input": "0 0\n", "output": "0\n"},
]})
PAIR_INFO = {"format": "function_call", "entry_point": "pair", "atol": 0.0,
             "inputs": [[1, 2], [3, 4]], "outputs": [encode_value((1, 2)), encode_value((3, 4))], "time_limits": [1.0, 1.0]}


def test_extract_code():
    assert extract_code("```python\nprint(1)\n```") == "print(1)\n"
    assert extract_code("```py\na=1\n```\n```python\nb=2\n```") == "b=2\n"
    assert extract_code("```\nx=3\n```") == "x=3\n"
    assert extract_code("no code") is None and extract_code("```python\n\n```") is None


def test_stdin_stdout_fraction_binary_and_missing_code():
    right = block("a, b = map(int, input().split())\nprint(a + b)")
    half = block("a, b = map(int, input().split())\nprint(abs(a) + abs(b))")  # wrong on 10 -4
    comps = [right, half, "I don't know", block("raise SystemExit(3)")]
    info = [SUM_INFO] * 4
    assert code_fast(comps, verification_info=info) == [1.0, pytest.approx(2 / 3), 0.0, 0.0]
    binary = get_reward("code", scoring="binary", cpu_s=2, wall_s=4)
    assert binary(comps[:2], verification_info=info[:2]) == [1.0, 0.0]


def test_rows_without_tests_are_unscorable():
    cpp = {"language": "cpp", "test_cases": [{"input": "", "output": "1"}]}
    assert code_fast([block("print(1)"), block("print(1)")],
                     verification_info=[cpp, {"language": "python", "test_cases": []}]) == [None, None]
    with pytest.raises(KeyError, match="verification_info"):
        code_fast([block("print(1)")], answer=["1"])


def test_function_call_exact_types():
    comps = [block("def pair(a, b):\n    return (a, b)"), block("def pair(a, b):\n    return [a, b]")]
    assert code_fast(comps, verification_info=[PAIR_INFO] * 2) == [1.0, 0.0]  # a list is not a tuple


def test_reward_hacks_score_zero():
    always_equal = block("class E:\n    def __eq__(self, o):\n        return True\ndef pair(a, b):\n    return E()")
    fake_lines = block("print('@@nemo-r1-0000000000000000@@{\"ok\": {\"__tuple__\": [1, 2]}}')\n"
                       "def pair(a, b):\n    return None")
    exit_early = block("import sys\nsys.exit(0)\ndef pair(a, b):\n    return (a, b)")
    hard_exit = block("import os\ndef pair(a, b):\n    os._exit(0)")
    assert code_fast([always_equal, fake_lines, exit_early, hard_exit], verification_info=[PAIR_INFO] * 4) == [0.0] * 4


@needs_namespaces
@pytest.mark.parametrize("name, body", [
    ("infinite loop", "def pair(a, b):\n    while True:\n        pass"),
    ("memory bomb", "def pair(a, b):\n    x = [bytearray(1 << 26) for _ in range(10_000)]"),
    ("fork bomb", "import os\ndef pair(a, b):\n    while True:\n        try:\n            os.fork()\n"
                  "        except OSError:\n            pass"),
    ("delete files", "import shutil\ndef pair(a, b):\n    shutil.rmtree('/work', ignore_errors=True)\n"
                     "    shutil.rmtree('/tmp', ignore_errors=True)\n    return None"),
    ("socket", "import socket\ndef pair(a, b):\n    socket.create_connection(('8.8.8.8', 53), timeout=2)\n"
               "    return (a, b)"),
    ("env secret", "import os\ndef pair(a, b):\n    return (a, b) if os.environ.get('NEMO_R1_SECRET') else None"),
    ("huge output", "def pair(a, b):\n    while True:\n        print('x' * 100000)"),
])
def test_hostile_completions_score_zero(name, body, monkeypatch):
    monkeypatch.setenv("NEMO_R1_SECRET", "1")
    assert code_fast([block(body)], verification_info=[PAIR_INFO]) == [0.0], name
    assert os.path.isdir("/work") and os.path.isdir("/tmp")


def test_outputs_match_semantics():
    assert outputs_match(0.1 + 0.2, 0.3)  # floats get 1e-6 even when atol is 0 (EvalPlus rule)
    assert not outputs_match(3, 4)
    assert outputs_match(float("nan"), float("nan"))
    assert outputs_match([1.0, 2.0000001], [1.0, 2.0])
    assert not outputs_match([1, 2], (1, 2))
    assert outputs_match(decode(encode_value({3, 1, 2})), frozenset({1, 2, 3}))
    assert outputs_match(1.05, 1.0, atol=0.1) and not outputs_match(1.2, 1.0, atol=0.1)
    assert decode(encode_value(2**80)) == 2**80 and math.isinf(decode(encode_value(float("-inf"))))
    assert stdout_matches("3 \n\n4\n", "3\n4") and not stdout_matches("3 4", "3\n4")


def test_mbpp_inputs_follow_the_prompt_example_types():
    row = {"prompt": '"""\nassert add_lists([5, 6, 7], (9, 10)) == (9, 10, 5, 6, 7)\n"""\n',
           "entry_point": "add_lists", "base_input": [[[5, 6, 7], [9, 10]]], "plus_input": [[[1], [2, [3]]]]}
    assert conform_inputs(row) == [[[5, 6, 7], (9, 10)], [[1], (2, (3,))]]
    row = {"prompt": "assert angle_complex(0,1j) == 1", "entry_point": "angle_complex",
           "base_input": [["0", "1j"]], "plus_input": [["1e-100", "(-0-1j)"]]}
    assert conform_inputs(row) == [[0, 1j], [1e-100, complex("(-0-1j)")]]


def test_mbpp_rows_directly_as_columns():
    rows = [json.loads(line) for line in open(data_dir() / "mbppplus.jsonl", encoding="utf-8")][:3]
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    canon = [block(r["canonical_solution"]) for r in rows]
    assert code_fast(canon, **cols) == [1.0, 1.0, 1.0]
    info = function_call_info(rows)
    assert all(i["dropped"] == 0 and len(i["inputs"]) == len(i["outputs"]) > 10 for i in info)


def test_mbpp_through_the_data_layer():
    # rows as the trainer passes them: problem format, `problem` mapped from MBPP's prompt
    from nemo_r1.data import DataConfig, load_examples

    cfg = DataConfig(train="data/mbppplus.jsonl", columns={"problem": "prompt"})
    ex = [e for e in load_examples(cfg, None).examples if e["task_id"] in ("Mbpp/106", "Mbpp/720")]
    cols = {k: [e[k] for e in ex] for k in ex[0]}
    assert code_fast([block(e["canonical_solution"]) for e in ex], **cols) == [1.0, 1.0]  # tuple inputs restored
