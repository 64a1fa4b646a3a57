"""In-context learning of the demo's base model (GPT-3's story, issue 18).

The demo world's corpus mixes in documents of worked examples (`world::in_context`): each
states one rule drawn at random (add a suffix, add a prefix, wrap a word in two marks) as
3 to 6 lines `input -> output` joined by two spaces. The held-out rules below are never
drawn. Through the release `plumb` binary, at the demo's pretraining budget:

1. `plumb world corpus --n 4000` (checked here: no held-out rule in it);
2. `plumb init` a tiny byte-tokenizer GPT and `plumb pretrain` it as `plumb demo` does
   (150 steps, seq_len 64, batch 16, 10 warmup steps);
3. greedy `plumb generate` on k-shot prompts of each held-out rule (k worked example
   lines, then the question's word and ` -> `), for k in 0, 1, 3: exact match of the
   completion, trimmed, cut two tokens past the answer as the eval cuts it.

Writes `results_dir/in_context.json` and prints a table of accuracy per rule and k.

    from in_context import bench_in_context
    bench_in_context(ROOT / "target/release/plumb", HERE / ".work/in_context", HERE / "results")

Alone: `python bench/in_context.py` (PLUMB, PLUMB_ICL_STEPS, PLUMB_ICL_DOCS, PLUMB_ICL_SEEDS,
PLUMB_ICL_LR).

Measured (2-core CPU, seed 0): 150 steps (the demo's budget) 0.00 / 0.00 / 0.00 at 0/1/3
shots on every rule; 3000 steps still 0.00 / 0.00 / 0.00, at the default learning rate
and at PLUMB_ICL_LR=3e-3 (the model copies the word but not the affix or the marks). A 2-layer 128-wide GPT at lr 3e-3 on the worked-examples
documents alone, 1500 steps of 16 x 128 tokens, gets 0.00 / 0.81 / 0.90
(trainer/tests/in_context.rs): in-context learning needs that budget, not the demo's.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The demo's pretraining (src/cli/demo.rs): 4000 documents, 150 steps of 16 x 64 tokens.
STEPS = int(os.environ.get("PLUMB_ICL_STEPS", "150"))
DOCS = int(os.environ.get("PLUMB_ICL_DOCS", "4000"))
SEEDS = [int(s) for s in os.environ.get("PLUMB_ICL_SEEDS", "0,1").split(",")]
# The demo gives no learning rate: pretraining's default.
LR = os.environ.get("PLUMB_ICL_LR")
SHOTS = [0, 1, 3]
QUESTIONS = 20
SEPARATOR = "  "
ARROW = " -> "

# world::in_context::HELD_OUT, as (name, function).
HELD_OUT = [
    ("suffix ek", lambda w: w + "ek"),
    ("suffix om", lambda w: w + "om"),
    ("prefix ul", lambda w: "ul" + w),
    ("prefix ax", lambda w: "ax" + w),
    ("wrap %@", lambda w: "%" + w + "@"),
    ("wrap !?", lambda w: "!" + w + "?"),
]
HELD_OUT_AFFIXES = {"ek", "om", "ul", "ax"}
HELD_OUT_WRAPS = {("%", "@"), ("!", "?")}


def _run(args, stdin=None):
    out = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def _rule_of(doc):
    """The rule a worked-examples document follows, as (kind, marks), or None."""
    lines = [line.split(ARROW) for line in doc.split(SEPARATOR)]
    if any(len(parts) != 2 for parts in lines):
        return None
    word, out = lines[0]
    if out.startswith(word) and len(out) == len(word) + 2:
        rule = ("suffix", out[len(word):])
    elif out.endswith(word) and len(out) == len(word) + 2:
        rule = ("prefix", out[:2])
    else:
        rule = ("wrap", (out[0], out[-1]))
    apply = {
        "suffix": lambda w: w + rule[1],
        "prefix": lambda w: rule[1] + w,
        "wrap": lambda w: rule[1][0] + w + rule[1][1],
    }[rule[0]]
    return rule if all(apply(w) == o for w, o in lines) else None


def _corpus_words(corpus):
    """The worked examples' input words, and a check that no held-out rule is in the corpus."""
    words, in_context = set(), 0
    for doc in corpus:
        if ARROW not in doc:
            continue
        rule = _rule_of(doc)
        if rule is None:
            raise AssertionError(f"a worked-examples document follows no rule: {doc!r}")
        kind, marks = rule
        if (kind != "wrap" and marks in HELD_OUT_AFFIXES) or (kind == "wrap" and marks in HELD_OUT_WRAPS):
            raise AssertionError(f"held-out rule {rule} in the corpus: {doc!r}")
        in_context += 1
        words.update(line.split(ARROW)[0] for line in doc.split(SEPARATOR))
    return sorted(words), in_context


