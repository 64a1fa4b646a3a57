"""`make bench`: plumb against its peers, side by side, on the CPU.

For every benchmark this script runs `target/release/plumb-bench` and `bench/peer.py`
(transformers / PyTorch / tiktoken) on the same checkpoint and the same inputs, each in a
process of its own with the same thread count, and writes

    bench/results/<benchmark>.json   both sides' timings, peak RSS and sanity checks
    bench/results/README.md          the summary table (also printed)

Checkpoints, prompts, demonstrations, comparisons and the tokenizer corpus go to
bench/.work/ and are reused by later runs. Benchmarks are measurements, not tests:
nothing here fails on a slow result. See bench/README.md for what each benchmark compares.

    PLUMB_BENCH_ONLY=sft_tiny,ppo   only the benchmarks whose names contain one of these
                                    (bench/results/README.md is then left as it was)
    PLUMB_BENCH_REPS=2              this many timed repetitions for every benchmark
    PLUMB_BENCH_THREADS=2           intra-op threads per side
"""

import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
RESULTS = HERE / "results"
PLUMB = ROOT / "target" / "release" / "plumb"
PLUMB_BENCH = ROOT / "target" / "release" / "plumb-bench"
PLUMB_BENCH_DB = ROOT / "target" / "release" / "plumb-bench-db"
PLUMB_BENCH_WEB = ROOT / "target" / "release" / "plumb-bench-web"
PEER = [sys.executable, str(HERE / "peer.py")]

sys.path.insert(0, str(HERE))
from peer import r50k_base  # noqa: E402  (beside this file)

# Both sides get the same intra-op thread count; 2 is what the CI machine has.
THREADS = int(os.environ.get("PLUMB_BENCH_THREADS", "2"))
NEW_TOKENS = 64
PROMPT_TOKENS = 16
CORPUS_BYTES = 5_000_000
DOC_BYTES = 4096
EOS = 50256
# Benchmarks whose names contain one of these (comma-separated); all when unset.
ONLY = [x for x in os.environ.get("PLUMB_BENCH_ONLY", "").split(",") if x.strip()]
REPS = int(os.environ["PLUMB_BENCH_REPS"]) if os.environ.get("PLUMB_BENCH_REPS") else None


