"""The peers' side of `make bench`: the same work as `plumb-bench`, in Python.

    peer.py generate   --model DIR --prompts FILE [--new-tokens N]   (transformers)
    peer.py train-step --model DIR --inputs FILE  [--lr LR]          (PyTorch eager)
    peer.py sft        --model DIR --data FILE --ranks FILE ...      (TRL SFTTrainer)
    peer.py reward     --model DIR --data FILE --ranks FILE ...      (TRL RewardTrainer)
    peer.py ppo-step   --policy DIR --reward DIR --prompts FILE ...  (PyTorch + transformers)
    peer.py tokenize   --docs FILE --ranks FILE [--ids-out FILE]     (tiktoken)
    peer.py dpo        --model DIR --data FILE --ranks FILE ...      (TRL DPOTrainer)
    peer.py rloo       --policy DIR --reward DIR --prompts FILE ...  (TRL RLOOTrainer)
    peer.py grpo       --policy DIR --reward DIR --prompts FILE ...  (TRL GRPOTrainer)

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


# --- TRL's trainers ----------------------------------------------------------------
#
# A TRL trainer runs its own loop, so a repetition is timed from the end of one optimizer
# step to the end of the step `steps_per_rep` later (a callback at `on_step_end`): it holds
# everything the loop does per step (fetching and collating the batch, forward, loss,
# backward, clipping, AdamW, scheduler, callbacks) and none of `train()`'s set-up.


def trainer_turns(warmup, reps, steps_per_rep, times, mark):
    """The callback that times `reps` repetitions of `steps_per_rep` steps after `warmup`
    untimed ones, taking turns with plumb-bench under --paired as `timed` does. It calls
    `mark()` where each timed repetition starts and ends, and stops training after the
    last."""
    from transformers import TrainerCallback

    if warmup < 1:
        raise SystemExit("TRL's repetitions run from one step's end to another's: --warmup must be >= 1")

    class Turns(TrainerCallback):
        start = None

        def on_step_end(self, args, state, control, **kwargs):
            done = state.global_step - warmup * steps_per_rep
            if done < 0 or done % steps_per_rep:
                return
            if self.start is not None:
                times.append(time.perf_counter() - self.start)
                if PAIRED:
                    print(times[-1], flush=True)
            mark()
            if len(times) == reps:
                control.should_training_stop = True
                return
            if PAIRED:
                if not times:
                    print("ready", flush=True)
                if not sys.stdin.readline():
                    raise SystemExit("--paired: stdin closed before every repetition ran")
            self.start = time.perf_counter()

    return Turns()


class CountingCollator:
    """Passes batches through from the trainer's collator, counting their tokens: real
    (attention mask), with padding, and loss targets (labels past the first column)."""

    def __init__(self, inner):
        self.inner = inner
        self.real = self.padded = self.targets = 0

    def __call__(self, features):
        batch = self.inner(features)
        mask = batch["attention_mask"]
        self.real += int(mask.sum())
        self.padded += mask.numel()
        if "labels" in batch:
            self.targets += int((batch["labels"][:, 1:] != -100).sum())
        return batch

    def counts(self):
        return {"real": self.real, "padded": self.padded, "targets": self.targets}


def stub_tokenizer():
    """The trainers' `processing_class`. The data reach them already tokenized (by
    tiktoken, as plumb tokenizes), so it only names EOS (GPT-2's 50256) and the padding
    token: "!" (id 0), so that GPT2ForSequenceClassification, which reads the reward at
    the last token that is not padding, reads it at the EOS as plumb does (with EOS as
    padding it would read the token before)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"!": 0, "<|endoftext|>": 50256}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="!")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


EOS = 50256


def trainer_args(config_cls, args, steps, **overrides):
    """A TRL config with nothing but training: no evaluation, logging, saving or
    reporting, no gradient checkpointing, float32 on the CPU, batches in file order."""
    import tempfile

    return config_cls(
        output_dir=tempfile.mkdtemp(prefix="plumb-bench-"),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=args.lr,
        warmup_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        weight_decay=0.0,
        max_grad_norm=1.0,
        activation_checkpointing=False,  # TRL turns it (as gradient_checkpointing) on
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to=[],
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        train_sampling_strategy="sequential",
        max_length=None,
        seed=0,
        **overrides,
    )


