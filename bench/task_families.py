"""Held-out task families: do plumb's default settings learn on tasks nobody tuned them for?

Each family is a generator of (input, output) pairs; a seeded split keeps the held-out
inputs out of training. For every family, through the release `plumb` binary and with no
learning rate or dropout given (the stages' size rules decide them):

1. `plumb init` a tiny byte-tokenizer model;
2. `plumb sft` on demonstrations `input>` → `output`, then greedy `plumb generate` on
   the held-out inputs: exact match is the share whose completion is the output, ended
   by EOS;
3. `plumb reward train` from the SFT model on rankings (the correct output preferred over
   a corrupted one), with the held-out rankings as validation: its pairwise accuracy.

The budget (steps, batch size, data sizes) is one for all families. Targets (issue 18):
SFT >= 0.9 exact match and RM >= 0.9 pairwise accuracy on every family. Writes
`results_dir/task_family_<name>.json` per family and prints a table.

    from task_families import bench_task_families
    bench_task_families(ROOT / "target/release/plumb", HERE / ".work/task_families", HERE / "results")

Alone: `python bench/task_families.py [FAMILY ...]` (PLUMB_TASKS_STEPS etc. below).
"""

import json
import os
import random
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# One budget for every family (no family is tuned): the pinned SFT command,
# `--steps 400 --batch-size 64`, and as many RM steps.
SFT_STEPS = int(os.environ.get("PLUMB_TASKS_STEPS", "400"))
SFT_BATCH = 64
RM_STEPS = int(os.environ.get("PLUMB_TASKS_RM_STEPS", str(SFT_STEPS)))
RM_BATCH = 64
TRAIN_PAIRS = 4000
HELD_OUT = 200
SEED = 0
TARGET = 0.9
MAX_NEW_TOKENS = 24
SEPARATOR = ">"

LETTERS = string.ascii_lowercase


def _word(rng, low=3, high=8, alphabet=LETTERS):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def copy(rng):
    text = _word(rng)
    return text, text


def uppercase(rng):
    text = _word(rng)
    return text, text.upper()


def lowercase(rng):
    text = _word(rng, alphabet=string.ascii_uppercase)
    return text, text.lower()


def reverse(rng):
    text = _word(rng)
    return text, text[::-1]


def addition(rng):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"{a}+{b}", str(a + b)


def brackets(rng):
    text = _word(rng)
    return text, f"[{text}]"


def key_value(rng):
    key, value = _word(rng, 2, 5), _word(rng, 2, 5, alphabet=string.digits)
    return f"{key} {value}", f"{key}={value}"


def first_letters(rng):
    words = [_word(rng, 2, 6) for _ in range(rng.randint(2, 5))]
    return " ".join(words), "".join(w[0] for w in words)


# name → generator of one (input, output) pair from a random.Random.
FAMILIES = {
    "copy": copy,
    "uppercase": uppercase,
    "lowercase": lowercase,
    "reverse": reverse,
    "addition": addition,
    "brackets": brackets,
    "key_value": key_value,
    "first_letters": first_letters,
}


def split(generate, seed, train_size=TRAIN_PAIRS, held_out_size=HELD_OUT):
    """Distinct pairs from `generate`: the held-out ones first, then training pairs whose
    inputs are none of them."""
    rng = random.Random(seed)
    seen, pairs = set(), []
    tries = 0
    while len(pairs) < train_size + held_out_size:
        tries += 1
        if tries > 50 * (train_size + held_out_size):
            raise ValueError(f"{generate.__name__}: fewer than {train_size + held_out_size} distinct inputs")
        source, target = generate(rng)
        if source not in seen:
            seen.add(source)
            pairs.append((source, target))
    return pairs[held_out_size:], pairs[:held_out_size]


def corrupt(output, rng):
    """`output` with one edit (a substitution, deletion, insertion or swap of neighbours),
    drawn from the characters it has, so that only correctness tells the two apart."""
    alphabet = sorted(set(output)) + sorted(set(LETTERS + string.digits) - set(output))[:4]
    while True:
        chars = list(output)
        i = rng.randrange(len(chars))
        edit = rng.choice(["substitute", "delete", "insert", "swap"])
        if edit == "substitute":
            chars[i] = rng.choice(alphabet)
        elif edit == "delete" and len(chars) > 1:
            del chars[i]
        elif edit == "insert":
            chars.insert(i, rng.choice(alphabet))
        elif edit == "swap" and len(chars) > 1:
            j = min(i + 1, len(chars) - 1) if i + 1 < len(chars) else i - 1
            chars[i], chars[j] = chars[j], chars[i]
        bad = "".join(chars)
        if bad != output:
            return bad


def prompt(source):
    return source + SEPARATOR


def _write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _plumb(binary, args, stdin=None):
    """Runs `plumb args`, failing with its stderr; its stdout's JSON lines."""
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    out = subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"plumb {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _peak_lr(run_dir):
    """The highest learning rate the run logged (its `lr` metric in metrics.jsonl)."""
    peak = None
    with open(Path(run_dir) / "metrics.jsonl") as f:
        for line in f:
            row = json.loads(line)
            values = row.get("metrics", row)
            lr = values.get("lr") if isinstance(values, dict) else None
            if lr is not None:
                peak = lr if peak is None else max(peak, lr)
    return peak


def _model_dropout(model_dir):
    with open(Path(model_dir) / "config.json") as f:
        config = json.load(f)
    for key in ("resid_pdrop", "dropout"):
        if key in config:
            return config[key]
    return None


