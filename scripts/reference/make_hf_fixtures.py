#!/usr/bin/env python3
"""Builds test/fixtures/hf-variants: small random LLaMA-family checkpoints written the way the
ecosystem writes them, plus reference log-probabilities from scripts/reference/hf_llama_numpy.py
(HF) and scripts/reference/llama2c_numpy.py (llama2.c version 1).

    bash test/fixtures/hf-variants/regenerate.sh

Needs python packages numpy, safetensors, ml_dtypes and two transformers installs (4.x and 5.x,
no torch), given as TRANSFORMERS4_PATH and TRANSFORMERS5_PATH (PYTHONPATH entries): config.json
files are written by transformers' own config classes (`to_dict()`), weights by the safetensors
library (`safetensors.numpy.save_file`, metadata {"format": "pt"}), shards and index as
transformers names them. The tests only read the committed output.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_llama_numpy  # noqa: E402
import llama2c_numpy  # noqa: E402

T = 48  # window length of the reference log-probs
BASE = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=64)
ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
CLASS = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config"}
DTYPE = {"F32": ("float32", np.float32), "F16": ("float16", np.float16), "BF16": ("bfloat16", ml_dtypes.bfloat16)}

# name, transformers major version, model_type, config kwargs, safetensors dtype, sharded, notes
VARIANTS = [
    ("llama2-4x-f32", 4, "llama", dict(num_key_value_heads=4, max_position_embeddings=64), "F32", False,
     "Llama-2 style: MHA, untied, theta 10000, torch_dtype spelling"),
    ("llama-5x-bf16-sharded", 5, "llama", dict(rope_parameters=dict(rope_type="default", rope_theta=500000.0), max_position_embeddings=64),
     "BF16", True, "rope_parameters + dtype spelling, GQA, theta 5e5, two shards + index"),
    ("llama31-4x-llama3-f16", 4, "llama",
     dict(head_dim=16, tie_word_embeddings=True, rope_theta=500000.0, max_position_embeddings=256,
          rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64)),
     "F16", False, "Llama-3.2 style: llama3 rope scaling in rope_scaling, explicit head_dim 16, GQA, tied"),
    ("llama31-5x-llama3-f32", 5, "llama",
     dict(head_dim=16, max_position_embeddings=256,
          rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64)),
     "F32", False, "Llama-3.1 style: llama3 scaling in rope_parameters, untied"),
    ("llama-4x-linear-f32", 4, "llama", dict(max_position_embeddings=256, rope_scaling=dict(type="linear", factor=4.0)), "F32", False,
     "linear rope scaling, old 'type' key"),
    ("llama-5x-linear-bf16", 5, "llama", dict(max_position_embeddings=256, rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=4.0)),
     "BF16", False, "linear rope scaling in rope_parameters"),
    ("llama-4x-biases-f32", 4, "llama", dict(attention_bias=True, mlp_bias=True, max_position_embeddings=64), "F32", False,
     "attention_bias and mlp_bias: biases on all seven linears"),
    ("mistral-4x-window-f32", 4, "mistral", dict(sliding_window=16, max_position_embeddings=128), "F32", False,
     "Mistral v0.1 style: sliding window 16 inside a 48-token window"),
    ("mistral-5x-bf16", 5, "mistral", dict(sliding_window=None, head_dim=16, max_position_embeddings=128, rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
     "BF16", False, "Mistral v0.3 style: no sliding window, head_dim 16, theta 1e6"),
    ("qwen2-4x-bf16", 4, "qwen2", dict(rope_theta=1000000.0, tie_word_embeddings=True, max_position_embeddings=128, sliding_window=128,
                                        use_sliding_window=False, max_window_layers=21, bos_token_id=None),
     "BF16", False, "Qwen2.5-0.5B style: q/k/v biases, theta 1e6, tied, no BOS"),
    ("qwen2-5x-f32", 5, "qwen2", dict(max_position_embeddings=128, rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
     "F32", False, "Qwen2 in transformers 5 spelling (layer_types, rope_parameters), untied"),
]


def config_json(major, model_type, kwargs, dtype_name):
    """config.json as transformers <major> writes it (save_pretrained's to_json_string)."""
    path = os.environ[f"TRANSFORMERS{major}_PATH"]
    code = (
        "import json, sys, transformers\n"
        f"cls = getattr(transformers, {CLASS[model_type]!r})\n"
        "kw = json.loads(sys.argv[1])\n"
        "c = cls(**kw)\n"
        f"c.architectures = [{ARCH[model_type]!r}]\n"
        "print(c.to_json_string())\n"
    )
    kw = dict(BASE, **kwargs)
    kw["dtype" if major == 5 else "torch_dtype"] = dtype_name
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(kw)], env=env, capture_output=True, text=True, check=True).stdout
    cfg = json.loads(out)
    if major == 4 and "dtype" in cfg:
        # transformers < 4.56 (Llama-2, Mistral v0.1, Qwen2.5 releases) spelled it torch_dtype.
        cfg["torch_dtype"] = cfg.pop("dtype")
    return cfg