def repeated(rows, args):
    """The dataset of every repetition in one epoch: each goes through the same batches,
    as plumb-bench's repetitions do. One more pass than the steps take, because
    accelerate's dataloader collates a batch ahead: a repetition then counts (and
    collates) a batch of the next one in place of its first, the same work."""
    from datasets import Dataset

    return Dataset.from_list(rows * (args.warmup + args.reps + 1))


def run_trainer(trainer_cls, model, config, dataset, args):
    """Trains `model` with `trainer_cls` (a TRL trainer) under the timing callback;
    returns the seconds of the timed repetitions, the tokens of the last one, counted as
    the collator made its batches (a step's batch is collated after the previous step's
    end, so within its repetition), and every step's loss."""
    from transformers import PrinterCallback

    losses = []

    class Trainer(trainer_cls):
        def compute_loss(self, *a, **kw):
            loss = super().compute_loss(*a, **kw)
            losses.append(loss.detach())
            return loss

    trainer = Trainer(model=model, args=config, train_dataset=dataset,
                      processing_class=stub_tokenizer())
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    trainer.remove_callback(PrinterCallback)  # it would print the run's summary on stdout
    times, marks = [], []
    trainer.add_callback(trainer_turns(args.warmup, args.reps, args.steps_per_rep, times,
                                       lambda: marks.append(counter.counts())))
    trainer.train()
    if len(times) != args.reps:
        raise SystemExit(f"the trainer stopped after {len(times)} of {args.reps} timed repetitions")
    return times, {k: marks[-1][k] - marks[-2][k] for k in marks[-1]}, [x.item() for x in losses]


def sft(args):
    set_threads(args.threads)
    from trl import SFTConfig, SFTTrainer

    enc = r50k_base(args.ranks)
    rows = []
    for d in read_jsonl(args.data)[: args.batch_size * args.steps_per_rep]:
        # prompt ++ response ++ EOS, the loss on the response and EOS: plumb's sequence.
        prompt = enc.encode_ordinary(d["prompt"])
        response = enc.encode_ordinary(d["response"]) + [EOS]
        rows.append({"input_ids": prompt + response,
                     "completion_mask": [0] * len(prompt) + [1] * len(response)})
    if len(rows) < args.batch_size * args.steps_per_rep:
        raise SystemExit(f"{len(rows)} demonstrations for {args.steps_per_rep} steps of {args.batch_size}")
    steps = (args.warmup + args.reps) * args.steps_per_rep
    dataset = repeated(rows, args)
    model = load_hf(args.model)  # dropout as config.json sets it; Trainer sets train mode
    config = trainer_args(SFTConfig, args, steps, lr_scheduler_type="cosine",
                          completion_only_loss=True, packing=False, padding_free=False)
    times, tokens, losses = run_trainer(SFTTrainer, model, config, dataset, args)
    median = statistics.median(times)
    return {
        "batch": args.batch_size,
        "steps_per_rep": args.steps_per_rep,
        "tokens_per_rep": tokens,
        "tokens_per_s": tokens["real"] / median,
        "median_s": median,
        "times": times,
        "losses": losses,
        "optimizer": config.optim,
    }


def reward(args):
    torch = set_threads(args.threads)
    import transformers
    from trl import RewardConfig, RewardTrainer

    enc = r50k_base(args.ranks)
    rows = []
    for d in read_jsonl(args.data)[: args.batch_size * args.steps_per_rep]:
        prompt = enc.encode_ordinary(d["prompt"])
        rows.append({
            "chosen_ids": prompt + enc.encode_ordinary(d["chosen"]) + [EOS],
            "rejected_ids": prompt + enc.encode_ordinary(d["rejected"]) + [EOS],
        })
    if len(rows) < args.batch_size * args.steps_per_rep:
        raise SystemExit(f"{len(rows)} pairs for {args.steps_per_rep} steps of {args.batch_size}")
    steps = (args.warmup + args.reps) * args.steps_per_rep
    dataset = repeated(rows, args)
    # The trunk with a new score head, as plumb's reward model starts.
    model = transformers.GPT2ForSequenceClassification.from_pretrained(
        args.model, num_labels=1, dtype=torch.float32)
    config = trainer_args(RewardConfig, args, steps, lr_scheduler_type="cosine_with_min_lr",
                          lr_scheduler_kwargs={"min_lr_rate": 0.1}, disable_dropout=True)
    times, tokens, losses = run_trainer(RewardTrainer, model, config, dataset, args)
    median = statistics.median(times)
    pairs = args.batch_size * args.steps_per_rep
    return {
        "batch": args.batch_size,
        "steps_per_rep": args.steps_per_rep,
        "pairs_per_rep": pairs,
        "tokens_per_rep": tokens,
        "pairs_per_s": pairs / median,
        "median_s": median,
        "times": times,
        "losses": losses,
        "optimizer": config.optim,
    }


