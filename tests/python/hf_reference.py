"""Reference results from Hugging Face transformers and OpenAI's tiktoken, for plumb's
parity tests. Reads JSON lines on stdin, writes JSON lines on stdout.

  make-checkpoint --out DIR [--seed S] [--vocab V] [--n-layer L] [--n-head H]
                  [--n-embd C] [--n-positions P] [--init-range R]
      a random GPT2LMHeadModel saved with save_pretrained (model.safetensors)
  logprobs --model DIR       {"ids"} -> {"logprobs"}: log p(ids[i+1] | ids[..=i])
  generate --model DIR --max-new-tokens N
                             all {"ids"} lines as one left-padded batch, greedy
                             -> {"ids"}: the new tokens, up to and including EOS
  tiktoken --ranks FILE      {"text"} -> {"ids"} with r50k_base built from FILE
"""

import argparse
import json
import sys

import torch


def read_lines():
    return [json.loads(line) for line in sys.stdin if line.strip()]


def write(record):
    sys.stdout.write(json.dumps(record) + "\n")


def make_checkpoint(args):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    config = GPT2Config(
        vocab_size=args.vocab,
        n_positions=args.n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        initializer_range=args.init_range,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(args.out)


def load(model_dir):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    return model


@torch.no_grad()
def logprobs(args):
    model = load(args.model)
    for record in read_lines():
        ids = torch.tensor([record["ids"]])
        logits = model(ids).logits.float()
        lp = torch.log_softmax(logits, dim=-1)[0, :-1].gather(1, ids[0, 1:, None])[:, 0]
        write({"logprobs": lp.tolist()})


@torch.no_grad()
def generate(args):
    model = load(args.model)
    eos = model.config.eos_token_id
    pad = eos  # any id: padded positions are masked
    prompts = [r["ids"] for r in read_lines()]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=args.max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    for row in out[:, width:].tolist():
        new = []
        for token in row:
            new.append(token)
            if token == eos:
                break
        write({"ids": new})


def tiktoken_encode(args):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    encoding = tiktoken.Encoding(
        name="r50k_base",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=load_tiktoken_bpe(args.ranks),
        special_tokens={"<|endoftext|>": 50256},
    )
    for record in read_lines():
        write({"ids": encoding.encode_ordinary(record["text"])})


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--n-positions", type=int, default=128)
    p.add_argument("--init-range", type=float, default=0.02)
    p = sub.add_parser("logprobs")
    p.add_argument("--model", required=True)
    p = sub.add_parser("generate")
    p.add_argument("--model", required=True)
    p.add_argument("--max-new-tokens", type=int, required=True)
    p = sub.add_parser("tiktoken")
    p.add_argument("--ranks", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    {
        "make-checkpoint": make_checkpoint,
        "logprobs": logprobs,
        "generate": generate,
        "tiktoken": tiktoken_encode,
    }[args.command](args)


if __name__ == "__main__":
    main()