def _prompt(examples, word):
    return "".join(f"{w}{ARROW}{o}{SEPARATOR}" for w, o in examples) + word + ARROW


def _accuracy(plumb, model, rule, examples, questions, shots, work):
    """Greedy exact match after `shots` worked examples: the questions' words share a length,
    and the completion is cut two tokens past the answer, as the eval cuts it."""
    answer_len = len(rule(questions[0]))
    lines = "".join(json.dumps({"prompt": _prompt(examples[:shots], q)}) + "\n" for q in questions)
    out = _run([plumb, "generate", "--model", model, "--max-new-tokens", answer_len + 2,
                "--temperature", "0", "--device", "cpu"], stdin=lines)
    completions = [json.loads(line)["completion"] for line in out.splitlines() if line.strip()]
    right = sum(c.strip() == rule(q) for c, q in zip(completions, questions))
    return right / len(questions), completions[:2]


def _one_seed(plumb, work, seed):
    work.mkdir(parents=True, exist_ok=True)
    corpus_path = work / "corpus.jsonl"
    _run([plumb, "world", "corpus", "--n", DOCS, "--seed", seed, "--out", corpus_path])
    corpus = [json.loads(line)["text"] for line in corpus_path.read_text().splitlines() if line.strip()]
    words, in_context = _corpus_words(corpus)
    base, pretrained = work / "base", work / "pretrained"
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(pretrained, ignore_errors=True)
    _run([plumb, "init", "--preset", "tiny", "--tokenizer", "bytes", "--out", base])
    config = work / "pretrain.toml"
    config.write_text(f"warmup_steps = 10\nseq_len = 64\neval_every = 0\n")
    started = time.time()
    _run([plumb, "pretrain", "--model", base, "--data", corpus_path, "--out", pretrained, "--config", config,
          "--steps", STEPS, "--batch-size", 16, "--seed", seed, "--device", "cpu"]
         + (["--lr", LR] if LR else []))
    seconds = time.time() - started
    rng = random.Random(seed)
    four = [w for w in words if len(w) == 4]
    rows = []
    for name, rule in HELD_OUT:
        questions = rng.sample(four, QUESTIONS)
        pool = [w for w in words if w not in questions]
        examples = [(w, rule(w)) for w in rng.sample(pool, max(SHOTS))]
        row = {"rule": name, "seed": seed}
        for k in SHOTS:
            row[f"{k}_shot"], row[f"{k}_shot_samples"] = _accuracy(
                plumb, pretrained, rule, examples, questions, k, work)
        rows.append(row)
    return {"seed": seed, "in_context_documents": in_context, "documents": len(corpus),
            "pretrain_seconds": seconds, "rules": rows}


def bench_in_context(plumb, work_dir, results_dir):
    """0/1/3-shot accuracy of the demo's base model on the held-out rules, per seed."""
    work_dir, results_dir = Path(work_dir), Path(results_dir)
    runs = [_one_seed(plumb, work_dir / f"seed{seed}", seed) for seed in SEEDS]
    mean = {f"{k}_shot": sum(r[f"{k}_shot"] for run in runs for r in run["rules"])
            / sum(len(run["rules"]) for run in runs) for k in SHOTS}
    result = {"bench": "in_context", "steps": STEPS, "lr": LR or "default", "documents": DOCS, "seq_len": 64, "batch_size": 16,
              "preset": "tiny", "shots": SHOTS, "mean": mean, "runs": runs}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "in_context.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"in-context learning, tiny base, {STEPS} steps on {DOCS} documents (greedy exact match)")
    print(f"{'rule':<12} {'seed':>4} " + " ".join(f"{k}-shot".rjust(7) for k in SHOTS))
    for run in runs:
        for r in run["rules"]:
            print(f"{r['rule']:<12} {r['seed']:>4} " + " ".join(f"{r[f'{k}_shot']:7.2f}" for k in SHOTS))
    print(f"{'mean':<12} {'':>4} " + " ".join(f"{mean[f'{k}_shot']:7.2f}" for k in SHOTS))
    return result


if __name__ == "__main__":
    plumb = Path(os.environ.get("PLUMB", ROOT / "target/release/plumb"))
    if not plumb.exists():
        sys.exit(f"{plumb} is missing: build it (cargo build --release) or set PLUMB")
    bench_in_context(plumb, HERE / ".work/in_context", HERE / "results")
