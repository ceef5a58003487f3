#!/usr/bin/env python3
"""GEMM throughput of numpy (and torch when installed) at LLaMA-2-7B linear shapes, for crepe's
bench (scripts/bench/gemm.ts), which runs the same products in the same sitting.

    gemm_bench.py TOKENS THREADS REPEATS

One pass: x [TOKENS, in] @ W^T [in, out] for q, k, v, o (4096 x 4096), gate, up (11008 x 4096)
and down (4096 x 11008): a window through the seven linears of one block. Weights are stored
pre-transposed ([in, out], C order), as crepe uploads them. The caller sets OPENBLAS_NUM_THREADS
(numpy's BLAS reads it at import); torch gets torch.set_num_threads(THREADS). Prints one JSON
line: median GFLOP/s over REPEATS passes after a warm-up pass, per library.
"""
import json
import sys
import time

import numpy as np

LINEARS = [(4096, 4096)] * 4 + [(11008, 4096)] * 2 + [(4096, 11008)]


def passes(matmul, make, tokens, repeats):
    weights = {shape: make((shape[1], shape[0])) for shape in set(LINEARS)}
    inputs = {i: make((tokens, i)) for i in {s[1] for s in LINEARS}}
    flops = 2.0 * tokens * sum(o * i for o, i in LINEARS)

    def one():
        for o, i in LINEARS:
            matmul(inputs[i], weights[(o, i)])

    one()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one()
        rates.append(flops / (time.perf_counter() - t0) / 1e9)
    return sorted(rates)[len(rates) // 2]


def main():
    tokens, threads, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    out = {"numpy": np.__version__}
    out["numpy_gflops"] = passes(np.matmul, lambda s: rng.uniform(-1, 1, s).astype(np.float32), tokens, repeats)
    try:
        import torch
    except ImportError:
        out["torch"] = None
    else:
        torch.set_num_threads(threads)
        out["torch"] = torch.__version__
        with torch.no_grad():
            out["torch_gflops"] = passes(torch.matmul, lambda s: torch.rand(s, dtype=torch.float32) * 2 - 1, tokens, repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
