"""Prompts, chat-template overrides, assistant-only loss masks (SmolLM2's real tokenizer, no model)."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from nemo_r1.data import (
    BOXED_SUFFIX,
    R1_SYSTEM_PROMPT,
    DataConfig,
    load_examples,
    problem_messages,
    render_prompt,
    tokenize_messages,
    tokenize_text,
)
from nemo_r1.embedded import ensure_smollm2
from nemo_r1.rewards import get_reward


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(ensure_smollm2())


def test_problem_prompt_with_model_template(tok):
    cfg = DataConfig(train="data/math500.jsonl", max_samples=3)
    ex = load_examples(cfg, tok).examples
    assert len(ex) == 3 and ex[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    p = ex[0]["prompt"]
    assert p.startswith("<|im_start|>system\n") and p.endswith("<|im_start|>assistant\n")
    assert p.count(BOXED_SUFFIX) == 1 and "Convert the point $(0,3)$" in p


def test_r1_system_prompt_and_think_prefill(tok):
    msgs = problem_messages("What is 2 + 2?", system_prompt="r1", suffix="")
    assert msgs == [{"role": "system", "content": R1_SYSTEM_PROMPT}, {"role": "user", "content": "What is 2 + 2?"}]
    prompt = render_prompt(msgs, tok, "chatml_think")
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    # the format reward sees the prefill through the prompt column
    completion = "2 plus 2 is 4\n</think>\n<answer>4</answer>"
    assert get_reward("format")([completion], prompt=[prompt]) == [1.0]
    assert get_reward("format")([completion], prompt=[render_prompt(msgs, tok)]) == [0.0]
    r1_zero = render_prompt(msgs, tok, "r1_zero")
    assert r1_zero.endswith("User: What is 2 + 2?\nAssistant: <think>")


def test_few_shot_turns_come_before_the_problem(tok):
    shots = [{"user": "What is 1 + 1?", "assistant": "\\boxed{2}"}]
    msgs = problem_messages("What is 3 + 4?", suffix="", few_shot=shots)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    with pytest.raises(ValueError, match="few_shot"):
        problem_messages("x", few_shot=[{"question": "a", "assistant": "b"}])


def test_chat_template_errors(tok):
    with pytest.raises(ValueError, match="built-in"):
        render_prompt([{"role": "user", "content": "x"}], tok, "no_such_template")


def test_assistant_only_loss_mask(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}]
    out = tokenize_messages(msgs, tok)
    ids, mask = out["input_ids"], out["loss_mask"]
    assert len(ids) == len(mask)
    learned = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert learned == "Hello!<|im_end|>\n4<|im_end|>\n"
    # nothing of the system or user turns is learned
    assert "Hi there" not in learned and "Be brief" not in learned
    assert tokenize_messages(msgs, tok, max_len=5)["loss_mask"] == mask[:5]


def test_messages_and_text_examples(tok, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}))
    ex = load_examples(DataConfig(train=str(path), format="messages"), tok).examples[0]
    assert tok.decode([i for i, m in zip(ex["input_ids"], ex["loss_mask"], strict=True) if m]) == "b<|im_end|>\n"
    t = tokenize_text("hello world", tok)
    assert t["input_ids"][-1] == tok.eos_token_id and all(t["loss_mask"])
    with pytest.raises(ValueError, match="needs a tokenizer"):
        load_examples(DataConfig(train=str(path), format="messages"), None)