def main():
    for binary in (PLUMB, PLUMB_BENCH, PLUMB_BENCH_DB, PLUMB_BENCH_WEB):
        if not binary.exists():
            sys.exit(f"{binary} is missing: run `make bench` (or `cargo build --release`) first")
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_before = os.getloadavg()[0]

    enc = r50k_base(tiktoken_ranks_path())
    docs_path = WORK / "corpus.json"
    docs = corpus(seed=0)
    write_json(docs_path, docs)
    # Token windows of the corpus make the prompts and training batches of both sides.
    corpus_ids = enc.encode_ordinary("".join(docs[:200]))
    checkpoints = {}

    def ckpt(preset):
        if preset not in checkpoints:
            checkpoints[preset] = checkpoint(preset)
        return checkpoints[preset]

    # (name, how to run it); each runs only if PLUMB_BENCH_ONLY selects its name.
    benches = []
    for preset, batch, reps in [("tiny", 1, 5), ("tiny", 16, 5), ("gpt2", 1, 3), ("gpt2", 16, 3)]:
        benches.append((f"generate_{preset}_b{batch}",
                        lambda p=preset, b=batch, r=reps: bench_generate(ckpt(p), p, b, r, corpus_ids)))
    for preset, batch, seq, reps in [("tiny", 8, 256, 5), ("gpt2", 2, 256, 3)]:
        benches.append((f"train_step_{preset}_b{batch}x{seq}",
                        lambda p=preset, b=batch, t=seq, r=reps:
                        bench_train_step(ckpt(p), p, b, t, r, corpus_ids)))
    # Training stages: (preset, batch, optimizer steps per timed repetition, repetitions).
    for preset, batch, steps, reps in [("tiny", 8, 4, 5), ("gpt2", 4, 1, 3)]:
        benches.append((f"sft_{preset}_b{batch}",
                        lambda p=preset, b=batch, s=steps, r=reps:
                        bench_sft(ckpt(p), p, b, s, r, corpus_ids, enc)))
    for preset, batch, steps, reps in [("tiny", 8, 4, 5), ("gpt2", 4, 1, 3)]:
        benches.append((f"reward_{preset}_b{batch}",
                        lambda p=preset, b=batch, s=steps, r=reps:
                        bench_reward(ckpt(p), p, b, s, r, corpus_ids, enc)))
    # PPO: (preset, rollout batch, minibatch, PPO epochs, new tokens, repetitions).
    for preset, batch, minibatch, epochs, new_tokens, reps in [("tiny", 16, 8, 2, 32, 5),
                                                               ("gpt2", 8, 4, 1, 32, 3)]:
        benches.append((f"ppo_step_{preset}_b{batch}",
                        lambda p=preset, b=batch, m=minibatch, e=epochs, n=new_tokens, r=reps:
                        bench_ppo_step(ckpt(p), p, b, m, e, n, r, corpus_ids, enc)))
    # Data parallelism: 2 ranks x 1 thread against 1 process x 1 thread on the same global
    # batch, SFT and the reward model (bench/scaling.py; imported here, as it imports this
    # file).
    from scaling import bench_scaling
    benches.append(("scaling", lambda: bench_scaling(ckpt("tiny"), corpus_ids, enc, plumb=PLUMB)))
    benches.append(("tokenizer", lambda: bench_tokenizer(docs_path, docs)))
    # DPO, RLOO and GRPO against TRL's trainers (bench/preference.py), as `plumb dpo`,
    # `plumb rloo` and `plumb grpo` run.
    from preference import bench_dpo, bench_grpo, bench_rloo
    benches.append(("dpo_tiny", lambda: bench_dpo(ckpt("tiny"), corpus_ids, enc)))
    benches.append(("rloo_step_tiny", lambda: bench_rloo(
        ckpt("tiny"), reward_model(ckpt("tiny"), "tiny", corpus_ids, enc), corpus_ids, enc)))
    benches.append(("grpo_step_tiny", lambda: bench_grpo(
        ckpt("tiny"), reward_model(ckpt("tiny"), "tiny", corpus_ids, enc), corpus_ids, enc)))
    benches.append(("ranking_submit", bench_ranking_submit))
    benches.append(("web_load", bench_web_load))
    # Importing 50,000 TRL pairs against COPY, and the artifact store on an S3 bucket
    # (moto's server) against the local directory (bench/storage.py).
    from storage import bench_artifacts_s3, bench_data_import
    benches.append(("data_import_trl", lambda: bench_data_import(corpus_ids, enc)))
    benches.append(("artifacts_s3", lambda: bench_artifacts_s3(ckpt("gpt2"))))

    results = []
    for name, bench in benches:
        if not ONLY or any(x.strip() in name for x in ONLY):
            done = bench()
            results.extend(done if isinstance(done, list) else [done])
    if not results and not any(x.strip() in "task_families" or x.strip() in "in_context" for x in ONLY):
        sys.exit(f"PLUMB_BENCH_ONLY={','.join(ONLY)} selects none of: "
                 + ", ".join(name for name, _ in benches) + ", task_families, in_context")

    environment = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": THREADS,
        "python": platform.python_version(),
        "versions": peer_versions(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "wall_s": round(time.time() - started, 1),
    }
    for r in results:
        r["environment"] = environment
        write_json(RESULTS / f"{r['name']}.json", r, indent=2)
    table = markdown_table(results, environment)
    # The held-out task families, trained with default settings: not a comparison with a
    # peer, so their own table (bench/task_families.py) follows the main one.
    if not ONLY or any(x.strip() in "task_families" for x in ONLY):
        from task_families import bench_task_families, table as family_table
        table += "\n## Task families with default settings\n\n" + family_table(
            bench_task_families(PLUMB, WORK / "task_families", RESULTS)) + "\n"
    # In-context learning of a base model pretrained as the demo's is, on rules its corpus
    # never shows (bench/in_context.py): no peer either; it prints its own table.
    if not ONLY or any(x.strip() in "in_context" for x in ONLY):
        from in_context import bench_in_context
        bench_in_context(PLUMB, WORK / "in_context", RESULTS)
    if ONLY:
        print("(PLUMB_BENCH_ONLY is set: bench/results/README.md is left as it was)", file=sys.stderr)
    else:
        (RESULTS / "README.md").write_text(table)
    print(table)


# --- the benchmarks ---------------------------------------------------------------


