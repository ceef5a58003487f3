#!/usr/bin/env python3
"""Independent numpy forward pass of Hugging Face LLaMA-family checkpoints (Llama, Mistral, Qwen2).

    python3 hf_llama_numpy.py logprobs MODEL_DIR IDS.json OUT.json

writes {"logprobs": [log p(ids[t+1] | ids[..t]) for t = 0..T-2], "inv_freq": [...]}.

It shares no code with crepe and follows transformers' modeling_llama / modeling_mistral /
modeling_qwen2 and modeling_rope_utils (read, not imported; no torch needed):
  * config.json in either spelling: transformers 4.x (top-level rope_theta, rope_scaling with
    "type" or "rope_type", torch_dtype) or 5.x (rope_parameters {rope_type, rope_theta, ...},
    dtype); rope_scaling wins over rope_parameters, a theta inside the dict over the top-level one;
  * inv_freq in float32 as transformers computes it (default, linear, llama3), angles
    position * inv_freq in float32, rotate_half RoPE;
  * GQA, explicit head_dim, tied or untied classifier, q/k/v(/o/mlp) biases, Mistral's sliding
    window (a query sees keys kv > q - window), per-family defaults;
  * safetensors read by hand (8-byte length, JSON header, F32/F16/BF16), single file or sharded
    with model.safetensors.index.json.
Everything after the weights is float64.
"""
import json
import math
import os
import struct
import sys

import numpy as np

DEFAULTS = {  # transformers' LlamaConfig / MistralConfig / Qwen2Config defaults
    "llama": dict(max_position_embeddings=2048, rms_norm_eps=1e-6, sliding_window=None),
    "mistral": dict(max_position_embeddings=131072, rms_norm_eps=1e-6, sliding_window=4096),
    "qwen2": dict(max_position_embeddings=32768, rms_norm_eps=1e-6, sliding_window=None),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[base + b: base + end]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"dtype {e['dtype']}")
        out[name] = a.reshape(e["shape"]).astype(np.float64)
    return out


def load_weights(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        shards = sorted(set(json.load(open(index))["weight_map"].values()))
        w = {}
        for s in shards:
            w.update(read_safetensors(os.path.join(d, s)))
        return w
    return read_safetensors(os.path.join(d, "model.safetensors"))


def parse_config(c):
    t = c["model_type"]
    dflt = DEFAULTS[t]
    H = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or (32 if t == "qwen2" else H)
    hd = c.get("head_dim") or c["hidden_size"] // H
    rope = c.get("rope_scaling") or c.get("rope_parameters") or {}
    theta = rope.get("rope_theta", c.get("rope_theta", 10000.0))
    rtype = rope.get("rope_type", rope.get("type", "default"))
    if t == "mistral":
        window = c.get("sliding_window", dflt["sliding_window"])
    elif t == "qwen2":
        window = c.get("sliding_window") if c.get("use_sliding_window", False) else None
    else:
        window = None
    if t == "qwen2":
        biases = ["q", "k", "v"]
    elif t == "llama":
        biases = (["q", "k", "v", "o"] if c.get("attention_bias") else []) + (["gate", "up", "down"] if c.get("mlp_bias") else [])
    else:
        biases = []
    maxpos = c.get("max_position_embeddings", dflt["max_position_embeddings"])
    return dict(
        dim=c["hidden_size"], H=H, KV=kv, hd=hd, L=c["num_hidden_layers"], V=c["vocab_size"],
        eps=c.get("rms_norm_eps", dflt["rms_norm_eps"]), tied=c.get("tie_word_embeddings", False),
        theta=theta, rope=rope, rtype=rtype, maxpos=maxpos, window=window, biases=biases,
    )


def inv_freq(cfg):
    """modeling_rope_utils in float32: default, linear and llama3."""
    f32 = np.float32
    hd = cfg["hd"]
    exps = (np.arange(0, hd, 2, dtype=np.int64).astype(f32) / f32(hd)).astype(f32)
    inv = (f32(1.0) / np.power(f32(cfg["theta"]), exps, dtype=f32)).astype(f32)
    r, t = cfg["rope"], cfg["rtype"]
    if t == "default":
        return inv
    if t == "linear":
        return (inv / f32(r["factor"])).astype(f32)
    if t == "llama3":
        factor, low, high = f32(r["factor"]), f32(r["low_freq_factor"]), f32(r["high_freq_factor"])
        old = r.get("original_max_position_embeddings", cfg["maxpos"])
        low_wl = f32(old / r["low_freq_factor"])
        high_wl = f32(old / r["high_freq_factor"])
        wl = (f32(2 * math.pi) / inv).astype(f32)
        llama = np.where(wl > low_wl, inv / factor, inv).astype(f32)
        smooth = ((f32(old) / wl - low) / (high - low)).astype(f32)
        smoothed = ((f32(1) - smooth) * llama / factor + smooth * llama).astype(f32)
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        return np.where(medium, smoothed, llama).astype(f32)
    raise ValueError(f"rope type {t} not in the reference")


def rms(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def logprobs(d, ids):
    c = json.load(open(os.path.join(d, "config.json")))
    cfg = parse_config(c)
    w = load_weights(d)
    T = len(ids)
    H, KV, hd, dim = cfg["H"], cfg["KV"], cfg["hd"], cfg["dim"]
    inv = inv_freq(cfg)
    ang = (np.arange(T, dtype=np.float32)[:, None] * inv[None, :]).astype(np.float32)  # float32 like transformers
    emb = np.concatenate([ang, ang], axis=-1).astype(np.float64)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    q_idx, k_idx = np.arange(T)[:, None], np.arange(T)[None, :]
    visible = k_idx <= q_idx
    if cfg["window"] is not None:
        visible &= k_idx > q_idx - cfg["window"]
    mask = np.where(visible, 0.0, -np.inf)

    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}

    def lin(l, n, x):
        p = f"model.layers.{l}.{names[n]}"
        y = x @ w[p + ".weight"].T
        if n in cfg["biases"]:
            y = y + w[p + ".bias"]
        return y

    x = w["model.embed_tokens.weight"][ids]
    for l in range(cfg["L"]):
        xn = rms(x, w[f"model.layers.{l}.input_layernorm.weight"], cfg["eps"])
        q = lin(l, "q", xn).reshape(T, H, hd)
        k = lin(l, "k", xn).reshape(T, KV, hd)
        v = lin(l, "v", xn).reshape(T, KV, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // KV, axis=1)
        v = np.repeat(v, H // KV, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, H * hd)
        x = x + lin(l, "o", o)
        xn = rms(x, w[f"model.layers.{l}.post_attention_layernorm.weight"], cfg["eps"])
        g = lin(l, "gate", xn)
        x = x + lin(l, "down", g / (1 + np.exp(-g)) * lin(l, "up", xn))
    cls = w["model.embed_tokens.weight"] if cfg["tied"] else w["lm_head.weight"]
    logits = rms(x, w["model.norm.weight"], cfg["eps"]) @ cls.T
    m = logits.max(-1, keepdims=True)
    lp = logits - (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))
    return lp[np.arange(T - 1), np.asarray(ids[1:])], inv


def main():
    if len(sys.argv) != 5 or sys.argv[1] != "logprobs":
        raise SystemExit("usage: hf_llama_numpy.py logprobs MODEL_DIR IDS.json OUT.json")
    ids = json.load(open(sys.argv[3]))
    lp, inv = logprobs(sys.argv[2], ids)
    json.dump({"logprobs": [float(v) for v in lp], "inv_freq": [float(v) for v in inv]}, open(sys.argv[4], "w"))


if __name__ == "__main__":
    main()