def tensors(cfg, rng, dtype):
    c = hf_llama_numpy.parse_config(cfg)
    dim, H, KV, hd, L, V = c["dim"], c["H"], c["KV"], c["hd"], c["L"], c["V"]
    hidden = cfg["intermediate_size"]
    shapes = {"q": (H * hd, dim), "k": (KV * hd, dim), "v": (KV * hd, dim), "o": (dim, H * hd),
              "gate": (hidden, dim), "up": (hidden, dim), "down": (dim, hidden)}
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
    t = {"model.embed_tokens.weight": rng.normal(0, 1, (V, dim))}
    for l in range(L):
        t[f"model.layers.{l}.input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=dim)
        t[f"model.layers.{l}.post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=dim)
        for n, s in shapes.items():
            t[f"model.layers.{l}.{names[n]}.weight"] = rng.normal(0, 0.5 / np.sqrt(s[1]) * 2, s)
            if n in c["biases"]:
                t[f"model.layers.{l}.{names[n]}.bias"] = rng.normal(0, 0.5, s[0])
    t["model.norm.weight"] = 1 + 0.1 * rng.normal(size=dim)
    if not c["tied"]:
        t["lm_head.weight"] = rng.normal(0, 0.3, (V, dim))
    return {k: np.ascontiguousarray(v.astype(np.float32).astype(dtype)) for k, v in t.items()}


def write_weights(d, ts, sharded):
    if not sharded:
        save_file(ts, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(ts)
    half = len(names) // 2
    groups = [names[:half], names[half:]]
    weight_map = {}
    total = 0
    for k, g in enumerate(groups):
        f = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: ts[n] for n in g}, os.path.join(d, f), metadata={"format": "pt"})
        for n in g:
            weight_map[n] = f
            total += ts[n].nbytes
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")


def llama2c_v1(out, rng):
    """A llama2.c version-1 file (export.py version1_export) and the same weights as a legacy file for the reference."""
    dim, hidden, L, H, KV, V, S = 16, 24, 2, 2, 2, 32, 32
    hd = dim // H
    w = {
        "emb": rng.normal(0, 1, (V, dim)), "att": 1 + 0.1 * rng.normal(size=(L, dim)),
        "wq": rng.normal(0, 0.4, (L, H * hd, dim)), "wk": rng.normal(0, 0.4, (L, KV * hd, dim)),
        "wv": rng.normal(0, 0.4, (L, KV * hd, dim)), "wo": rng.normal(0, 0.4, (L, dim, H * hd)),
        "ffn": 1 + 0.1 * rng.normal(size=(L, dim)), "w1": rng.normal(0, 0.4, (L, hidden, dim)),
        "w2": rng.normal(0, 0.4, (L, dim, hidden)), "w3": rng.normal(0, 0.4, (L, hidden, dim)),
        "norm": 1 + 0.1 * rng.normal(size=dim), "cls": rng.normal(0, 1, (V, dim)),
    }
    w = {k: v.astype(np.float32) for k, v in w.items()}
    d = os.path.join(out, "llama2c-v1")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.bin"), "wb") as f:
        f.write(struct.pack("I", 0x616B3432) + struct.pack("i", 1) + struct.pack("7i", dim, hidden, L, H, KV, V, S))
        f.write(struct.pack("B", 0))  # untied
        f.write(b"\0" * (256 - f.tell()))
        for k in ["att", "ffn", "norm", "emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "cls"]:
            f.write(w[k].tobytes())
    # The same weights in the legacy layout, for the independent llama2.c reference.
    tmp = tempfile.mkdtemp()
    try:
        legacy = os.path.join(tmp, "v0.bin")
        with open(legacy, "wb") as f:
            f.write(struct.pack("7i", dim, hidden, L, H, KV, -V, S))
            for k in ["emb", "att", "wq", "wk", "wv", "wo", "ffn", "w1", "w2", "w3", "norm"]:
                f.write(w[k].tobytes())
            f.write(np.zeros(2 * S * (hd // 2), np.float32).tobytes())
            f.write(w["cls"].tobytes())
        cfg, weights = llama2c_numpy.load(legacy, np.float64)
        ids = rng.integers(0, V, size=S).tolist()
        lp = llama2c_numpy.forward_logprobs(cfg, weights, np.array(ids), np.float64)
    finally:
        shutil.rmtree(tmp)
    ref = {"reference": "scripts/reference/llama2c_numpy.py forward_logprobs (float64) on the same weights in the legacy layout",
           "notes": "llama2.c export.py version 1: magic ak42, 256-byte header, float32, untied",
           "ids": ids, "logprobs": [float(v) for v in lp]}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    # Version 2 (Q8_0): header only plus a few bytes; crepe refuses it from the header.
    d2 = os.path.join(out, "llama2c-v2")
    os.makedirs(d2, exist_ok=True)
    with open(os.path.join(d2, "model.bin"), "wb") as f:
        f.write(struct.pack("I", 0x616B3432) + struct.pack("i", 2) + struct.pack("7i", dim, hidden, L, H, KV, V, S))
        f.write(struct.pack("B", 1) + struct.pack("i", 16))
        f.write(b"\0" * (256 - f.tell()))
        f.write(np.zeros(64, np.int8).tobytes())


def main():
    out = sys.argv[1]
    if os.path.exists(out):
        for entry in os.listdir(out):
            p = os.path.join(out, entry)
            if os.path.isdir(p):
                shutil.rmtree(p)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261129)
    for name, major, model_type, kwargs, dtype, sharded, notes in VARIANTS:
        d = os.path.join(out, name)
        os.makedirs(d)
        dtype_name, np_dtype = DTYPE[dtype]
        cfg = config_json(major, model_type, kwargs, dtype_name)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        write_weights(d, tensors(cfg, rng, np_dtype), sharded)
        ids = rng.integers(0, cfg["vocab_size"], size=T).tolist()
        lp, inv = hf_llama_numpy.logprobs(d, ids)
        ref = {"reference": "scripts/reference/hf_llama_numpy.py logprobs (float64 after the weights)", "notes": notes,
               "transformers": major, "dtype": dtype, "ids": ids, "logprobs": [float(v) for v in lp], "inv_freq": [float(v) for v in inv]}
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(ref, f)
            f.write("\n")
        print(f"wrote {d}")
    llama2c_v1(out, rng)
    print(f"wrote {out}/llama2c-v1, llama2c-v2")


if __name__ == "__main__":
    main()