def bench_generate(model_dir, preset, batch, reps, corpus_ids):
    """Greedy decoding, KV cache, exactly NEW_TOKENS per prompt; tokens/s."""
    name = f"generate_{preset}_b{batch}"
    rng = random.Random(batch)
    starts = [rng.randrange(len(corpus_ids) - PROMPT_TOKENS) for _ in range(batch)]
    prompts = [corpus_ids[s:s + PROMPT_TOKENS] for s in starts]
    prompts_path = write_json(WORK / f"{name}.prompts.json", prompts)
    common = ["generate", *timing(reps), "--model", str(model_dir), "--prompts", str(prompts_path),
              "--new-tokens", str(NEW_TOKENS)]
    plumb, peer = run_pair([str(PLUMB_BENCH), *common], [*PEER, *common], reps)
    checks = {"samples_agreeing": agreement(plumb.pop("ids"), peer.pop("ids"))}
    return result(
        name, "generate",
        f"{preset}, gpt2 tokenizer, batch {batch}, {PROMPT_TOKENS}-token prompts, "
        f"{NEW_TOKENS} new tokens, greedy",
        "transformers GPT2LMHeadModel.generate (KV cache, greedy)",
        plumb, peer, "tokens_per_s", "tok/s", goal=1.5, checks=checks,
    )


def bench_train_step(model_dir, preset, batch, seq, reps, corpus_ids):
    """Forward + backward + AdamW of the LM loss, dropout on; tokens/s."""
    name = f"train_step_{preset}_b{batch}x{seq}"
    rows = [corpus_ids[i * seq:(i + 1) * seq] for i in range(batch)]
    inputs_path = write_json(WORK / f"{name}.inputs.json", rows)
    common = ["train-step", *timing(reps), "--model", str(model_dir), "--inputs", str(inputs_path)]
    plumb, peer = run_pair([str(PLUMB_BENCH), *common], [*PEER, *common], reps)
    # Same weights and batch; both draw dropout masks from libtorch's CPU generator seeded 0
    # in the same order, so the first losses usually agree to every digit.
    checks = {"first_loss": {"plumb": plumb["losses"][0], "peer": peer["losses"][0]}}
    return result(
        name, "train_step",
        f"{preset}, batch {batch} x seq {seq}, dropout as in config.json, AdamW",
        "PyTorch eager transformers GPT2LMHeadModel, loss.backward() + torch.optim.AdamW",
        plumb, peer, "tokens_per_s", "tok/s", goal=1.0, checks=checks,
    )


def bench_sft(model_dir, preset, batch, steps, reps, corpus_ids, enc):
    """SFT optimizer steps on demonstrations, loss on the response; real tokens/s."""
    name = f"sft_{preset}_b{batch}"
    demos = WORK / f"{name}.demos.jsonl"
    # Prompt and response lengths vary, so batches carry padding and the prompt mask
    # matters. Both sides take the demonstrations in file order, so their batches (and
    # padding) are the same.
    write_jsonl(demos, demonstrations(corpus_ids, enc, batch * steps, seed=batch))
    plumb, peer = run_training_pair("sft", model_dir, demos, batch, steps, reps)
    checks = {
        "tokens_per_rep": {"plumb": plumb["tokens_per_rep"], "peer": peer["tokens_per_rep"]},
        "same_tokens": plumb["tokens_per_rep"] == peer["tokens_per_rep"],
        # Same weights and batch, different dropout masks: close, not equal.
        "first_loss": {"plumb": plumb["losses"][0], "peer": peer["losses"][0]},
    }
    tokens = plumb["tokens_per_rep"]
    return result(
        name, "sft",
        f"{preset}, batch {batch}, {steps} steps per rep, {tokens['real'] // (batch * steps)} "
        f"tokens per sequence on average ({tokens['targets'] * 100 // tokens['real']}% in the "
        "loss), dropout 0.1, AdamW + clip 1.0 + cosine",
        "TRL SFTTrainer (completion-only loss, pre-tokenized, float32, no gradient checkpointing)",
        plumb, peer, "tokens_per_s", "tok/s", goal=1.0, checks=checks, memory_goal=1.1,
    )


