"""Preference and RL stages against TRL (issue 19): `plumb dpo`, `plumb rloo` and
`plumb grpo` against TRL's DPOTrainer, RLOOTrainer and GRPOTrainer (no vLLM), on the
same checkpoint, data and batch, on the CPU.

`bench_dpo(model_dir, corpus_ids, enc)`, `bench_rloo(model_dir, rm_dir, corpus_ids, enc)`
and `bench_grpo(...)` each return one record in the shape of bench/run.py's `result`
(its `main` writes them as bench/results/<name>.json). Run alone, this file runs all
three and writes their records itself:

    python bench/preference.py [dpo,rloo,grpo]   (after `cargo build --release`)

plumb's side is the stage's command itself, run as a user runs it, in its own process.
It writes one `metrics.jsonl` line at the end of each optimizer step. TRL's side times
its steps with a callback at `on_step_end` (bench/peer.py). Both run at once but take
turns step by step (`run_turns`): plumb is paused (SIGSTOP) when a step's line appears
and resumed for its next step, whose time runs from resuming it to its line appearing.
On both sides the first step is a warm-up and is not timed, and nothing before it is
(loading, tokenizing, DPO's reference log-probs). Each side has THREADS intra-op
threads.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (bench/run.py, beside this file)

# tiny preset: DPO on 8 pairs a step; RLOO / GRPO on 4 prompts x 4 samples of up to 32
# tokens a step, one optimizer step on all 16.
DPO_BATCH, DPO_BETA, DPO_LR = 8, 0.1, 3e-5
RL_PROMPTS, RL_K, RL_NEW_TOKENS, RL_LR = 4, 4, 32, 1e-5
WARMUP, REPS = 1, 6


def bench_dpo(model_dir, corpus_ids, enc, preset="tiny"):
    """DPO optimizer steps on one batch of pairs; pairs/s."""
    name = f"dpo_{preset}_b{DPO_BATCH}"
    reps = bench.REPS or REPS
    pairs = bench.write_jsonl(bench.WORK / f"{name}.pairs.jsonl",
                              bench.comparisons(corpus_ids, enc, DPO_BATCH, seed=300))
    steps = WARMUP + reps
    # Every pair trains (none held out), no evaluation or checkpoint inside the loop, no
    # warm-up of the rate (TRL's constant rate): only the optimizer steps are timed.
    config = write_config(name, val_fraction=0.0, eval_every=0, checkpoint_every=0,
                          warmup_steps=0, final_lr_ratio=1.0)
    plumb, peer = run_turns(
        ["dpo", "--policy", str(model_dir), "--data", str(pairs), "--config", str(config),
         "--batch-size", str(DPO_BATCH), "--steps", str(steps), "--beta", str(DPO_BETA),
         "--lr", str(DPO_LR), "--seed", "0", "--device", "cpu"],
        ["dpo", "--model", str(model_dir), "--data", str(pairs), "--batch-size", str(DPO_BATCH),
         "--beta", str(DPO_BETA), "--lr", str(DPO_LR)], reps)
    plumb["losses"] = [m.get("loss/dpo") for m in plumb["metrics"]]
    plumb["pairs_per_s"] = DPO_BATCH / plumb["median_s"]
    checks = {
        # Step 0's policy is the reference: both losses are ln 2 = 0.6931.
        "first_loss": {"plumb": plumb["losses"][0], "peer": peer["losses"][0]},
        "losses_finite": all(map(finite, plumb["losses"] + peer["losses"])),
        "reward_accuracy": {"plumb": plumb["report"].get("train_accuracy"),
                            "peer": peer.get("reward_accuracy_last_step")},
    }
    return bench.result(
        name, "dpo",
        f"{preset}, {DPO_BATCH} pairs (prompt, chosen, rejected: 16-64 tokens each) per step, "
        f"β {DPO_BETA}, lr {DPO_LR} constant, sigmoid loss, reference log-probs computed once "
        f"before training on both sides, no dropout, AdamW + clip 1.0; {reps} timed steps",
        "TRL DPOTrainer (precompute_ref_log_probs, float32, no gradient checkpointing)",
        plumb, peer, "pairs_per_s", "pairs/s", goal=1.0, checks=checks, memory_goal=1.1)


def bench_rloo(model_dir, rm_dir, corpus_ids, enc, preset="tiny"):
    return bench_rl("rloo", model_dir, rm_dir, corpus_ids, enc, preset, kl_coef=0.05)


def bench_grpo(model_dir, rm_dir, corpus_ids, enc, preset="tiny"):
    return bench_rl("grpo", model_dir, rm_dir, corpus_ids, enc, preset, kl_coef=0.04)


def bench_rl(stage, model_dir, rm_dir, corpus_ids, enc, preset, kl_coef):
    """One RLOO / GRPO step: sample RL_K completions of each of RL_PROMPTS prompts,
    score them with the reward model, the reference's log-probs, one optimizer step on
    all of them; seconds per step."""
    name = f"{stage}_step_{preset}_b{RL_PROMPTS}x{RL_K}"
    reps = bench.REPS or REPS
    steps = WARMUP + reps
    prompts = bench.write_jsonl(bench.WORK / f"{stage}.prompts.jsonl", rl_prompts(corpus_ids, enc, 64))
    config = write_config(name, minibatch_size=RL_PROMPTS * RL_K, update_epochs=1,
                          checkpoint_every=0, eval_every=0, temperature=1.0, warmup_steps=0,
                          final_lr_ratio=1.0)
    group = ["--k", str(RL_K)] if stage == "rloo" else ["--group-size", str(RL_K)]
    plumb, peer = run_turns(
        [stage, "--policy", str(model_dir), "--reward", str(rm_dir), "--prompts", str(prompts),
         "--config", str(config), *group, "--batch-size", str(RL_PROMPTS),
         "--max-new-tokens", str(RL_NEW_TOKENS), "--kl-coef", str(kl_coef), "--lr", str(RL_LR),
         "--steps", str(steps), "--seed", "0", "--device", "cpu"],
        [stage, "--policy", str(model_dir), "--reward", str(rm_dir), "--prompts", str(prompts),
         "--batch-size", str(RL_PROMPTS), "--k", str(RL_K), "--max-new-tokens", str(RL_NEW_TOKENS),
         "--kl-coef", str(kl_coef), "--lr", str(RL_LR)], reps)
    plumb["losses"] = [m.get("loss/policy") for m in plumb["metrics"]]
    plumb["steps_per_s"] = 1 / plumb["median_s"]
    lengths = [m.get("response/length") for m in plumb["metrics"]]
    checks = {
        "losses_finite": all(map(finite, plumb["losses"] + peer["losses"])),
        "last_loss": {"plumb": plumb["losses"][-1], "peer": peer["losses"][-1]},
        # A sample stops at EOS on both sides; with random weights EOS is about 1 token
        # in 50,257, so nearly every response is RL_NEW_TOKENS long on both.
        "mean_response_length": {"plumb": lengths[-1] if lengths else None,
                                 "peer": peer.get("mean_completion_length")},
        # plumb's own timers of the parts of a step (metrics.jsonl's time/*), but for
        # generation: plumb is paused between steps, as generation starts, so its own
        # generation timer holds the pause.
        "plumb_step_parts_s": step_parts(plumb["metrics"]),
    }
    return bench.result(
        name, stage,
        f"{preset}, {RL_PROMPTS} prompts of 16 tokens x {RL_K} samples of up to {RL_NEW_TOKENS} "
        f"tokens (temperature 1, no top-k / top-p), reward model + frozen reference, KL "
        f"coefficient {kl_coef}, one optimizer step on all {RL_PROMPTS * RL_K} samples per step "
        f"(1 epoch), lr {RL_LR}, no dropout; {reps} timed steps",
        f"TRL {'RLOOTrainer' if stage == 'rloo' else 'GRPOTrainer (loss_type grpo)'}, "
        "transformers generate, no vLLM, float32",
        plumb, peer, "steps_per_s", "s/step", goal=1.5, checks=checks, memory_goal=None,
        show="median_s")


def rl_prompts(corpus_ids, enc, n):
    """`n` prompts {"prompt"} of 16 corpus tokens each, decoded to text."""
    import random

    rng = random.Random(1900)
    out = []
    for _ in range(n):
        s = rng.randrange(len(corpus_ids) - bench.PROMPT_TOKENS)
        out.append({"prompt": enc.decode(corpus_ids[s:s + bench.PROMPT_TOKENS])})
    return out


def step_parts(metrics):
    """Median seconds of each `time/*` part of plumb's timed steps."""
    keys = sorted({k for m in metrics[WARMUP:] for k in m
                   if k.startswith("time/") and k != "time/generation"})
    return {k: statistics.median(m[k] for m in metrics[WARMUP:] if k in m) for k in keys}