# --- a PPO step in plain PyTorch --------------------------------------------------


def load_score_model(model_dir):
    """A reward (or value) model as plumb saves it: GPT-2's trunk and a linear head
    `score` (with bias) read at every position."""
    import torch
    import transformers
    from safetensors.torch import load_file

    class ScoreModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformers.GPT2Model.from_pretrained(model_dir, dtype="float32")
            self.score = torch.nn.Linear(self.transformer.config.n_embd, 1)
            weights = load_file(f"{model_dir}/model.safetensors")
            with torch.no_grad():
                self.score.weight.copy_(weights["score.weight"])
                self.score.bias.copy_(weights["score.bias"])

        def forward(self, ids):  # (B, T) → (B, T)
            return self.score(self.transformer(input_ids=ids).last_hidden_state).squeeze(-1)

    return ScoreModel()


# The parts of a PPO step, in its order: sampling, the reward model's scores, the
# policy's own log-probs of the rollout, the reference's, the value model's values, GAE
# and whitening, and the minibatch updates.
BREAKDOWN = ("generation", "scoring", "old_logprobs", "reference", "values", "advantages", "update")


def ppo_step(args):
    """One PPO iteration as plumb's `ppo::step` does it, written as one would in
    PyTorch: sample (transformers' generate), score, KL-penalised rewards, GAE, whitened
    advantages, `ppo_epochs` × minibatches of clipped policy and value updates, each
    model with its own AdamW. Dropout off everywhere, as in plumb (and
    lm-human-preferences). Every prompt has the same length and every response
    `new_tokens` tokens (generation does not stop at EOS), so no tensor here
    needs a mask."""
    torch = set_threads(args.threads)
    policy = load_hf(args.policy).eval()
    reference = load_hf(args.policy).eval().requires_grad_(False)
    reward_model = load_score_model(args.reward).eval().requires_grad_(False)
    value = load_score_model(args.reward).eval()
    # plumb's PpoConfig defaults.
    lr, kl_coef, gamma, lam, clip, vclip, vf_coef = 1e-5, 0.02, 1.0, 0.95, 0.2, 0.2, 0.1
    missing_eos_penalty, grad_clip = -1.0, 1.0
    adamw = {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-5, "weight_decay": 0.0}
    policy_opt = torch.optim.AdamW(policy.parameters(), **adamw)
    value_opt = torch.optim.AdamW(value.parameters(), **adamw)
    prompts = torch.tensor(load_json(args.prompts), dtype=torch.long)
    b, p = prompts.shape
    r = args.new_tokens
    policy.generation_config.eos_token_id = None  # every response is r tokens long
    policy.generation_config.pad_token_id = EOS
    chunk = args.minibatch_size

    def response_logits(model, ids):  # (B, P + R) → (B, R, V): positions predicting the response
        hidden = model.transformer(input_ids=ids).last_hidden_state[:, p - 1:p + r - 1]
        return model.lm_head(hidden)

    def logprobs_of(logits, ids):
        return logits.log_softmax(-1).gather(2, ids[:, p:].unsqueeze(2)).squeeze(2)

    def whiten(x):
        return (x - x.mean()) * torch.rsqrt(x.var(unbiased=False) + 1e-8)

    stats = []
    breakdowns = []

    def work():
        # Seconds of each part of the step, as plumb's StepStats splits it (`old_logprobs`:
        # the policy's forward pass over the rollout, which plumb takes from its sampler).
        parts = dict.fromkeys(BREAKDOWN, 0.0)
        clock = [time.perf_counter()]

        def lap(part):
            now = time.perf_counter()
            parts[part] += now - clock[0]
            clock[0] = now

        torch.manual_seed(len(stats))
        with torch.no_grad():
            ids = policy.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts),
                                  max_new_tokens=r, do_sample=True, temperature=1.0, top_k=0,
                                  top_p=1.0, use_cache=True)
        lap("generation")
        assert ids.shape == (b, p + r), ids.shape
        with torch.no_grad():
            scores, logprobs, ref_logprobs, entropy, values = [], [], [], [], []
            for i in range(0, b, chunk):
                mb = ids[i:i + chunk]
                scores.append(reward_model(mb)[:, -1])
                lap("scoring")
                logits = response_logits(policy, mb)
                logprobs.append(logprobs_of(logits, mb))
                logp = logits.log_softmax(-1)
                entropy.append(-(logp.exp() * logp).sum(-1))
                lap("old_logprobs")
                ref_logprobs.append(logprobs_of(response_logits(reference, mb), mb))
                lap("reference")
                values.append(value(mb)[:, p - 1:p + r - 1])
                lap("values")
            scores, logprobs, ref_logprobs, entropy, values = (
                torch.cat(x) for x in (scores, logprobs, ref_logprobs, entropy, values))
            scores = scores + missing_eos_penalty  # no response ends with EOS
            rewards = -kl_coef * (logprobs - ref_logprobs)
            rewards[:, -1] += scores
            advantages, last = [], torch.zeros(b)
            for t in reversed(range(r)):
                next_value = values[:, t + 1] if t + 1 < r else torch.zeros(b)
                last = rewards[:, t] + gamma * next_value - values[:, t] + gamma * lam * last
                advantages.append(last)
            advantages = torch.stack(advantages[::-1], 1)
            returns = advantages + values
            advantages = whiten(advantages)
        lap("advantages")
        sums = torch.zeros(5)
        for _ in range(args.ppo_epochs):
            for idx in torch.randperm(b).split(chunk):
                mb_ids = ids[idx]
                mb_logprobs = logprobs_of(response_logits(policy, mb_ids), mb_ids)
                log_ratio = mb_logprobs - logprobs[idx]
                ratio = log_ratio.exp()
                pg_losses = -advantages[idx] * ratio
                pg_losses_clipped = -advantages[idx] * ratio.clamp(1 - clip, 1 + clip)
                pg_loss = torch.max(pg_losses, pg_losses_clipped).mean()
                policy_opt.zero_grad()
                pg_loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
                policy_opt.step()

                mb_values = value(mb_ids)[:, p - 1:p + r - 1]
                old = values[idx]
                clipped = torch.max(torch.min(mb_values, old + vclip), old - vclip)
                vf_loss = 0.5 * torch.max((mb_values - returns[idx]) ** 2,
                                          (clipped - returns[idx]) ** 2).mean()
                value_opt.zero_grad()
                (vf_coef * vf_loss).backward()
                torch.nn.utils.clip_grad_norm_(value.parameters(), grad_clip)
                value_opt.step()
                with torch.no_grad():
                    clipfrac = (pg_losses_clipped > pg_losses).float().mean()
                    approx_kl = 0.5 * (log_ratio ** 2).mean()
                    sums += torch.stack([pg_loss, vf_loss, clipfrac, approx_kl, torch.tensor(1.0)])
        lap("update")
        with torch.no_grad():
            stats.append({
                "reward": scores.mean().item(),
                "kl": (logprobs - ref_logprobs).sum(1).mean().item(),
                "entropy": entropy.sum(1).mean().item(),
                "pg_loss": (sums[0] / sums[4]).item(),
                "approx_kl": (sums[3] / sums[4]).item(),
            })
        breakdowns.append(parts)

    times = timed(work, args.warmup, args.reps)
    median = statistics.median(times)
    timed_parts = breakdowns[args.warmup:]
    generation_shares = [parts["generation"] / t for parts, t in zip(timed_parts, times)]
    training_shares = [parts["update"] / t for parts, t in zip(timed_parts, times)]
    return {
        "batch": b,
        "prompt_tokens": p,
        "new_tokens": r,
        "minibatch_size": chunk,
        "ppo_epochs": args.ppo_epochs,
        "steps_per_s": 1 / median,
        "median_s": median,
        "times": times,
        "generation_share": statistics.median(generation_shares),
        "training_share": statistics.median(training_shares),
        "generation_shares": generation_shares,
        "breakdown": {part: statistics.median(parts[part] for parts in timed_parts)
                      for part in BREAKDOWN},
        "reward": stats[-1]["reward"],
        "kl": stats[-1]["kl"],
        "approx_kl": stats[-1]["approx_kl"],
    }