def bench_reward(model_dir, preset, batch, steps, reps, corpus_ids, enc):
    """Reward-model optimizer steps on chosen/rejected pairs (K = 2); pairs/s."""
    name = f"reward_{preset}_b{batch}"
    pairs = WORK / f"{name}.pairs.jsonl"
    write_jsonl(pairs, comparisons(corpus_ids, enc, batch * steps, seed=100 + batch))
    plumb, peer = run_training_pair("reward", model_dir, pairs, batch, steps, reps)
    checks = {
        "pairs_per_rep": {"plumb": plumb["pairs_per_rep"], "peer": peer["pairs_per_rep"]},
        "real_tokens_per_rep": {"plumb": plumb["tokens_per_rep"]["real"],
                                "peer": peer["tokens_per_rep"]["real"]},
        "same_tokens": plumb["pairs_per_rep"] == peer["pairs_per_rep"]
        and plumb["tokens_per_rep"]["real"] == peer["tokens_per_rep"]["real"],
        # Each side starts a new, randomly initialised score head: both near ln 2.
        "first_loss": {"plumb": plumb["losses"][0], "peer": peer["losses"][0]},
    }
    tokens = plumb["tokens_per_rep"]["real"] // (2 * batch * steps)
    return result(
        name, "reward",
        f"{preset}, {batch} pairs (K = 2) per step, {steps} steps per rep, {tokens} tokens per "
        "sequence on average, no dropout, AdamW + clip 1.0",
        "TRL RewardTrainer (pre-tokenized, float32, no gradient checkpointing)",
        plumb, peer, "pairs_per_s", "pairs/s", goal=1.0, checks=checks, memory_goal=1.1,
    )


def bench_ppo_step(model_dir, preset, batch, minibatch, epochs, new_tokens, reps, corpus_ids, enc):
    """One PPO iteration: rollouts, scoring, GAE and the updates; steps/s."""
    name = f"ppo_step_{preset}_b{batch}"
    rng = random.Random(1000 + batch)
    starts = [rng.randrange(len(corpus_ids) - PROMPT_TOKENS) for _ in range(batch)]
    prompts = write_json(WORK / f"{name}.prompts.json",
                         [corpus_ids[s:s + PROMPT_TOKENS] for s in starts])
    rm = reward_model(model_dir, preset, corpus_ids, enc)
    common = ["--policy", str(model_dir), "--reward", str(rm), "--prompts", str(prompts),
              "--new-tokens", str(new_tokens), "--minibatch-size", str(minibatch),
              "--ppo-epochs", str(epochs)]
    plumb, peer = run_pair([str(PLUMB_BENCH), "ppo-step", *timing(reps), *common],
                           [*PEER, "ppo-step", *timing(reps), *common], reps)
    checks = {
        # plumb samples as PPO does, stopping at EOS; with random weights EOS is about
        # 1 token in 50,257, and a sample that stops early still leaves the batch as wide.
        "plumb_response_length": plumb["response_length"],
        "plumb_eos_rate": plumb["eos_rate"],
        "generation_share": {"plumb": plumb["generation_share"], "peer": peer["generation_share"]},
        "training_share": {"plumb": plumb["training_share"], "peer": peer["training_share"]},
        # Median seconds of each part of the step, plumb's and the peer's, in the same
        # parts: generation, scoring, old_logprobs, reference, values, advantages, update.
        "breakdown": {"plumb": plumb.get("breakdown"), "peer": peer.get("breakdown")},
    }
    notes = (f"generation {plumb['generation_share']:.0%} of plumb's step "
             f"(peer {peer['generation_share']:.0%}), updates {plumb['training_share']:.0%} "
             f"(peer {peer['training_share']:.0%})")
    return result(
        name, "ppo_step",
        f"{preset}, {batch} prompts of {PROMPT_TOKENS} tokens, {new_tokens} sampled tokens each "
        f"(temperature 1), minibatches of {minibatch}, {epochs} PPO epoch(s), policy + "
        "reference + reward + value models",
        "PyTorch loop: transformers generate (sampling, KV cache), GPT2 trunks, AdamW",
        plumb, peer, "steps_per_s", "s/step", goal=2.0, checks=checks, memory_goal=1.1,
        show="median_s", notes=notes,
    )


def bench_tokenizer(docs_path, docs):
    """GPT-2 BPE over ~5 MB of mixed text, one encode per ~4 KB document; MB/s."""
    plumb_ids = WORK / "tokenizer.plumb_ids.json"
    peer_ids = WORK / "tokenizer.peer_ids.json"
    reps = 5
    common = ["tokenize", *timing(reps), "--docs", str(docs_path)]
    plumb, peer = run_pair(
        [str(PLUMB_BENCH), *common, "--ids-out", str(plumb_ids)],
        [*PEER, *common, "--ranks", str(tiktoken_ranks_path()), "--ids-out", str(peer_ids)],
        reps)
    a, b = json.loads(plumb_ids.read_text()), json.loads(peer_ids.read_text())
    mismatched = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    checks = {"ids_identical": not mismatched and len(a) == len(b) == len(docs)}
    if not checks["ids_identical"]:
        checks["MISMATCH"] = (
            f"plumb and tiktoken disagree on {len(mismatched)} of {len(docs)} documents "
            f"(first: document {mismatched[:5]})"
        )
        print(f"!!! tokenizer MISMATCH: {checks['MISMATCH']}", file=sys.stderr)
    return result(
        "tokenizer", "tokenizer",
        f"GPT-2 BPE (r50k_base), {plumb['bytes'] / 1e6:.1f} MB mixed text in "
        f"{len(docs)} documents of ~{DOC_BYTES // 1024} KB, 1 thread",
        "tiktoken Encoding.encode_ordinary (Python, same ranks file)",
        plumb, peer, "mb_per_s", "MB/s", goal=1.0, checks=checks,
    )


