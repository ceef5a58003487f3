#!/usr/bin/env python3
"""Independent float32/float64 numpy implementation of the llama2.c forward pass.

Used two ways, by hand (see README "Verification"):
  * `logprobs MODEL.bin IDS.json OUT.json [--float64]`: per-position log p(next token) of one
    window, to check crepe's tfjs runtime against (agreement to 1e-4).
  * `bench MODEL.bin SEQLEN WINDOWS`: float32 eval throughput (tokens/s), the baseline that
    `npm run bench` compares crepe's wasm runtime with.
It shares no code with crepe: it follows llama2.c's model.py (complex-pair rotary embedding).
"""
import json
import struct
import sys
import time

import numpy as np


def load(path, dtype):
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", f.read(28))
        data = np.frombuffer(f.read(), dtype=np.float32)
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = data[off:off + n].reshape(shape).astype(dtype)
        off += n
        return a

    w = {}
    w["emb"] = take(vocab, dim)
    w["rms_att"] = take(n_layers, dim)
    w["wq"] = take(n_layers, n_heads * hd, dim)
    w["wk"] = take(n_layers, n_kv * hd, dim)
    w["wv"] = take(n_layers, n_kv * hd, dim)
    w["wo"] = take(n_layers, dim, n_heads * hd)
    w["rms_ffn"] = take(n_layers, dim)
    w["w1"] = take(n_layers, hidden, dim)
    w["w2"] = take(n_layers, dim, hidden)
    w["w3"] = take(n_layers, hidden, dim)
    w["rms_final"] = take(dim)
    take(seq_len, hd // 2)
    take(seq_len, hd // 2)
    w["cls"] = w["emb"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab, hd=hd)
    return cfg, w


def rmsnorm(x, g):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * g


def rope(x, T, hd, dtype):
    # x: [T, heads, hd]; rotate adjacent pairs (2i, 2i+1) like torch.view_as_complex in model.py
    freqs = 1.0 / (10000.0 ** (np.arange(0, hd, 2)[: hd // 2].astype(np.float64) / hd))
    ang = np.outer(np.arange(T), freqs)
    cos = np.cos(ang).astype(dtype)[:, None, :]
    sin = np.sin(ang).astype(dtype)[:, None, :]
    xr, xi = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = xr * cos - xi * sin
    out[..., 1::2] = xr * sin + xi * cos
    return out


def forward_logprobs(cfg, w, ids, dtype):
    lp = forward_logsoftmax(cfg, w, ids, dtype)
    return lp[np.arange(len(ids) - 1), ids[1:]]


def forward_logsoftmax(cfg, w, ids, dtype):
    """Log-softmax of the next-token logits at every position: [T, vocab]."""
    T = len(ids)
    H, KV, hd = cfg["n_heads"], cfg["n_kv"], cfg["hd"]
    x = w["emb"][ids]
    mask = np.triu(np.full((T, T), -np.inf, dtype=dtype), 1)
    for l in range(cfg["n_layers"]):
        xn = rmsnorm(x, w["rms_att"][l])
        q = rope((xn @ w["wq"][l].T).reshape(T, H, hd), T, hd, dtype)
        k = rope((xn @ w["wk"][l].T).reshape(T, KV, hd), T, hd, dtype)
        v = (xn @ w["wv"][l].T).reshape(T, KV, hd)
        rep = H // KV
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        att = np.matmul(q.transpose(1, 0, 2), k.transpose(1, 2, 0)) / dtype(np.sqrt(hd)) + mask  # [H, T, T]
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.matmul(att, v.transpose(1, 0, 2)).transpose(1, 0, 2).reshape(T, H * hd)
        x = x + o @ w["wo"][l].T
        xn = rmsnorm(x, w["rms_ffn"][l])
        g = xn @ w["w1"][l].T
        h = (g / (1 + np.exp(-g))) * (xn @ w["w3"][l].T)
        x = x + h @ w["w2"][l].T
    logits = rmsnorm(x, w["rms_final"]) @ w["cls"].T
    m = logits.max(-1, keepdims=True)
    lse = m + np.log(np.exp(logits - m).sum(-1, keepdims=True))
    return logits - lse


def main():
    mode = sys.argv[1]
    if mode == "logprobs":
        dtype = np.float64 if "--float64" in sys.argv else np.float32
        cfg, w = load(sys.argv[2], dtype)
        ids = np.array(json.load(open(sys.argv[3])), dtype=np.int64)
        lp = forward_logprobs(cfg, w, ids, dtype)
        json.dump({"logprobs": [float(v) for v in lp], "dtype": str(np.dtype(dtype))}, open(sys.argv[4], "w"))
    elif mode == "bench":
        cfg, w = load(sys.argv[2], np.float32)
        T, windows = int(sys.argv[3]), int(sys.argv[4])
        rng = np.random.default_rng(0)
        ids = rng.integers(0, cfg["vocab"], size=(windows, T))
        forward_logprobs(cfg, w, ids[0], np.float32)  # warm-up
        t0 = time.perf_counter()
        for i in range(windows):
            forward_logprobs(cfg, w, ids[i], np.float32)
        s = time.perf_counter() - t0
        print(json.dumps({"tokens_per_second": windows * (T - 1) / s, "seconds": s, "windows": windows, "seqlen": T,
                          "numpy": np.__version__}))
    else:
        raise SystemExit("usage: llama2c_numpy.py logprobs|bench ...")


if __name__ == "__main__":
    main()
