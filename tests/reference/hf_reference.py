#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers (float32) for a GGUF model, for loom to compare.

Runs wherever torch + transformers + gguf are installed (the GPU host has torch and transformers;
carry the `gguf` wheel). Nothing here uses loom.

  greedy: hf_reference.py greedy MODEL.gguf --prompt-ids 1 -n 128 -o ids.json
          greedy decoding (float32, CPU or GPU) -> {"prompt_ids", "ids", "versions"}
  logits: hf_reference.py logits MODEL.gguf --text TEXT --n-tokens 64 -o DIR
          tokenizes TEXT with the tokenizer transformers builds from the GGUF, keeps the first
          n tokens, and writes DIR/prompt.json ({"ids", "n_vocab", ...}) and DIR/logits.f32
          (n_tokens x n_vocab little-endian float32, one row per position).
  compact: hf_reference.py compact DIR -o FILE.json
          a small committed extract of DIR: per position the argmax, max |logit|, the 32 largest
          logits and 32 logits of ids drawn with a fixed seed (needs numpy only).
"""
import argparse
import json
import os
import sys

import numpy as np


def load(path, device):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    folder, name = os.path.split(os.path.abspath(path))
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    # A pad id of 0xFFFFFFFF (stories260K) means "none"; transformers rejects it as an embedding index.
    if config.pad_token_id is not None and config.pad_token_id >= config.vocab_size:
        config.pad_token_id = None
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=config, torch_dtype=torch.float32)
    return model.to(device).eval(), folder, name


def versions():
    import gguf
    import torch
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "gguf": getattr(gguf, "__version__", "unknown")}


def greedy(args, device):
    import torch
    model, _, _ = load(args.model, device)
    ids = torch.tensor([args.prompt_ids], device=device)
    out = []
    with torch.no_grad():
        past = None
        step_in = ids
        for _ in range(args.n):
            res = model(input_ids=step_in, past_key_values=past, use_cache=True)
            past = res.past_key_values
            nxt = int(torch.argmax(res.logits[0, -1].float()).item())
            out.append(nxt)
            step_in = torch.tensor([[nxt]], device=device)
    with open(args.output, "w") as f:
        json.dump({"model": os.path.basename(args.model), "prompt_ids": args.prompt_ids, "ids": out,
                   "versions": versions()}, f)
        f.write("\n")
    print(f"greedy: {len(out)} ids -> {args.output}")


def logits(args, device):
    import torch
    from transformers import AutoTokenizer
    model, folder, name = load(args.model, device)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    ids = tok.encode(args.text, add_special_tokens=False)
    if len(ids) < args.n_tokens:
        sys.exit(f"the text gives {len(ids)} tokens, fewer than {args.n_tokens}")
    ids = ids[: args.n_tokens]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()
    os.makedirs(args.output, exist_ok=True)
    out.astype("<f4").tofile(os.path.join(args.output, "logits.f32"))
    with open(os.path.join(args.output, "prompt.json"), "w") as f:
        json.dump({"model": name, "text": args.text, "ids": ids, "n_tokens": len(ids), "n_vocab": out.shape[1],
                   "argmax": out.argmax(axis=1).tolist(), "max_abs_logit": float(np.abs(out).max()),
                   "versions": versions()}, f)
    print(f"logits: {out.shape} -> {args.output}")


def compact(args):
    with open(os.path.join(args.dir, "prompt.json")) as f:
        prompt = json.load(f)
    full = np.fromfile(os.path.join(args.dir, "logits.f32"), dtype="<f4").reshape(prompt["n_tokens"], prompt["n_vocab"])
    rng = np.random.default_rng(20261123)
    rows = []
    for row in full:
        top = np.argsort(-row, kind="stable")[:32]
        drawn = rng.choice(prompt["n_vocab"], size=32, replace=False)
        ids = [int(i) for i in np.concatenate([top, drawn])]
        rows.append({"argmax": int(row.argmax()), "max_abs": float(np.abs(row).max()),
                     "ids": ids, "logits": [float(row[i]) for i in ids]})
    out = {k: prompt[k] for k in ("model", "text", "ids", "n_tokens", "n_vocab", "versions")}
    out["positions"] = rows
    with open(args.output, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"compact: {len(rows)} positions -> {args.output}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("greedy")
    g.add_argument("model")
    g.add_argument("--prompt-ids", type=int, nargs="+", required=True)
    g.add_argument("-n", type=int, default=128)
    g.add_argument("-o", "--output", required=True)
    l = sub.add_parser("logits")
    l.add_argument("model")
    l.add_argument("--text", required=True)
    l.add_argument("--n-tokens", type=int, default=64)
    l.add_argument("-o", "--output", required=True)
    c = sub.add_parser("compact")
    c.add_argument("dir")
    c.add_argument("-o", "--output", required=True)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.cmd == "compact":
        return compact(args)
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    (greedy if args.cmd == "greedy" else logits)(args, args.device)


if __name__ == "__main__":
    main()