def run_db_bench(binary, *args, reps):
    """Runs a benchmark binary that times its own repetitions on the private durable
    cluster; returns its JSON report and the load average when it started."""
    started_load = os.getloadavg()[0]
    out = subprocess.run([str(binary), *args, "--reps", str(reps), "--cluster", str(WORK / "pg")],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), started_load


def bench_ranking_submit():
    """Ranking submits/s through `labeling` (checks, idempotency key, flags, assignment
    state, one transaction) against raw SQL writing the same rows, on the same Postgres,
    at 1 and 16 concurrent clients. Each side gets a fresh database per repetition; the
    private cluster is durable (fsync on), as a real one would be."""
    report, started_load = run_db_bench(PLUMB_BENCH_DB, "--clients", "1,16", "--submits", "2000",
                                        reps=REPS or 5)
    results = []
    for r in report["results"]:
        for side in ("plumb", "raw"):
            r[side]["load_average_at_start"] = started_load
        results.append(result(
            f"ranking_submit_c{r['clients']}", "ranking_submit",
            f"K = {report['k']}, {r['submits']} submits, {r['clients']} concurrent clients",
            "raw SQL (the same rows, one transaction, no checks)", r["plumb"], r["raw"],
            "submits_per_s", "submits/s", 0.8,
            {"each_submit_stored_once": r["each_submit_stored_once"]}))
    return results


def bench_web_load():
    """Annotators over HTTP on loopback (next task, the task page, a K = 4 ranking submit)
    at 16 connections, against the same work through `labeling` directly, on the same
    durable Postgres: tasks/s, and p50/p99 latency per request kind."""
    report, started_load = run_db_bench(PLUMB_BENCH_WEB, "--connections", "16", "--tasks", "800",
                                        reps=REPS or 3)
    for side in ("plumb", "direct"):
        report[side]["load_average_at_start"] = started_load
    return result(
        "web_load_c16", "web_load",
        f"K = {report['k']}, {report['tasks']} tasks, {report['connections']} connections; "
        "next task + task page + ranking submit",
        "the same calls through labeling directly", report["plumb"], report["direct"],
        "tasks_per_s", "tasks/s", 0.7,
        {"each_task_ranked_once": report["each_task_ranked_once"],
         "latency_http": report["plumb"]["latency"], "latency_direct": report["direct"]["latency"]})


def timing(reps):
    """The options both plumb-bench and peer.py take after the subcommand."""
    return ["--threads", str(THREADS), "--warmup", "1", "--reps", str(REPS or reps)]


def result(name, kind, config, peer_name, plumb, peer, metric, unit, goal, checks,
           memory_goal=None, show=None, notes=None):
    """A benchmark's record. `metric` is work per second at the median (the ratio's);
    `show` another field of both sides to show in the table instead (in `unit`); `goal`
    None: a measurement with no goal."""
    ratio = plumb[metric] / peer[metric]
    # Both metrics are work / median seconds; the fastest repetitions are the least
    # disturbed by other work on the machine, so their ratio is a second opinion.
    ratio_of_fastest = peer["min_s"] / plumb["min_s"]
    valid = checks.get("ids_identical", True) and checks.get("same_tokens", True)
    rss = plumb.get("peak_rss_kb"), peer.get("peak_rss_kb")
    memory_ratio = rss[0] / rss[1] if all(rss) else None
    memory_met = memory_goal is None or (memory_ratio is not None and memory_ratio <= memory_goal)
    return {
        "name": name,
        "benchmark": kind,
        "config": config,
        "peer": peer_name,
        "metric": metric,
        "unit": unit,
        "plumb": plumb,
        "peer_result": peer,
        "show": show or metric,
        "notes": notes,
        "ratio": ratio,
        "ratio_of_fastest_reps": ratio_of_fastest,
        "goal": goal,
        "speed_met": goal is None or bool(ratio >= goal),
        "memory_ratio": memory_ratio,
        "memory_goal": memory_goal,
        "memory_met": memory_met,
        "met": bool((goal is None or ratio >= goal) and valid and memory_met),
        "checks": checks,
    }