def finite(x):
    return x is not None and x == x and abs(x) != float("inf")


def write_config(name, **settings):
    """A stage's TOML settings file in bench/.work."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path = bench.WORK / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_turns(plumb_args, peer_args, reps):
    """Runs `plumb PLUMB_ARGS --out DIR` and `peer.py PEER_ARGS --paired` side by side,
    taking turns step by step, and returns both reports.

    plumb's command cannot wait for a turn, so it is paused (SIGSTOP) as soon as a step's
    `metrics.jsonl` line appears, and resumed (SIGCONT) for its next step: each of its
    timed steps is the time from resuming it to the step's line appearing (polled every
    2 ms). The peer waits for a line on stdin before each timed step, as in run.py's
    `run_pair`. Only one side runs at a time, plumb then peer, peer then plumb, and so
    on, so that other work on a shared machine slows both alike.
    """
    with tempfile.TemporaryDirectory(dir=bench.WORK) as tmp:
        out = Path(tmp) / "run"
        plumb_cmd = [str(bench.PLUMB), *plumb_args, "--out", str(out)]
        peer_cmd = [*bench.PEER, peer_args[0], *bench.timing(reps), *peer_args[1:],
                    "--ranks", str(bench.tiktoken_ranks_path()), "--paired"]
        for cmd in (plumb_cmd, peer_cmd):
            print("$", " ".join(cmd), file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        plumb_out, plumb_err = tempfile.TemporaryFile(mode="w+"), tempfile.TemporaryFile(mode="w+")
        plumb = Plumb(subprocess.Popen(plumb_cmd, env=bench.bench_env(), stdout=plumb_out,
                                       stderr=plumb_err, text=True), out / "metrics.jsonl", plumb_err)
        peer_err = tempfile.TemporaryFile(mode="w+")
        peer = subprocess.Popen(peer_cmd, env=bench.bench_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=peer_err, text=True)
        try:
            plumb.wait_for_line(WARMUP)  # its warm-up steps, then it is paused
            peer_line(peer, peer_err, lambda line: line == "ready")
            plumb_times = []
            for rep in range(reps):
                for side in ("plumb", "peer") if rep % 2 == 0 else ("peer", "plumb"):
                    if side == "plumb":
                        plumb_times.append(plumb.step(WARMUP + rep + 1))
                    else:
                        peer.stdin.write("go\n")
                        peer.stdin.flush()
                        peer_line(peer, peer_err, bench.is_number)
            usage = plumb.finish()
            peer.stdin.close()
            peer_report = json.loads(peer.stdout.read().strip().splitlines()[-1])
            if peer.wait(timeout=600) != 0:
                raise SideFailed(f"peer side failed: {' '.join(peer_cmd)}", peer_err)
        except SideFailed as e:
            for proc in (plumb.proc, peer):
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
            e.stderr.seek(0)
            sys.exit(f"{e}\n{e.stderr.read()[-4000:]}")
        metrics = [json.loads(line) for line in plumb.metrics_path.read_text().splitlines() if line.strip()]
        plumb_out.seek(0)
        report = json.loads(plumb_out.read().strip().splitlines()[-1])
    median = statistics.median(plumb_times)
    plumb_report = {
        "times": plumb_times,
        "median_s": median,
        "min_s": min(plumb_times),
        "metrics": metrics,
        "report": report,
        "peak_rss_kb": usage.ru_maxrss,
        "threads": bench.THREADS,
        "load_average_at_start": round(load, 2),
    }
    peer_report["min_s"] = min(peer_report["times"])
    peer_report["load_average_at_start"] = round(load, 2)
    for name, r in (("plumb", plumb_report), ("peer", peer_report)):
        print("  %s: median %.4f s over %d steps, peak RSS %s MiB" % (
            name, r["median_s"], len(r["times"]), bench.mib(r["peak_rss_kb"])), file=sys.stderr)
    return plumb_report, peer_report


class SideFailed(Exception):
    def __init__(self, message, stderr):
        super().__init__(message)
        self.stderr = stderr


class Plumb:
    """A running `plumb` stage, paused and resumed step by step (see `run_turns`)."""

    def __init__(self, proc, metrics_path, stderr):
        self.proc, self.metrics_path, self.stderr = proc, metrics_path, stderr
        self.usage = None

    def lines(self):
        return self.metrics_path.read_bytes().count(b"\n") if self.metrics_path.exists() else 0

    def wait_for_line(self, n):
        """Waits until `metrics.jsonl` has `n` lines, then pauses the process; returns
        when the line appeared."""
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if self.lines() >= n:
                seen = time.perf_counter()
                if not pid:
                    os.kill(self.proc.pid, signal.SIGSTOP)
                    return seen
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                raise SideFailed(f"plumb side exited ({self.proc.returncode}) after "
                                 f"{self.lines()} steps, expected {n}: {' '.join(self.proc.args)}",
                                 self.stderr)
            time.sleep(0.002)

    def step(self, n):
        """Resumes the process for its step `n` (1-based) and returns its seconds."""
        started = time.perf_counter()
        os.kill(self.proc.pid, signal.SIGCONT)
        return self.wait_for_line(n) - started

    def finish(self):
        """Lets the process finish (saving the model) and returns its resource usage."""
        os.kill(self.proc.pid, signal.SIGCONT)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self.proc.returncode != 0:
            raise SideFailed(f"plumb side failed ({self.proc.returncode}): {' '.join(self.proc.args)}",
                             self.stderr)
        return usage


def peer_line(peer, stderr, wanted):
    """Reads the peer's stdout up to a line that `wanted` accepts."""
    while True:
        line = peer.stdout.readline()
        if not line:
            peer.wait()
            raise SideFailed(f"peer side exited ({peer.returncode}): {' '.join(peer.args)}", stderr)
        if wanted(line.strip()):
            return line.strip()


