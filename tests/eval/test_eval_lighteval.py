"""The lighteval bridge: lighteval's real tasks, prompts and metrics on local data, through our
engine interface. The engine here is an oracle (it answers from the bundled gold answers) so the
assertion can check lighteval's scores exactly; the vLLM engine itself is tested elsewhere."""

import json

import pytest

from nemo_r1.eval.benchmarks import data_dir
from nemo_r1.eval.engines import Completion

pytestmark = pytest.mark.slow


class OracleEngine:
    """Sample 0 answers correctly, sample 1 wrongly, for every known problem."""

    max_model_len = 4096

    def __init__(self, tok):
        self.tok = tok
        self.golds = {}
        for f in ("aime24.jsonl", "math500.jsonl"):
            for line in (data_dir() / f).read_text().splitlines():
                r = json.loads(line)
                self.golds[r["problem"]] = r["answer"]
        self.seen_seeds = []

    def generate(self, prompts, seeds, temperature, top_p, max_new_tokens):
        out = []
        for i, (ids, seed) in enumerate(zip(prompts, seeds, strict=True)):
            text = self.tok.decode(ids)
            gold = next(g for p, g in self.golds.items() if p in text)
            self.seen_seeds.append(seed)
            ans = gold if i % 2 == 0 else "123456789"
            reply = f"Therefore, the final answer is: $\\boxed{{{ans}}}$. ANSWER: {ans}"
            out.append(Completion(reply, self.tok(reply)["input_ids"], "stop"))
        return out


def test_lighteval_tasks_score_through_our_engine(tmp_path, monkeypatch, capsys):
    from transformers import AutoTokenizer

    from nemo_r1.embedded import ensure_smollm2
    from nemo_r1.eval.lighteval_bridge import evaluate_lighteval

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = str(ensure_smollm2())
    engine = OracleEngine(AutoTokenizer.from_pretrained(model))
    res = evaluate_lighteval(model, tasks=["aime24", "math_500", "gpqa:diamond"], n=2, max_new_tokens=64,
                             limit=4, out_dir=tmp_path, engine=engine, max_batch=2)
    assert set(res["tasks"]) == {"aime24", "math_500"}
    for task in ("aime24", "math_500"):
        scores = res["tasks"][task]
        assert scores["pass@k:k=1&n=2"] == pytest.approx(0.5), scores
        assert scores["avg@n:n=2"] == pytest.approx(0.5), scores
    assert "gpqa:diamond" in res["skipped"] and "Idavidrein/gpqa" in res["skipped"]["gpqa:diamond"]
    assert "lighteval task gpqa:diamond skipped" in capsys.readouterr().out
    samples = (tmp_path / "lighteval_samples" / "aime24_nemo.jsonl").read_text().splitlines()
    assert len(samples) == 8 and len(set(engine.seen_seeds)) == 16  # one seed per (task, doc, sample)

    # rerun: every sample is already on disk, the engine is not called again
    engine.seen_seeds.clear()
    again = evaluate_lighteval(model, tasks=["aime24", "math_500"], n=2, max_new_tokens=64, limit=4,
                               out_dir=tmp_path, engine=engine)
    assert engine.seen_seeds == [] and again["tasks"] == {k: res["tasks"][k] for k in again["tasks"]}
