"""SFT loss masks rendered back to text: exactly the assistant turns (SmolLM2's and a Qwen-style
ChatML template), exactly the completion, every token of plain text."""

import json

import pytest
from transformers import AutoTokenizer

from nemo_r1.data import DataConfig, load_examples, tokenize_messages
from nemo_r1.data.formats import tokenize_prompt_completion, with_system_prompt
from nemo_r1.embedded import ensure_smollm2

# Qwen2.5's template without the tool branches: a default system turn when there is none
QWEN_STYLE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role != 'system' or not loop.first %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

CHAT = [{"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "<think>\n2 plus 3 is 5.\n</think>\nThe answer is \\boxed{5}."},
        {"role": "user", "content": "And 4*4?"},
        {"role": "assistant", "content": "<think>16</think> \\boxed{16}"}]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(ensure_smollm2())


def _runs(tok, ids, mask) -> list[str]:
    """The trained tokens as text, one string per contiguous run."""
    runs, cur = [], []
    for i, m in zip(ids, mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur)), cur.clear()
    if cur:
        runs.append(tok.decode(cur))
    return runs


@pytest.mark.parametrize("template", [None, QWEN_STYLE], ids=["smollm2", "qwen_style"])
def test_messages_mask_is_exactly_the_assistant_turns(tok, template):
    out = tokenize_messages(CHAT, tok, template)
    expected = [m["content"] + "<|im_end|>\n" for m in CHAT if m["role"] == "assistant"]
    assert _runs(tok, out["input_ids"], out["loss_mask"]) == expected
    # everything else is the rest of the rendering, untrained: the system turn the template adds too
    full = tok.apply_chat_template(CHAT, chat_template=template, tokenize=False)
    assert tok.decode(out["input_ids"]) == full
    untrained = tok.decode([i for i, m in zip(out["input_ids"], out["loss_mask"], strict=True) if not m])
    assert "<|im_start|>system\n" in untrained and "What is 2+3?" in untrained and "<think>" not in untrained


def test_system_prompt_from_config_goes_first_once():
    msgs = with_system_prompt(CHAT, "Think first.")
    assert msgs[0] == {"role": "system", "content": "Think first."} and msgs[1:] == CHAT
    assert with_system_prompt(msgs, "Other.") == msgs


def test_prompt_completion_and_text_examples(tok, tmp_path):
    out = tokenize_prompt_completion("Q: 2+3=", " 5", tok)
    assert _runs(tok, out["input_ids"], out["loss_mask"]) == [" 5" + tok.eos_token]
    assert tok.decode(out["input_ids"]) == "Q: 2+3= 5" + tok.eos_token
    path = tmp_path / "pc.jsonl"
    path.write_text(json.dumps({"question": "Q: 1+1=", "answer": " 2"}) + "\n")
    ex = load_examples(DataConfig(train=str(path), format="prompt_completion",
                                  columns={"prompt": "question", "completion": "answer"}), tok).examples[0]
    assert _runs(tok, ex["input_ids"], ex["loss_mask"]) == [" 2" + tok.eos_token]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(Exception, match="completion"):
        load_examples(DataConfig(train=str(bad), format="prompt_completion"), tok)
    text = tmp_path / "t.jsonl"
    text.write_text(json.dumps({"text": "plain words"}) + "\n")
    t = load_examples(DataConfig(train=str(text), format="text"), tok).examples[0]
    assert _runs(tok, t["input_ids"], t["loss_mask"]) == ["plain words" + tok.eos_token]


def test_sharegpt_trace_rows_become_chat_messages(tok, tmp_path):
    """A Bespoke-Stratos-style row: `system` column, `conversations` of {from, value} turns."""
    row = {"system": "Reason, then answer.", "conversations": [
        {"from": "user", "value": "1+1?"}, {"from": "assistant", "value": "<think>one and one</think> 2"}]}
    path = tmp_path / "stratos.jsonl"
    path.write_text(json.dumps(row) + "\n")
    ex = load_examples(DataConfig(train=str(path), format="messages", columns={"messages": "conversations"}),
                       tok).examples[0]
    assert ex["messages"] == [{"role": "system", "content": "Reason, then answer."},
                              {"role": "user", "content": "1+1?"},
                              {"role": "assistant", "content": "<think>one and one</think> 2"}]
    assert _runs(tok, ex["input_ids"], ex["loss_mask"]) == ["<think>one and one</think> 2<|im_end|>\n"]
    assert tok.decode(ex["input_ids"]).startswith("<|im_start|>system\nReason, then answer.<|im_end|>")


def test_problem_rows_learn_their_solution_after_the_eval_prompt(tok, tmp_path):
    """GSM8K rows as SFT documents: the prompt is exactly the one eval/GRPO render, and the trained
    tokens are the rationale without calculator notes, ending in the boxed gold."""
    from nemo_r1.data.templates import BOXED_SUFFIX, problem_messages, render_prompt

    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "Ann has 3 bags of 4 apples. How many apples?",
                                "answer": "She has 3*4 = <<3*4=12>>12 apples.\n#### 12"}) + "\n")
    cfg = DataConfig(train=str(path), format="problem", columns={"problem": "question"})
    ex = load_examples(cfg, tok, targets=True).examples[0]
    prompt = render_prompt(problem_messages("Ann has 3 bags of 4 apples. How many apples?", None, BOXED_SUFFIX), tok)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ex["input_ids"][:n_prompt] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert not any(ex["loss_mask"][:n_prompt])
    assert _runs(tok, ex["input_ids"], ex["loss_mask"]) == [
        "She has 3*4 = 12 apples.\nThe final answer is \\boxed{12}.<|im_end|>\n"]


def test_problem_rows_without_solution_are_refused(tok, tmp_path):
    from nemo_r1.data import DataError

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    with pytest.raises(DataError, match=r"p.jsonl row 1 has no `solution`"):
        load_examples(DataConfig(train=str(path), format="problem"), tok, targets=True)