def agreement(a, b):
    """How many samples the two sides generated identically (greedy, same weights)."""
    same = sum(x == y for x, y in zip(a, b))
    return f"{same}/{len(a)}"


# --- inputs -----------------------------------------------------------------------


def demonstrations(corpus_ids, enc, n, seed):
    """`n` synthetic demonstrations: a prompt of 16-112 corpus tokens and the 16-112
    tokens after it as the response (both decoded to text; sequences fit the tiny
    preset's 256 positions). The demo world's demonstrations are about 15 tokens long,
    too short to measure a training step by."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        p, r = rng.randint(16, 112), rng.randint(16, 112)
        s = rng.randrange(len(corpus_ids) - p - r)
        rows.append({"prompt": enc.decode(corpus_ids[s:s + p]),
                     "response": enc.decode(corpus_ids[s + p:s + p + r])})
    return rows


def comparisons(corpus_ids, enc, n, seed):
    """`n` synthetic comparisons `{"prompt", "chosen", "rejected"}` (16-64 tokens each)."""
    rng = random.Random(seed)

    def text(lo, hi):
        k = rng.randint(lo, hi)
        s = rng.randrange(len(corpus_ids) - k)
        return enc.decode(corpus_ids[s:s + k])

    return [{"prompt": text(16, 64), "chosen": text(16, 64), "rejected": text(16, 64)}
            for _ in range(n)]


def reward_model(model_dir, preset, corpus_ids, enc):
    """A reward model for PPO from `plumb reward train` (one step on a few comparisons):
    the checkpoint's trunk and a score head, as PPO's reward and value models load."""
    out = WORK / f"{preset}-rm"
    if not (out / "model.safetensors").exists():
        data = write_jsonl(WORK / f"{preset}-rm.pairs.jsonl", comparisons(corpus_ids, enc, 8, seed=7))
        run([str(PLUMB), "reward", "train", "--model", str(model_dir), "--data", str(data),
             "--steps", "1", "--batch-size", "2", "--seed", "0", "--device", "cpu", "--out", str(out)])
    return out


def checkpoint(preset):
    """A randomly initialised checkpoint of `preset` from `plumb init` (GPT-2 vocabulary)."""
    out = WORK / f"{preset}-gpt2tok"
    if not (out / "model.safetensors").exists():
        run([str(PLUMB), "init", "--preset", preset, "--tokenizer", "gpt2", "--seed", "0",
             "--out", str(out)])
    return out


def tiktoken_ranks_path():
    """r50k_base's ranks as tiktoken-rs ships them (tiktoken itself would download them)."""
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1"], cwd=ROOT, check=True,
        capture_output=True, text=True).stdout)
    for package in meta["packages"]:
        if package["name"] == "tiktoken-rs":
            return Path(package["manifest_path"]).parent / "assets" / "r50k_base.tiktoken"
    sys.exit("tiktoken-rs is not in cargo metadata")


WORDS = (
    "the of and to in is was for that on with as by it at from his her they be this have "
    "not are but had which one were all their there been has when who will more would if "
    "model train reward policy sample token prompt human ranking value gradient learning "
    "language network people annotator version compare dataset registry checkpoint batch "
    "quick brown fox jumps over lazy dog alignment preference instruction demonstration"
).split()
SYLLABLES = "ka lo mi ne ru sa ti vo ze pa qua stra ble tion ment ing er ly un re".split()
CODE = [
    "def {f}(self, {a}, {b}=None):\n    \"\"\"{w}.\"\"\"\n    if {b} is None:\n"
    "        {b} = {{}}\n    return [{a}[i] * 2 for i in range({n})]\n",
    "fn {f}(&mut self, {a}: &[i64]) -> Result<Vec<i64>, Error> {{\n"
    "\tlet {b} = {a}.iter().map(|x| x + {n}).collect::<Vec<_>>();\n\tOk({b})\n}}\n",
    "for (int i = 0; i < {n}; ++i) {{ {a}[i] += {b}[i] >> 2; }}  // {w}\n",
    "SELECT {a}, count(*) FROM {f} WHERE {b} >= {n} GROUP BY {a};\n",
    "<div class=\"{a}\">{w}</div>\n    <span id='{b}-{n}'>&nbsp;</span>\n",
]
EMOJI = ["🙂", "🚀", "👍🏽", "👨‍👩‍👧", "❤️", "🎉", "🤖", "✨", "🇫🇷", "😂"]
SPACES = ["\n\n", "   ", "\t\t", "  \n", "\n    \n", " " * 12, "\r\n", "\u3000"]


