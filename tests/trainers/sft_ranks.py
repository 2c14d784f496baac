"""Tiny model, SFT data sets and rank functions for the SFT tests (a uniquely named module:
spawned ranks import it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

FORMATS = ("text", "messages", "prompt_completion")


def make_tiny_chat_model(out: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama (head dim 64, 2 KV heads) with SmolLM2's tokenizer and chat template.

    Weights are drawn 10x wider than usual, so token logprobs and attention patterns vary a lot
    and a wrong loss mask or a leak across documents changes the numbers."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from nemo_r1.embedded import ensure_smollm2

    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, head_dim=64, vocab_size=len(tok), max_position_embeddings=512,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.2, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_datasets(out: Path, n: int = 48, seed: int = 0) -> dict[str, Path]:
    """One jsonl per format, documents of uneven lengths (a few words to a few dozen)."""
    g = torch.Generator().manual_seed(seed)
    words = "the cat sat on a mat and then two plus three is five so we box it".split()

    def sentence() -> str:
        k = int(torch.randint(2, 16, (1,), generator=g))
        return " ".join(words[int(i)] for i in torch.randint(0, len(words), (k,), generator=g))

    rows = {
        "text": [{"text": ". ".join(sentence() for _ in range(3))} for _ in range(n)],
        "messages": [{"messages": [{"role": "user", "content": sentence()},
                                   {"role": "assistant", "content": f"<think>{sentence()}</think> {sentence()}"}]}
                     for _ in range(n)],
        "prompt_completion": [{"prompt": sentence() + " =", "completion": " " + sentence() + ". " + sentence()}
                              for _ in range(n)],
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt, rs in rows.items():
        paths[fmt] = out / f"{fmt}.jsonl"
        paths[fmt].write_text("".join(json.dumps(r) + "\n" for r in rs))
    return paths


def sft_overrides(hf_dir: Path, data: Path, fmt: str, out: Path, *extra: str) -> list[str]:
    return [f"model.path={hf_dir}", f"data.train={data}", f"data.format={fmt}", f"output_dir={out}",
            "data.system_prompt=null", "train.max_seq_len=192", "train.global_batch_size=4",
            "train.micro_batch_size=2", "train.max_steps=1", "optim.lr=0.0", "checkpoint.save_final=false",
            "logging.tensorboard=false", "train.resume=none", *extra]


def lr0_losses(hf_dir: str, data_dir: str, out_root: str, tp: int, pp: int) -> dict[str, float]:
    """train/loss of step 1 at lr 0 for every format, packed and unpacked, on one model build."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.sft import build_training, run_sft

    state, losses = None, {}
    for fmt in FORMATS:
        for packing in (True, False):
            cfg = load_config(None, sft_overrides(Path(hf_dir), Path(data_dir) / f"{fmt}.jsonl", fmt,
                                                  Path(out_root) / f"{fmt}_{packing}_{tp}x{pp}",
                                                  f"parallel.tensor={tp}", f"parallel.pipeline={pp}",
                                                  f"sft.packing={packing}"))
            if state is None:
                from nemo_r1.distributed import init_distributed

                init_distributed(tp, pp, seed=0)
                state = build_training(cfg, hf_dir, 1)
            rows = run_sft(cfg, state)
            if rows:
                losses[f"{fmt}/{'packed' if packing else 'unpacked'}"] = rows[0]["train/loss"]
    return losses


def packed_vs_unpacked(hf_dir: str, data_dir: str) -> dict[str, list[torch.Tensor]]:
    """Logprobs on loss tokens and gradients of one global batch of messages documents, run as
    packed rows, as one row per document, and as packed rows whose attention crosses documents."""
    from nemo_r1.config import load_config
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.forward import forward_backward_logprobs
    from nemo_r1.trainers.sft import build_training, loss_fn_for
    from nemo_r1.trainers.sft_data import build_sft_data, load_documents

    cfg = load_config(None, sft_overrides(Path(hf_dir), Path(data_dir) / "messages.jsonl", "messages",
                                          Path(data_dir) / "unused"))
    init_distributed(1, 1, seed=0)
    state = build_training(cfg, hf_dir, 1)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    data = build_sft_data(cfg, load_documents(cfg, tok), tok.pad_token_id or 0)
    bins = data.global_bins(0)
    assert any(len(b) > 1 for b in bins), "the batch must pack several documents into a row"
    loss_fn = loss_fn_for(float(data.loss_tokens(bins)))
    out: dict[str, list[torch.Tensor]] = {}
    for name, rows, block in (("packed", bins, True), ("unpacked", [[i] for b in bins for i in b], True),
                              ("crossing", bins, False)):
        data.block_mask = block
        mbs = data.micro_batches(rows, 0, 1, 2)
        state.model.zero_grad_buffer()
        res = forward_backward_logprobs(state.model, mbs, loss_fn)
        lps = torch.cat([lp[mb["loss_mask"].bool()] for lp, mb in zip(res.logprobs, mbs, strict=True)])
        grads = [p.main_grad.detach().clone() for p in state.model.parameters()]
        out[name] = [lps, torch.tensor(res.loss), *grads]
    return out


def tp1_checks(hf_dir: str, data_dir: str, out_root: str) -> dict:
    """Both TP1 checks on one rank (one start-up): lr-0 losses, then packed vs unpacked."""
    return {"losses": lr0_losses(hf_dir, data_dir, out_root, 1, 1), "packing": packed_vs_unpacked(hf_dir, data_dir)}


def hf_step1_loss(hf_dir: Path, data_dir: Path, fmt: str, packing: bool) -> float:
    """The reference: HF transformers' mean token NLL over the loss tokens of step 1's documents,
    each document run alone (no packing, no masks), labels from the format's loss mask."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nemo_r1.config import load_config
    from nemo_r1.trainers.sft_data import build_sft_data, load_documents

    cfg = load_config(None, sft_overrides(hf_dir, data_dir / f"{fmt}.jsonl", fmt, data_dir / "unused",
                                          f"sft.packing={packing}"))
    tok = AutoTokenizer.from_pretrained(hf_dir)
    data = build_sft_data(cfg, load_documents(cfg, tok), 0)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in (i for b in data.global_bins(0) for i in b):
            ids = torch.tensor([data.epochs.docs[i]["input_ids"]])
            mask = torch.tensor(data.epochs.docs[i]["loss_mask"][1:], dtype=torch.bool)
            logits = model(ids).logits[0, :-1].double()
            nll = -torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
            total, count = total + float(nll[mask].sum()), count + int(mask.sum())
    return total / count


SPLITS = (("micro1_acc8", 2, 1), ("micro4_acc2", 2, 4), ("micro2_acc2_dp2", 1, 2))  # (name, TP, micro-batch)


def split_runs(hf_dir: str, data_dir: str, out_root: str) -> dict[str, list[dict]]:
    """Two steps on one global batch of 8 packed rows, cut three ways on the same 2 ranks: TP2 with
    micro-batch 1 (accumulation 8) or 4 (accumulation 2), and TP1 = DP2 with micro-batch 2."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.sft import run_sft

    out = {}
    for name, tp, micro in SPLITS:
        cfg = load_config(None, sft_overrides(Path(hf_dir), Path(data_dir) / "text.jsonl", "text",
                                              Path(out_root) / name, f"parallel.tensor={tp}",
                                              f"train.micro_batch_size={micro}", "train.global_batch_size=8",
                                              "train.max_seq_len=64", "train.max_steps=2", "optim.lr=1e-2"))
        out[name] = run_sft(cfg)
    return out