# --- TRL's preference and RL trainers: DPO, RLOO, GRPO ------------------------------
#
# plumb's side of these is the `plumb dpo` / `plumb rloo` / `plumb grpo` command itself
# (bench/preference.py), timed from one step's end to the next's as these are.


def hf_gpt2_tokenizer(ranks_path, pad_token="<|endoftext|>"):
    """GPT-2's BPE as a transformers fast tokenizer, built from the local ranks file
    (TikTokenConverter; the Hub is out of reach here): the same ids as tiktoken and
    plumb. The trainers tokenize the text prompts with it, and GRPO / RLOO re-tokenize
    prompt + completion with it for the reward model."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    tok = TikTokenConverter(vocab_file=str(ranks_path), pattern=pattern,
                            extra_special_tokens=["<|endoftext|>"]).converted()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token=pad_token)


def rl_trainer_args(config_cls, args, steps, **overrides):
    """A TRL config with nothing but training (no evaluation, logging, saving or
    reporting), float32 on the CPU, no gradient checkpointing, dropout off, AdamW
    β 0.9 / 0.999, no weight decay, gradient norm clipped to 1.0, a constant rate."""
    import tempfile

    return config_cls(
        output_dir=tempfile.mkdtemp(prefix="plumb-bench-"),
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to=[],
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        disable_dropout=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=0,
        **overrides,
    )


def timed_train(trainer, args):
    """Trains under the timing callback (`trainer_turns`, one step per repetition);
    returns the seconds of the timed steps, every step's loss and the trainer's own
    metrics of the last step (read as it computes the loss: `train()` clears them)."""
    from transformers import PrinterCallback

    losses, last_metrics = [], {}
    compute_loss = trainer.compute_loss

    def counting(*a, **kw):
        loss = compute_loss(*a, **kw)
        losses.append(loss.detach())
        last_metrics.update({k: v[-1] for k, v in trainer._metrics["train"].items()
                             if isinstance(v, list) and v})
        return loss

    trainer.compute_loss = counting
    trainer.remove_callback(PrinterCallback)
    times = []
    trainer.add_callback(trainer_turns(args.warmup, args.reps, 1, times, lambda: None))
    trainer.train()
    if len(times) != args.reps:
        raise SystemExit(f"the trainer stopped after {len(times)} of {args.reps} timed steps")
    return times, [x.item() for x in losses], last_metrics


def dpo(args):
    """TRL's DPOTrainer on {"prompt", "chosen", "rejected"} lines, `batch_size` pairs
    per step, the reference's log-probs computed once before training
    (`precompute_ref_log_probs`), as plumb's DPO computes them."""
    set_threads(args.threads)
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    rows = read_jsonl(args.data)
    if len(rows) < args.batch_size:
        raise SystemExit(f"{len(rows)} pairs for batches of {args.batch_size}")
    steps = args.warmup + args.reps
    # Every step trains on the same `batch_size` pairs, as plumb's does on a file of one
    # batch; one more pass than the steps take (accelerate collates a batch ahead).
    dataset = Dataset.from_list(rows[: args.batch_size] * (steps + 1))
    model = load_hf(args.model)
    config = rl_trainer_args(
        DPOConfig, args, steps, per_device_train_batch_size=args.batch_size, beta=args.beta,
        loss_type=["sigmoid"], precompute_ref_log_probs=True, adam_epsilon=1e-8,
        train_sampling_strategy="sequential", max_length=None)
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset,
                         processing_class=hf_gpt2_tokenizer(args.ranks))
    times, losses, metrics = timed_train(trainer, args)
    median = statistics.median(times)
    return {
        "batch": args.batch_size,
        "pairs_per_step": args.batch_size,
        "pairs_per_s": args.batch_size / median,
        "median_s": median,
        "times": times,
        "losses": losses,
        "reward_accuracy_last_step": metrics.get("rewards/accuracies"),
        "optimizer": config.optim,
        "config": {"beta": args.beta, "lr": args.lr, "loss_type": "sigmoid",
                   "precompute_ref_log_probs": True, "batch_size": args.batch_size,
                   "steps": steps},
    }


