"""The peers' side of `make bench`: the same work as `plumb-bench`, in Python.

    peer.py generate   --model DIR --prompts FILE [--new-tokens N]   (transformers)
    peer.py train-step --model DIR --inputs FILE  [--lr LR]          (PyTorch eager)
    peer.py tokenize   --docs FILE --ranks FILE [--ids-out FILE]     (tiktoken)

Each subcommand takes the same inputs as its `plumb-bench` twin and prints the same
JSON object (times of the timed repetitions, their median, throughput, peak RSS). It runs
in a process of its own so that its peak RSS and thread settings are its own.
"""

import argparse
import json
import statistics
import sys
import time


PAIRED = False


def timed(work, warmup, reps):
    """Runs `work` `warmup` times untimed, then `reps` times timed; returns the seconds.

    With --paired it takes turns with plumb-bench as `plumb-bench --paired` does: prints
    `ready` after the warm-up, waits for a line on stdin before each timed repetition
    and prints its seconds after it.
    """
    for _ in range(warmup):
        work()
    if PAIRED:
        print("ready", flush=True)
    times = []
    for _ in range(reps):
        if PAIRED and not sys.stdin.readline():
            raise SystemExit("--paired: stdin closed before every repetition ran")
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
        if PAIRED:
            print(times[-1], flush=True)
    return times


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def load_json(path):
    with open(path) as f:
        return json.load(f)


def set_threads(n):
    import torch

    torch.set_num_threads(n)
    return torch


def load_hf(model_dir):
    import transformers

    # float32 as plumb computes on the CPU; sdpa attention, transformers' default.
    return transformers.GPT2LMHeadModel.from_pretrained(model_dir, dtype="float32")


def generate(args):
    torch = set_threads(args.threads)
    model = load_hf(args.model).eval()
    prompts = torch.tensor(load_json(args.prompts), dtype=torch.long)
    mask = torch.ones_like(prompts)
    # No EOS: generation runs to max_new_tokens, as `plumb generate --ignore-eos` does,
    # without min_new_tokens' logits processor changing which token greedy picks.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = model.config.eos_token_id
    out = {}

    def work():
        with torch.inference_mode():
            seqs = model.generate(
                input_ids=prompts,
                attention_mask=mask,
                max_new_tokens=args.new_tokens,
                do_sample=False,
                use_cache=True,
            )
        out["ids"] = seqs[:, prompts.shape[1]:].tolist()

    times = timed(work, args.warmup, args.reps)
    if any(len(s) != args.new_tokens for s in out["ids"]):
        raise SystemExit(f"transformers did not generate {args.new_tokens} tokens per prompt")
    median = statistics.median(times)
    batch = prompts.shape[0]
    return {
        "batch": batch,
        "new_tokens": args.new_tokens,
        "tokens_per_s": batch * args.new_tokens / median,
        "median_s": median,
        "times": times,
        "ids": out["ids"],
    }


def train_step(args):
    torch = set_threads(args.threads)
    model = load_hf(args.model).train()  # dropout as config.json sets it
    ids = torch.tensor(load_json(args.inputs), dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
    torch.manual_seed(0)
    losses = []

    def work():
        opt.zero_grad(set_to_none=True)
        # `labels` gives GPT-2's shifted LM cross-entropy, the loss plumb-bench computes.
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())

    times = timed(work, args.warmup, args.reps)
    median = statistics.median(times)
    b, t = ids.shape
    return {
        "batch": b,
        "seq": t,
        "tokens_per_s": b * t / median,
        "median_s": median,
        "times": times,
        "losses": losses,
    }


def r50k_base(ranks_path):
    """GPT-2's encoding, built from a local ranks file (tiktoken cannot download here)."""
    import tiktoken
    import tiktoken.load

    return tiktoken.Encoding(
        name="r50k_base",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(ranks_path)),
        special_tokens={"<|endoftext|>": 50256},
    )


def tokenize(args):
    docs = load_json(args.docs)
    enc = r50k_base(args.ranks)
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    out = {}

    def work():
        # One call per document on this thread, as plumb-bench does: no encode_batch.
        out["ids"] = [enc.encode_ordinary(d) for d in docs]

    times = timed(work, args.warmup, args.reps)
    if args.ids_out:
        with open(args.ids_out, "w") as f:
            json.dump(out["ids"], f)
    median = statistics.median(times)
    return {
        "documents": len(docs),
        "bytes": nbytes,
        "tokens": sum(map(len, out["ids"])),
        "mb_per_s": nbytes / 1e6 / median,
        "median_s": median,
        "times": times,
        "threads": 1,
    }


def main():
    # The options every subcommand takes, after its name as plumb-bench takes them.
    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--threads", type=int, default=2)
    timing.add_argument("--warmup", type=int, default=1)
    timing.add_argument("--reps", type=int, default=3)
    timing.add_argument("--paired", action="store_true")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate", parents=[timing])
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--new-tokens", type=int, default=64)
    p = sub.add_parser("train-step", parents=[timing])
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--lr", type=float, default=1e-4)
    p = sub.add_parser("tokenize", parents=[timing])
    p.add_argument("--docs", required=True)
    p.add_argument("--ranks", required=True)
    p.add_argument("--ids-out")
    args = parser.parse_args()
    global PAIRED
    PAIRED = args.paired
    run = {"generate": generate, "train-step": train_step, "tokenize": tokenize}[args.command]
    report = run(args)
    if args.command != "tokenize":
        import torch

        report["threads"] = torch.get_num_threads()
    report["peak_rss_kb"] = peak_rss_kb()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
