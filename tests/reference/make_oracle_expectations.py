#!/usr/bin/env python3
"""Expected greedy ids and log-probabilities for loom's oracle models, from Hugging Face transformers.

The models are the F32 and F16 GGUF files that loom's `make_oracle_models DIR` writes (tests/support/
oracle_models.cpp: llama, qwen2, qwen3 at head_dim 64, 96, 128, 256; 3 layers, 8 query / 2 KV
heads, uniform weights with standard deviation 0.25). This script reads them with its own small
GGUF reader (F32 tensors only), builds the same model in transformers (float32, eager attention),
and greedy-decodes 24 tokens after a fixed 12-token prompt, one full forward pass per step. For each
step it records the argmax id, its log-probability (log_softmax in float64 of the float32 logits)
and the gap between the top two logits; a prompt whose greedy path has a gap under MIN_TOP2_GAP is
redrawn with the next seed. Nothing of loom's computation is used.

  make_oracle_models DIR && make_oracle_expectations.py DIR -o tests/reference/oracle_expected.json

Needs torch and transformers (CPU is enough).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

PROMPT_LEN = 12
GENERATE = 24
PROMPT_SEED = 20261206
# The greedy path must not hinge on near-ties: a step whose top two logits are closer than this
# could flip within the CUDA backend's 1e-2 tolerance, so prompts are redrawn (next seed) until
# every step's gap is at least this.
MIN_TOP2_GAP = 0.02
MAX_PROMPT_TRIES = 50

# GGUF value types (the format's numbering) -> struct format; 8 = string, 9 = array.
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(path):
    """(metadata dict, {name: float32 array shaped (ne[-1], ..., ne[0])}) of a GGUF v3 file of F32
    and F16 tensors (F16 values widen to float32 exactly)."""
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def value(t):
        if t in SCALARS:
            return take(SCALARS[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")

    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    if version != 3:
        raise ValueError(f"{path}: GGUF version {version}, expected 3")
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        ne = [take("<Q") for _ in range(take("<I"))]
        ttype, offset = take("<I"), take("<Q")
        if ttype not in (0, 1):
            raise ValueError(f"{path}: tensor {name} has type {ttype}; this reader takes F32 (0) and F16 (1)")
        infos.append((name, ne, ttype, offset))
    align = meta.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, ttype, offset in infos:
        count = int(np.prod(ne))
        arr = np.frombuffer(data, dtype="<f4" if ttype == 0 else "<f2", count=count, offset=base + offset)
        tensors[name] = arr.reshape(list(reversed(ne))).astype(np.float32)
    return meta, tensors


def unpermute_rope_rows(w, n_head):
    """GGUF llama Q/K rows rotate adjacent pairs (2i, 2i+1) of each head; Hugging Face's rotate
    (i, i + head_dim/2). GGUF row 2i + j of a head is HF row j * head_dim/2 + i."""
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(rows, *w.shape[1:])


def build(meta, tensors):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM
    arch = meta["general.architecture"]
    p = arch + "."
    n_head, n_kv = meta[p + "attention.head_count"], meta[p + "attention.head_count_kv"]
    common = dict(vocab_size=tensors["token_embd.weight"].shape[0], hidden_size=meta[p + "embedding_length"],
                  intermediate_size=meta[p + "feed_forward_length"], num_hidden_layers=meta[p + "block_count"],
                  num_attention_heads=n_head, num_key_value_heads=n_kv, head_dim=meta[p + "attention.key_length"],
                  rms_norm_eps=meta[p + "attention.layer_norm_rms_epsilon"],
                  max_position_embeddings=meta[p + "context_length"], tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": meta[p + "rope.freq_base"]})
    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
               "qwen3": (Qwen3Config, Qwen3ForCausalLM)}
    config_cls, model_cls = classes[arch]
    config = config_cls(**common)
    config._attn_implementation = "eager"
    model = model_cls(config).float().eval()
    sd = {"model.embed_tokens.weight": tensors["token_embd.weight"], "model.norm.weight": tensors["output_norm.weight"],
          "lm_head.weight": tensors["output.weight"]}
    names = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
             "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
             "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
             "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
             "attn_v.bias": "self_attn.v_proj.bias", "attn_q_norm.weight": "self_attn.q_norm.weight",
             "attn_k_norm.weight": "self_attn.k_norm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
             "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight"}
    for name, arr in tensors.items():
        if not name.startswith("blk."):
            continue
        _, layer, suffix = name.split(".", 2)
        if arch == "llama" and suffix in ("attn_q.weight", "attn_k.weight"):
            arr = unpermute_rope_rows(arr, n_head if suffix == "attn_q.weight" else n_kv)
        sd[f"model.layers.{layer}.{names[suffix]}"] = arr
    expected = set(model.state_dict().keys())
    missing, extra = expected - set(sd), set(sd) - expected
    if missing or extra:
        raise ValueError(f"state dict mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=True)
    return model


def greedy(model, prompt):
    import torch
    ids = list(prompt)
    out, logprobs, gaps = [], [], []
    with torch.no_grad():
        for _ in range(GENERATE):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
            lp = torch.log_softmax(logits, dim=-1)
            top2 = torch.topk(logits, 2).values
            nxt = int(torch.argmax(logits).item())
            out.append(nxt)
            logprobs.append(float(lp[nxt].item()))
            gaps.append(float((top2[0] - top2[1]).item()))
            ids.append(nxt)
    return out, logprobs, gaps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="folder of the oracle GGUF files (make_oracle_models DIR)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    import torch
    import transformers
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    files = sorted(f for f in os.listdir(args.dir) if f.endswith(".gguf"))
    if not files:
        sys.exit(f"no .gguf files in {args.dir}")
    models = []
    for f in files:
        meta, tensors = read_gguf(os.path.join(args.dir, f))
        n_vocab = tensors["token_embd.weight"].shape[0]
        model = build(meta, tensors)
        for seed in range(PROMPT_SEED, PROMPT_SEED + MAX_PROMPT_TRIES):
            prompt = [int(x) for x in np.random.default_rng(seed).integers(0, n_vocab, PROMPT_LEN)]
            ids, logprobs, gaps = greedy(model, prompt)
            if min(gaps) >= MIN_TOP2_GAP:
                break
        else:
            sys.exit(f"{f}: no prompt in {MAX_PROMPT_TRIES} seeds keeps every top-2 gap >= {MIN_TOP2_GAP}")
        name = f[:-len(".gguf")]
        models.append({"name": name, "prompt_seed": seed, "prompt_ids": prompt, "ids": ids, "logprobs": logprobs,
                       "top2_gaps": gaps})
        print(f"{name}: prompt seed {seed}, ids {ids[:8]}..., min top-2 gap {min(gaps):.4f}, "
              f"mean logprob {np.mean(logprobs):.3f}")
    doc = {"made_by": "tests/reference/make_oracle_expectations.py",
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
           "generated_tokens": GENERATE, "min_top2_gap": MIN_TOP2_GAP, "models": models}
    with open(args.output, "w") as out:
        json.dump(doc, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