def corpus(seed):
    """A deterministic ~5 MB list of ~4 KB documents: English-like prose (contractions,
    numbers, punctuation), code, Chinese, emoji and runs of whitespace."""
    rng = random.Random(seed)
    made_up = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))
               for _ in range(3000)]

    def word():
        return rng.choice(WORDS) if rng.random() < 0.6 else rng.choice(made_up)

    def prose():
        sentences = []
        for _ in range(rng.randint(2, 6)):
            ws = [word() for _ in range(rng.randint(4, 18))]
            if rng.random() < 0.3:
                ws.insert(rng.randrange(len(ws)), rng.choice(["don't", "it's", "we'll",
                                                              "they're", "I'm", "you've"]))
            if rng.random() < 0.3:
                ws.insert(rng.randrange(len(ws)), str(rng.randint(0, 100000)))
            s = " ".join(ws)
            sentences.append(s[0].upper() + s[1:] + rng.choice([".", ".", "!", "?", ";", "..."]))
        return " ".join(sentences) + "\n"

    def code():
        return rng.choice(CODE).format(
            f=word() + "_" + word(), a=word(), b=word(), w=word(), n=rng.randint(1, 999))

    def chinese():
        chars = [chr(0x4E00 + rng.randrange(3000)) for _ in range(rng.randint(10, 60))]
        for i in range(5, len(chars), rng.randint(6, 12)):
            chars[i] = rng.choice("，。、！？")
        return "".join(chars) + "\n"

    def emoji():
        return " ".join(rng.choice(EMOJI) + word() for _ in range(rng.randint(2, 8))) + "\n"

    kinds = [prose] * 14 + [code] * 3 + [chinese] * 2 + [emoji]
    docs, total = [], 0
    while total < CORPUS_BYTES:
        parts, size = [], 0
        while size < DOC_BYTES:
            part = rng.choice(kinds)()
            if rng.random() < 0.15:
                part += rng.choice(SPACES)
            parts.append(part)
            size += len(part.encode("utf-8"))
        docs.append("".join(parts))
        total += size
    return docs


# --- plumbing ---------------------------------------------------------------------


def bench_env():
    """The environment of every side: THREADS threads, however it sets them."""
    return dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS),
                TOKENIZERS_PARALLELISM="false")


def run(cmd):
    """Runs a preparation step (not a measurement)."""
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, env=bench_env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def run_training_pair(command, model_dir, data, batch, steps, reps):
    """`run_pair` of a training benchmark (`sft`, `reward`): `steps` optimizer steps of
    `batch` on `data` per repetition, the peer tokenizing with GPT-2's BPE."""
    common = [command, *timing(reps), "--model", str(model_dir), "--data", str(data),
              "--batch-size", str(batch), "--steps-per-rep", str(steps)]
    return run_pair([str(PLUMB_BENCH), *common],
                    [*PEER, *common, "--ranks", str(tiktoken_ranks_path())], reps)