def main():
    which = sys.argv[1].split(",") if len(sys.argv) > 1 else ["dpo", "rloo", "grpo"]
    bench.WORK.mkdir(parents=True, exist_ok=True)
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    enc = bench.r50k_base(bench.tiktoken_ranks_path())
    corpus_ids = enc.encode_ordinary("".join(bench.corpus(seed=0)[:200]))
    model_dir = bench.checkpoint("tiny")
    records = []
    if "dpo" in which:
        records.append(bench_dpo(model_dir, corpus_ids, enc))
    rm = bench.reward_model(model_dir, "tiny", corpus_ids, enc) if {"rloo", "grpo"} & set(which) else None
    if "rloo" in which:
        records.append(bench_rloo(model_dir, rm, corpus_ids, enc))
    if "grpo" in which:
        records.append(bench_grpo(model_dir, rm, corpus_ids, enc))
    environment = {"cpu": bench.cpu_model(), "cores": os.cpu_count(), "threads": bench.THREADS,
                   "load_average": round(os.getloadavg()[0], 2), "versions": bench.peer_versions()}
    for record in records:
        record["environment"] = environment
        bench.write_json(bench.RESULTS / f"{record['name']}.json", record, indent=2)
        print(f"{record['name']}: plumb {record['plumb']['median_s']:.3f} s/step, peer "
              f"{record['peer_result']['median_s']:.3f} s/step, ratio {record['ratio']:.2f} "
              f"(goal {record['goal']}), RSS {bench.mib(record['plumb']['peak_rss_kb'])} / "
              f"{bench.mib(record['peer_result']['peak_rss_kb'])} MiB")


if __name__ == "__main__":
    main()