def rl_trainer(args, which):
    """TRL's RLOOTrainer or GRPOTrainer (no vLLM, on the CPU): each step samples
    `batch_size` prompts × `k` completions with transformers' generate, scores them with
    the reward model (plumb's, as GPT2ForSequenceClassification: the trunk and the
    `score` weight; its bias is a constant for every sample and is dropped), the
    reference's log-probs, and one optimizer step on all of them."""
    torch = set_threads(args.threads)
    import transformers
    from datasets import Dataset

    if which == "rloo":
        from trl import RLOOConfig as Config, RLOOTrainer as Trainer
        extra = {"beta": args.kl_coef, "normalize_advantages": False}
    else:
        from trl import GRPOConfig as Config, GRPOTrainer as Trainer
        # GRPO's loss as plumb's default: each sample's token losses averaged over its
        # length, then over samples, advantages scaled by the group's std.
        extra = {"beta": args.kl_coef, "loss_type": "grpo", "scale_rewards": "group",
                 "epsilon": 0.2}
    prompts = read_jsonl(args.prompts)
    steps = args.warmup + args.reps
    completions = args.batch_size * args.k
    dataset = Dataset.from_list([{"prompt": p["prompt"]} for p in prompts] * (steps + 1))
    model = load_hf(args.policy)
    reward_model = transformers.GPT2ForSequenceClassification.from_pretrained(
        args.reward, num_labels=1, dtype=torch.float32)
    # Pad with "!" (id 0), not EOS, so that the score is read at the EOS a completion ends
    # with, as plumb reads it.
    reward_model.config.pad_token_id = 0
    config = rl_trainer_args(
        Config, args, steps, per_device_train_batch_size=completions, num_generations=args.k,
        steps_per_generation=1, num_iterations=1, max_completion_length=args.max_new_tokens,
        temperature=1.0, top_k=0, top_p=1.0, adam_epsilon=1e-5, shuffle_dataset=False,
        mask_truncated_completions=False, log_completions=False, **extra)
    trainer = Trainer(model=model, reward_funcs=reward_model, args=config, train_dataset=dataset,
                      processing_class=hf_gpt2_tokenizer(args.ranks),
                      reward_processing_classes=hf_gpt2_tokenizer(args.ranks, pad_token="!"))
    times, losses, metrics = timed_train(trainer, args)
    median = statistics.median(times)
    return {
        "prompts_per_step": args.batch_size,
        "k": args.k,
        "completions_per_step": completions,
        "max_new_tokens": args.max_new_tokens,
        "steps_per_s": 1 / median,
        "median_s": median,
        "times": times,
        "losses": losses,
        "mean_completion_length": metrics.get("completions/mean_length"),
        "optimizer": config.optim,
        "config": {"kl_coef": args.kl_coef, "lr": args.lr, "k": args.k,
                   "prompts_per_step": args.batch_size, "max_new_tokens": args.max_new_tokens,
                   "steps": steps, **{k: v for k, v in extra.items() if k != "beta"}},
    }