def run_pair(plumb_cmd, peer_cmd, reps):
    """Runs plumb's and the peer's side of one benchmark, taking turns, and returns their
    JSON reports.

    Both processes load and warm up, then wait (`--paired`); the timed repetitions then
    alternate, plumb then peer, peer then plumb, and so on. Only one side runs at a time,
    and other work on a shared machine slows both sides' repetitions alike instead of
    landing on whichever side happened to run at that moment.
    """
    reps = REPS or reps
    sides = {}
    for name, cmd in (("plumb", plumb_cmd), ("peer", peer_cmd)):
        cmd = [*cmd, "--paired"]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        stderr = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(cmd, env=bench_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        sides[name] = (proc, stderr)
    for name in sides:
        read_line(sides, name, lambda line: line == "ready")
    load = os.getloadavg()[0]
    for rep in range(reps):
        for name in ("plumb", "peer") if rep % 2 == 0 else ("peer", "plumb"):
            proc = sides[name][0]
            proc.stdin.write("go\n")
            proc.stdin.flush()
            read_line(sides, name, is_number)
    reports = {}
    for name, (proc, stderr) in sides.items():
        # Not `communicate`, which reads the pipe itself and would lose what `read_line`'s
        # buffered reads already took from it (the report, when it follows the last
        # repetition's line closely).
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait(timeout=600)
        if proc.returncode != 0:
            fail(sides, name)
        report = json.loads(out.strip().splitlines()[-1])
        # The fastest repetition beside the median, and the machine's load: other work
        # on the machine shows up as a median far above the minimum.
        report["min_s"] = min(report["times"])
        report["load_average_at_start"] = round(load, 2)
        print("  %s: median %.4f s over %d reps, peak RSS %s MiB" % (
            name, report["median_s"], len(report["times"]), mib(report.get("peak_rss_kb"))),
            file=sys.stderr, flush=True)
        reports[name] = report
    return reports["plumb"], reports["peer"]


def read_line(sides, name, wanted):
    """Reads `name`'s stdout up to a line that `wanted` accepts (skipping any others)."""
    proc = sides[name][0]
    while True:
        line = proc.stdout.readline()
        if not line:
            fail(sides, name)
        if wanted(line.strip()):
            return line.strip()


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def fail(sides, name):
    """Stops both sides and exits with the failed side's stderr."""
    for proc, _ in sides.values():
        if proc.poll() is None:
            proc.kill()
    proc, stderr = sides[name]
    proc.wait()
    stderr.seek(0)
    sys.exit(f"{name} side failed ({proc.returncode}): {' '.join(proc.args)}\n"
             f"{stderr.read()[-4000:]}")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_json(path, value, indent=None):
    path.write_text(json.dumps(value, indent=indent, ensure_ascii=False))
    return path


def mib(kb):
    return "?" if kb is None else f"{kb / 1024:.0f}"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def peer_versions():
    import tiktoken
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "tiktoken": tiktoken.__version__}


def markdown_table(results, env):
    lines = [
        "# plumb benchmarks",
        "",
        f"{env['date']}, {env['cpu']}, {env['threads']} threads per side "
        f"(load average {env['load_average_before']} before, {env['load_average_after']} after), "
        f"torch {env['versions']['torch']}, transformers {env['versions']['transformers']}, "
        f"TRL {env['versions']['trl']}, tiktoken {env['versions']['tiktoken']}. Median of the "
        "timed repetitions; see the JSON files beside this one for every timing and check. "
        "Peak RSS: each process's VmHWM, model loading included.",
        "",
        "| benchmark | config | plumb | peer | ratio plumb/peer | goal | peak RSS plumb / peer | met? |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        show, u = r.get("show", r["metric"]), r["unit"]
        met = "yes" if r["met"] else "no"
        why = [w for w, bad in (("speed", not r.get("speed_met", r["met"])),
                                ("memory", not r.get("memory_met", True)),
                                ("ids differ!", "MISMATCH" in r["checks"]),
                                ("tokens differ!", r["checks"].get("same_tokens") is False)) if bad]
        if why and not r["met"]:
            met += f" ({', '.join(why)})"
        goal = f"≥ {r['goal']:.1f}×" if r["goal"] is not None else "none (measured)"
        if r.get("memory_goal"):
            goal += f", RSS ≤ {r['memory_goal']:.1f}×"
        rss = f"{mib(r['plumb'].get('peak_rss_kb'))} / {mib(r['peer_result'].get('peak_rss_kb'))} MiB"
        if r.get("memory_ratio"):
            rss += f" ({r['memory_ratio']:.2f}×)"
        config = r["config"] + (f"; {r['notes']}" if r.get("notes") else "")
        lines.append(
            f"| {r['name']} | {config} | {fmt(r['plumb'][show])} {u} | "
            f"{fmt(r['peer_result'][show])} {u} | {r['ratio']:.2f}× | {goal} | {rss} | {met} |")
    # The scaling bench's sides are runs of plumb itself, which record no load of their own.
    busy = max(max(r["plumb"].get("load_average_at_start", 0.0),
                   r["peer_result"].get("load_average_at_start", 0.0)) for r in results)
    if busy > env["cores"] + 1:
        lines += ["", f"**Warning**: the machine was busy with other work (load average up to "
                      f"{busy:.1f} on {env['cores']} cores); these numbers are noisy. Rerun on a "
                      "quiet machine. Ratios of the fastest repetitions: "
                      + ", ".join(f"{r['name']} {r['ratio_of_fastest_reps']:.2f}×"
                                  for r in results) + "."]
    lines += ["", "Peers: " + "; ".join(sorted({f"{r['benchmark']}: {r['peer']}" for r in results})),
              ""]
    return "\n".join(lines)


def fmt(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


if __name__ == "__main__":
    main()
