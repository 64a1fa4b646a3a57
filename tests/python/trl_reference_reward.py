"""TRL's reward-model loss and transformers' sequence-classification rewards, for
plumb's reward-model parity test. Reads one JSON object on stdin, writes one on stdout.

  {"model": DIR, "pad_id": P, "pairs": [{"chosen": [ids], "rejected": [ids]}, ...]}
  -> {"rewards_chosen": [...], "rewards_rejected": [...], "loss": L}

DIR is a plumb reward-model checkpoint (transformer.* and score.* in model.safetensors).
It loads as GPT2ForSequenceClassification, which reads the score at each sequence's last
token that is not `pad_id`. transformers' GPT-2 score layer has no bias, so the rewards
add plumb's `score.bias`; TRL's loss, a function of reward differences, does not need it.
The batch is collated by TRL's DataCollatorForPreference and the loss is computed by
RewardTrainer.compute_loss itself (-log σ(r_chosen − r_rejected), mean over pairs).
"""

import json
import sys
from collections import defaultdict
from types import SimpleNamespace

import torch
from safetensors.torch import load_file
from transformers import GPT2ForSequenceClassification
from trl.trainer.reward_trainer import DataCollatorForPreference, RewardTrainer


def main():
    request = json.load(sys.stdin)
    model = GPT2ForSequenceClassification.from_pretrained(
        request["model"],
        num_labels=1,
        pad_token_id=request["pad_id"],
        attn_implementation="eager",
        dtype=torch.float32,
    )
    model.eval()
    bias = load_file(f"{request['model']}/model.safetensors")["score.bias"].item()

    collator = DataCollatorForPreference(pad_token_id=request["pad_id"])
    batch = collator(
        [{"chosen_ids": p["chosen"], "rejected_ids": p["rejected"]} for p in request["pairs"]]
    )
    # What compute_loss reads of its trainer, in evaluation mode.
    trainer = SimpleNamespace(
        model=model,
        args=SimpleNamespace(center_rewards_coefficient=None),
        accelerator=SimpleNamespace(gather=lambda t: t, gather_for_metrics=lambda t: t),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    with torch.no_grad():
        loss = RewardTrainer.compute_loss(trainer, model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    chosen, rejected = torch.chunk(logits.squeeze(-1) + bias, chunks=2)
    json.dump(
        {"rewards_chosen": chosen.tolist(), "rewards_rejected": rejected.tolist(), "loss": loss.item()},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
