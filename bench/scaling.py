"""Data-parallel scaling: `plumb sft` and `plumb reward train` on 2 ranks x 1 thread
(`--nproc 2`, Gloo on loopback) against 1 process x 1 thread, on the same global batch.

`bench_scaling(model_dir, corpus_ids, enc)` returns one record per stage in the shape of
bench/run.py's `result` (its `main` writes them as bench/results/<name>.json); the
"peer" side of each record is plumb in one process. Run alone, this file writes the
records itself:

    python bench/scaling.py [PLUMB_BINARY]    (default target/release/plumb)

Each repetition is one run of the stage, the two sides taking turns; the speed is the
training loop's own (the report's tokens or pairs per second: after loading and, for 2
ranks, after the rendezvous), so start-up is left out on both sides alike. Scaling
efficiency is the speed-up over one process divided by the number of ranks: 1.0 when 2
ranks train twice as fast. The goal, 0.85, is issue 21's.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (bench/run.py, beside this file)

RANKS = 2
GOAL = 0.85


def bench_scaling(model_dir, corpus_ids, enc, plumb=None, batch=16, steps=4, reward_steps=16, reps=3):
    """SFT and reward-model training, 2 ranks x 1 thread against 1 process x 1 thread
    on `model_dir` (a bench/run.py checkpoint), `batch` examples per optimizer step and
    `steps` SFT steps (`reward_steps` RM steps, each a twentieth of an SFT step's time) per
    repetition, so that each repetition trains for seconds; one bench/run.py record for
    each."""
    plumb = Path(plumb or bench.PLUMB)
    reps = bench.REPS or reps
    work = bench.WORK / "scaling"
    work.mkdir(parents=True, exist_ok=True)
    demos = work / "demos.jsonl"
    bench.write_jsonl(demos, bench.demonstrations(corpus_ids, enc, batch * steps, seed=21))
    pairs = work / "pairs.jsonl"
    bench.write_jsonl(pairs, bench.comparisons(corpus_ids, enc, batch * reward_steps, seed=121))
    config = work / "stage.toml"
    # Every example trains (no held-out share, no evaluation) and nothing else is timed.
    config.write_text("val_fraction = 0.0\neval_every = 0\ncheckpoint_every = 0\n")
    stages = [
        ("sft", ["sft", "--data", str(demos), "--dropout", "0"], steps, "tokens_per_second", "tok/s"),
        ("reward", ["reward", "train", "--data", str(pairs)], reward_steps, "pairs_per_second", "pairs/s"),
    ]
    results = []
    for kind, args, steps, speed, unit in stages:
        args = [*args, "--model", str(model_dir), "--config", str(config),
                "--batch-size", str(batch), "--steps", str(steps), "--seed", "0", "--device", "cpu"]
        runs = {"one": [], "ranks": []}
        for rep in range(reps + 1):  # the first repetition warms the page cache, untimed
            order = ("one", "ranks") if rep % 2 == 0 else ("ranks", "one")
            for side in order:
                report = train(plumb, args, RANKS if side == "ranks" else None)
                if rep > 0:
                    runs[side].append(report)
        one, ranks = side_report(runs["one"], speed), side_report(runs["ranks"], speed)
        efficiency = ranks[speed] / (RANKS * one[speed])
        checks = {
            "same_final_loss": abs(one["train_loss"] - ranks["train_loss"]) < 1e-4,
            "train_loss": {"ranks": ranks["train_loss"], "one": one["train_loss"]},
            "efficiency_of_fastest_reps": max(ranks["speeds"]) / (RANKS * max(one["speeds"])),
            "speed_up": ranks[speed] / one[speed],
            # Whole runs' CPU time (start-up included), one process's over the ranks' sum:
            # below 1 by the work that data parallelism adds, whatever else the machine
            # runs; the wall-clock efficiency also needs a free core for each rank.
            "cpu_efficiency": statistics.median(one["cpu_times"]) / statistics.median(ranks["cpu_times"]),
            "load_average": round(os.getloadavg()[0], 2),
        }
        record = bench.result(
            f"scaling_{kind}_{RANKS}x1",
            "scaling",
            f"plumb {' '.join(args[:2] if kind == 'reward' else args[:1])}, {batch} per step, "
            f"{steps} steps per rep, {RANKS} ranks x 1 thread (Gloo, loopback) against "
            "1 process x 1 thread on the same global batch",
            "plumb in 1 process x 1 thread",
            ranks, one, speed, unit, goal=RANKS * GOAL, checks=checks,
            notes=f"scaling efficiency {efficiency:.2f} (goal {GOAL}): the speed-up over one "
                  f"process ({checks['speed_up']:.2f}) over {RANKS} ranks",
        )
        record["scaling_efficiency"] = efficiency
        record["scaling_goal"] = GOAL
        results.append(record)
        print(f"  scaling {kind}: 1 process {one[speed]:.1f} {unit}, {RANKS} ranks "
              f"{ranks[speed]:.1f} {unit}, efficiency {efficiency:.2f} (CPU time "
              f"{checks['cpu_efficiency']:.2f}, load {checks['load_average']})", file=sys.stderr, flush=True)
    return results


def train(plumb, args, nproc):
    """One run of a stage into a fresh directory, with one thread per process; its report."""
    with tempfile.TemporaryDirectory(dir=bench.WORK) as out:
        cmd = [str(plumb), *args, "--out", str(Path(out) / "run")]
        if nproc:
            cmd += ["--nproc", str(nproc)]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        started, cpu_before = time.perf_counter(), children_cpu_s()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        wall, cpu = time.perf_counter() - started, children_cpu_s() - cpu_before
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        report["wall_s"] = wall
        report["cpu_s"] = cpu
        return report


def children_cpu_s():
    """CPU seconds (user and system) of the finished child processes so far: a run's ranks
    count in it, since `plumb --nproc` waits for them."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def side_report(reports, speed):
    """One side's timings in bench/run.py's shape: `times` (each run's time in the stage,
    evaluation and set-up included), `median_s`, `min_s`, and `speed`, the training
    loop's work per second (the stage's report's), at the median."""
    times = [r["seconds"] for r in reports]
    speeds = [r[speed] for r in reports]
    return {
        "times": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "wall_times": [r["wall_s"] for r in reports],
        "cpu_times": [r["cpu_s"] for r in reports],
        "speeds": speeds,
        speed: statistics.median(speeds),
        "train_loss": reports[-1]["train_loss"],
        "threads": 1,
    }


def main():
    plumb = Path(sys.argv[1]) if len(sys.argv) > 1 else bench.PLUMB
    bench.WORK.mkdir(parents=True, exist_ok=True)
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    enc = bench.r50k_base(bench.tiktoken_ranks_path())
    corpus_ids = enc.encode_ordinary("".join(bench.corpus(seed=0)[:200]))
    model_dir = bench.WORK / "tiny-gpt2tok"
    if not (model_dir / "model.safetensors").exists():
        bench.run([str(plumb), "init", "--preset", "tiny", "--tokenizer", "gpt2", "--seed", "0",
                   "--out", str(model_dir)])
    environment = {"cpu": bench.cpu_model(), "cores": os.cpu_count(),
                   "load_average": round(os.getloadavg()[0], 2), "plumb": str(plumb)}
    for record in bench_scaling(model_dir, corpus_ids, enc, plumb=plumb):
        record["environment"] = environment
        bench.write_json(bench.RESULTS / f"{record['name']}.json", record, indent=2)
        print(f"{record['name']}: scaling efficiency {record['scaling_efficiency']:.2f}")


if __name__ == "__main__":
    main()