def rloo(args):
    return rl_trainer(args, "rloo")


def grpo(args):
    return rl_trainer(args, "grpo")


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
    for name in ("sft", "reward"):
        p = sub.add_parser(name, parents=[timing])
        p.add_argument("--model", required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--ranks", required=True)
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--steps-per-rep", type=int, default=1)
        p.add_argument("--lr", type=float, default=1e-4 if name == "sft" else 1e-5)
    p = sub.add_parser("ppo-step", parents=[timing])
    p.add_argument("--policy", required=True)
    p.add_argument("--reward", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--minibatch-size", type=int, default=8)
    p.add_argument("--ppo-epochs", type=int, default=1)
    p = sub.add_parser("dpo", parents=[timing])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--ranks", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=3e-5)
    for name in ("rloo", "grpo"):
        p = sub.add_parser(name, parents=[timing])
        p.add_argument("--policy", required=True)
        p.add_argument("--reward", required=True)
        p.add_argument("--prompts", required=True)
        p.add_argument("--ranks", required=True)
        p.add_argument("--batch-size", type=int, default=4)
        p.add_argument("--k", type=int, default=4)
        p.add_argument("--max-new-tokens", type=int, default=32)
        p.add_argument("--kl-coef", type=float, default=0.05 if name == "rloo" else 0.04)
        p.add_argument("--lr", type=float, default=1e-5)
    p = sub.add_parser("tokenize", parents=[timing])
    p.add_argument("--docs", required=True)
    p.add_argument("--ranks", required=True)
    p.add_argument("--ids-out")
    args = parser.parse_args()
    global PAIRED
    PAIRED = args.paired
    run = {"generate": generate, "train-step": train_step, "sft": sft, "reward": reward,
           "ppo-step": ppo_step, "tokenize": tokenize, "dpo": dpo, "rloo": rloo,
           "grpo": grpo}[args.command]
    report = run(args)
    if args.command != "tokenize":
        import torch

        report["threads"] = torch.get_num_threads()
    report["peak_rss_kb"] = peak_rss_kb()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
