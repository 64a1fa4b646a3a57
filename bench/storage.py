"""Storage benchmarks: importing preference pairs into Postgres (issue 17) and the
artifact store on an S3-compatible bucket (issue 21).

`bench_data_import(corpus_ids, enc)`: 50,000 TRL preference pairs imported through
`labeling::imports::import` (what `plumb data import --format trl` runs) against a raw
`COPY` of the very rows it stored into the same tables, on bench/run.py's private
durable cluster (`plumb-bench-db import`). Goal: plumb ≥ 0.5× COPY's rows/s.

`bench_artifacts_s3(model_dir)`: a checkpoint directory stored into the artifact store
and fetched back, the local directory store against an `s3://` bucket on moto's server
on loopback (`plumb-bench artifacts`); MB/s each way. No goal: a measurement.

Each returns records in the shape of bench/run.py's `result`. Run alone:

    python bench/storage.py [data_import,artifacts_s3]   (after `cargo build --release`)
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (bench/run.py, beside this file)

IMPORT_PAIRS = 50_000
BUCKET = "plumb-bench"


def bench_data_import(corpus_ids, enc, pairs=IMPORT_PAIRS, reps=3):
    """TRL pairs/s and table rows/s through plumb's import against COPY of the same rows."""
    path = bench.WORK / f"import_trl_{pairs}.jsonl"
    if not path.exists():
        # Unique prompts (a counter in front), so every line is a new prompt, ranking
        # task, two samples and a ranking.
        rows = bench.comparisons(corpus_ids, enc, pairs, seed=1700)
        for i, row in enumerate(rows):
            row["prompt"] = f"[{i}] {row['prompt']}"
        bench.write_jsonl(path, rows)
    report, started_load = bench.run_db_bench(bench.PLUMB_BENCH_DB, "import", "--file", str(path),
                                              reps=bench.REPS or reps)
    for side in ("plumb", "raw"):
        report[side]["load_average_at_start"] = started_load
        report[side]["times"] = report[side]["times_s"]
    return bench.result(
        f"data_import_trl_{pairs // 1000}k", "data_import",
        f"{report['pairs']:,} TRL pairs ({report['file_bytes'] / 1e6:.0f} MB), {report['rows']:,} "
        f"rows in {len(report['rows_per_table'])} tables, one transaction, fresh database per "
        "repetition, durable cluster",
        "raw COPY FROM STDIN of the same rows (pre-rendered), one transaction",
        report["plumb"], report["raw"], "rows_per_s", "rows/s", goal=0.5,
        checks={"same_rows_both_sides": report["same_rows_both_sides"],
                "rows_per_table": report["rows_per_table"],
                "pairs_per_s": {"plumb": report["plumb"]["pairs_per_s"],
                                "raw": report["raw"]["pairs_per_s"]}})


def bench_artifacts_s3(model_dir, reps=3):
    """MB/s of storing `model_dir` into the store and fetching it back: an s3:// bucket on
    moto's server (loopback) against the local directory store. Two records: store, fetch."""
    work = bench.WORK / "artifacts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with MotoServer() as endpoint:
        env = dict(bench.bench_env(), PLUMB_ARTIFACTS=f"s3://{BUCKET}/bench", PLUMB_S3_ENDPOINT=endpoint,
                   PLUMB_S3_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="plumb",
                   AWS_SECRET_ACCESS_KEY="plumb-secret", AWS_REGION="us-east-1")
        cmd = [str(bench.PLUMB_BENCH), "artifacts", "--warmup", "1", "--reps", str(bench.REPS or reps),
               "--src", str(model_dir), "--work", str(work)]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            sys.exit(f"plumb-bench artifacts failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(work, ignore_errors=True)
    records = []
    for way in ("store", "fetch"):
        sides = {}
        for side in ("s3", "file"):
            r = report[side]
            sides[side] = {"mb_per_s": r[f"{way}_mb_per_s"], "median_s": r[f"{way}_median_s"],
                           "times": r[f"{way}_times"], "min_s": min(r[f"{way}_times"]),
                           "location": r["location"], "load_average_at_start": round(load, 2),
                           "peak_rss_kb": None}
        print(f"  {way}: s3 {sides['s3']['mb_per_s']:.0f} MB/s, file {sides['file']['mb_per_s']:.0f} MB/s",
              file=sys.stderr)
        records.append(bench.result(
            f"artifacts_{way}_s3", "artifacts",
            f"{way} a {report['bytes'] / 1e6:.0f} MB checkpoint ({model_dir.name}), digests checked; "
            "s3://: moto's server on loopback (Python, in memory), 16 MiB parts, 4 in flight",
            "the local directory store (file://), same checkpoint", sides["s3"], sides["file"],
            "mb_per_s", "MB/s", goal=None, checks={"bytes": report["bytes"]}))
    return records


class MotoServer:
    """moto's S3 server on a free loopback port with BUCKET created; stopped on exit."""

    def __enter__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=5)
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    sys.exit("moto's server did not start (is moto[server] in .venv? `make peers`)")
                time.sleep(0.2)
        return endpoint

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main():
    which = sys.argv[1].split(",") if len(sys.argv) > 1 else ["data_import", "artifacts_s3"]
    bench.WORK.mkdir(parents=True, exist_ok=True)
    records = []
    if "data_import" in which:
        enc = bench.r50k_base(bench.tiktoken_ranks_path())
        corpus_ids = enc.encode_ordinary("".join(bench.corpus(seed=0)[:200]))
        records.append(bench_data_import(corpus_ids, enc))
    if "artifacts_s3" in which:
        records += bench_artifacts_s3(bench.checkpoint("gpt2"))
    environment = {"cpu": bench.cpu_model(), "cores": os.cpu_count(),
                   "load_average": round(os.getloadavg()[0], 2)}
    for record in records:
        record["environment"] = environment
        bench.write_json(bench.RESULTS / f"{record['name']}.json", record, indent=2)
        print(f"{record['name']}: plumb {record['plumb'][record['metric']]:,.1f} {record['unit']}, "
              f"peer {record['peer_result'][record['metric']]:,.1f}, ratio {record['ratio']:.2f}")


if __name__ == "__main__":
    main()