def run_family(binary, name, work_dir, threads=None):
    """One family end to end; its result as a dict."""
    generate = FAMILIES[name]
    work = Path(work_dir) / name
    shutil.rmtree(work, ignore_errors=True)  # a run refuses an --out that holds one
    work.mkdir(parents=True)
    seed = SEED + sorted(FAMILIES).index(name)
    train, held_out = split(generate, seed)
    rng = random.Random(seed + 1000)
    _write_jsonl(work / "demos.jsonl", [{"prompt": prompt(s), "response": t} for s, t in train])
    _write_jsonl(
        work / "rankings.jsonl",
        [{"prompt": prompt(s), "chosen": t, "rejected": corrupt(t, rng)} for s, t in train],
    )
    _write_jsonl(
        work / "held_out_rankings.jsonl",
        [{"prompt": prompt(s), "chosen": t, "rejected": corrupt(t, rng)} for s, t in held_out],
    )
    device = ["--device", "cpu"]
    started = time.time()
    base = work / "base"
    _plumb(binary, ["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", str(base), "--seed", str(seed)])

    sft_dir = work / "sft"
    t0 = time.time()
    sft_report = _plumb(
        binary,
        ["sft", "--model", str(base), "--data", str(work / "demos.jsonl"), "--out", str(sft_dir),
         "--steps", str(SFT_STEPS), "--batch-size", str(SFT_BATCH), "--seed", str(seed), *device],
    )[-1]
    sft_seconds = time.time() - t0
    completions = _plumb(
        binary,
        ["generate", "--model", str(sft_dir), "--max-new-tokens", str(MAX_NEW_TOKENS), "--temperature", "0",
         "--batch-size", "64", *device],
        stdin="".join(json.dumps({"prompt": prompt(s)}) + "\n" for s, _ in held_out),
    )
    hits = [c["finish_reason"] == "eos" and c["completion"] == t for c, (_, t) in zip(completions, held_out)]
    exact_match = sum(hits) / len(held_out)
    misses = [
        {"input": s, "output": t, "completion": c["completion"]}
        for c, (s, t), hit in zip(completions, held_out, hits)
        if not hit
    ][:5]

    rm_dir = work / "rm"
    t0 = time.time()
    rm_report = _plumb(
        binary,
        ["reward", "train", "--model", str(sft_dir), "--data", str(work / "rankings.jsonl"),
         "--val-data", str(work / "held_out_rankings.jsonl"), "--out", str(rm_dir),
         "--steps", str(RM_STEPS), "--batch-size", str(RM_BATCH), "--seed", str(seed), *device],
    )[-1]
    rm_seconds = time.time() - t0

    return {
        "name": name,
        "example": {"input": train[0][0], "output": train[0][1]},
        "train_pairs": len(train),
        "held_out": len(held_out),
        "sft_exact_match": exact_match,
        "rm_accuracy": rm_report["val_accuracy"],
        "steps": {"sft": sft_report["steps"], "rm": rm_report["steps"]},
        "batch_size": {"sft": SFT_BATCH, "rm": RM_BATCH},
        "seconds": {"sft": round(sft_seconds, 1), "rm": round(rm_seconds, 1), "all": round(time.time() - started, 1)},
        # What the runs used: the learning rates they logged, the dropout SFT trained with.
        "settings": {
            "sft_lr": _peak_lr(sft_dir),
            "sft_dropout": _model_dropout(sft_dir),
            "rm_lr": _peak_lr(rm_dir),
            "lr_and_dropout_given": False,
        },
        "sft_report": sft_report,
        "rm_report": rm_report,
        "sft_misses": misses,
        "target": TARGET,
        "passed": exact_match >= TARGET and rm_report["val_accuracy"] >= TARGET,
    }


def bench_task_families(binary, work_dir, results_dir, families=None):
    """Runs every family (or those named) with default settings at the fixed budget,
    writes `results_dir/task_family_<name>.json` for each and prints a table; returns the
    results."""
    binary = Path(binary)
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: run `cargo build --release` first")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    names = families or list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown task families {unknown}; known: {', '.join(FAMILIES)}")
    results = []
    for name in names:
        result = run_family(binary, name, work_dir)
        with open(results_dir / f"task_family_{name}.json", "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        results.append(result)
        print(_row(result), flush=True)
    print(table(results))
    return results


def _row(r):
    s = r["settings"]
    return (
        f"| {r['name']} | {r['example']['input']!r} → {r['example']['output']!r} | {r['sft_exact_match']:.3f} "
        f"| {r['rm_accuracy']:.3f} | {r['steps']['sft']}/{r['steps']['rm']} | {r['seconds']['all']:.0f} "
        f"| {s['sft_lr']:.3g} / {s['sft_dropout']} / {s['rm_lr']:.3g} | {'yes' if r['passed'] else 'NO'} |"
    )


def table(results):
    lines = [
        f"Task families, default settings (no --lr, --dropout); SFT {SFT_STEPS} steps × {SFT_BATCH}, "
        f"RM {RM_STEPS} steps × {RM_BATCH}; {HELD_OUT} held-out inputs; target {TARGET}",
        "",
        "| family | example | SFT exact match | RM accuracy | steps SFT/RM | seconds | SFT lr / dropout / RM lr | ≥ target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(r) for r in results]
    return "\n".join(lines)


if __name__ == "__main__":
    bench_task_families(
        os.environ.get("PLUMB_BINARY", ROOT / "target" / "release" / "plumb"),
        HERE / ".work" / "task_families",
        HERE / "results",
        sys.argv[1:] or None,
    )
