#!/usr/bin/env python3
"""Independent reference of lm-evaluation-harness's zero-shot scoring on a small fixed subset.

    python3 scripts/reference/zeroshot_numpy.py MODEL ASSETS DOCS OUT.json

For each task format (ARC-Easy, ARC-Challenge, OpenBookQA, PIQA, WinoGrande, BoolQ, LAMBADA from
the assets; HellaSwag and RTE from the synthetic files in test/fixtures/zeroshot/) it takes the
first DOCS documents and does what the harness (commit recorded in docs/zeroshot.md) does:
the task YAML's prompt and targets, `_encode_pair` (trailing context whitespace moved to the
continuation, context + continuation encoded whole and split at the context's length, BOS from
the tokenizer's default add_special_tokens), left truncation to the context window,
one forward per request (no packing, no shared prefix) in float64 with llama2c_numpy's forward,
the continuation's log-probability sum and greedy match, acc / acc_norm per document, and the
aggregates: mean and mean_stderr, perplexity and its bootstrap stderr with Python's own
random.Random(i).choices, exactly as lm_eval/api/metrics.py.

Only text -> ids comes from crepe (its tokenizers are checked against sentencepiece/HF in their
own tests): every string is sent to `node dist/...` once, encoded with and without BOS.
It shares no zero-shot code with crepe.
"""
import json
import math
import os
import random
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama2c_numpy import forward_logsoftmax, load  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SYNTH = os.path.join(ROOT, "test", "fixtures", "zeroshot")
MODELS = {
    "stories260K": "models/stories260K/stories260K.bin",
    "babyllama-char": "models/babyllama-char/model5000.bin",
}


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------ task YAMLs, in Python

def arc(doc):
    labels = [c["label"] for c in doc["question"]["choices"]]
    choices = [c["text"] for c in doc["question"]["choices"]]
    ctx = "Question: " + doc["question"]["stem"] + "\nAnswer:"
    return dict(kind="mc", reqs=[(ctx, " " + c) for c in choices], choices=choices, gold=labels.index(doc["answerKey"]))


def obqa(doc):
    labels = [c["label"] for c in doc["question"]["choices"]]
    choices = [c["text"] for c in doc["question"]["choices"]]
    ctx = doc["question"]["stem"]
    return dict(kind="mc", reqs=[(ctx, " " + c) for c in choices], choices=choices, gold=labels.index(doc["answerKey"].lstrip()))


def piqa(doc, label):
    choices = [doc["sol1"], doc["sol2"]]
    ctx = "Question: " + doc["goal"] + "\nAnswer:"
    return dict(kind="mc", reqs=[(ctx, " " + c) for c in choices], choices=choices, gold=label)


def winogrande(doc):
    idx = doc["sentence"].index("_")
    contexts = [doc["sentence"][:idx] + opt for opt in (doc["option1"], doc["option2"])]
    target = doc["sentence"][idx + 1:].strip()
    return dict(kind="mc", reqs=[(c, " " + target) for c in contexts], choices=contexts, gold={"1": 0, "2": 1}[doc["answer"]])


def boolq(doc):
    label = doc["label"]
    gold = 1 if label in (True, "true", 1) else 0
    ctx = doc["passage"] + "\nQuestion: " + doc["question"] + "?\nAnswer:"
    return dict(kind="mc", reqs=[(ctx, " no"), (ctx, " yes")], choices=["no", "yes"], gold=gold)


def hs_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag(doc):
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    query = hs_preprocess(doc["activity_label"] + ": " + ctx)
    choices = [hs_preprocess(e) for e in doc["endings"]]
    return dict(kind="mc", reqs=[(query, " " + c) for c in choices], choices=choices, gold=int(doc["label"]))


def rte(s1, s2, label):
    ctx = s1 + "\nQuestion: " + s2 + " True or False?\nAnswer:"
    return dict(kind="mc", reqs=[(ctx, " True"), (ctx, " False")], choices=["True", "False"], gold={"entailment": 0, "not_entailment": 1}[label])


def lambada(doc):
    words = doc["text"].split(" ")
    return dict(kind="ll", reqs=[(" ".join(words[:-1]), " " + words[-1])])


def tasks(assets, n):
    t = os.path.join(assets, "tasks")
    piqa_docs = jsonl(os.path.join(t, "piqa", "valid.jsonl"))[:n]
    piqa_labels = [int(x) for x in open(os.path.join(t, "piqa", "valid-labels.lst")).read().split()][:n]
    tsv = [line.split("\t") for line in open(os.path.join(SYNTH, "rte-synthetic.tsv"), encoding="utf-8").read().splitlines()[1:]]
    return [
        ("arc_easy", None, [arc(d) for d in jsonl(os.path.join(t, "arc_easy", "ARC-Easy-Test.jsonl"))[:n]]),
        ("arc_challenge", None, [arc(d) for d in jsonl(os.path.join(t, "arc_challenge", "ARC-Challenge-Test.jsonl"))[:n]]),
        ("openbookqa", None, [obqa(d) for d in jsonl(os.path.join(t, "openbookqa", "test.jsonl"))[:n]]),
        ("piqa", None, [piqa(d, l) for d, l in zip(piqa_docs, piqa_labels)]),
        ("winogrande", None, [winogrande(d) for d in jsonl(os.path.join(t, "winogrande", "dev.jsonl"))[:n]]),
        ("boolq", None, [boolq(d) for d in jsonl(os.path.join(t, "boolq", "val.jsonl"))[:n]]),
        ("lambada_openai", None, [lambada(d) for d in jsonl(os.path.join(t, "lambada", "lambada_test.jsonl"))[:n]]),
        ("hellaswag", "test/fixtures/zeroshot/hellaswag-synthetic.jsonl", [hellaswag(d) for d in jsonl(os.path.join(SYNTH, "hellaswag-synthetic.jsonl"))[:n]]),
        ("rte", "test/fixtures/zeroshot/rte-synthetic.tsv", [rte(r[1], r[2], r[3]) for r in tsv[:n]]),
    ]


METRICS = {
    "arc_easy": ["acc", "acc_norm"], "arc_challenge": ["acc", "acc_norm"], "openbookqa": ["acc", "acc_norm"],
    "piqa": ["acc", "acc_norm"], "winogrande": ["acc"], "boolq": ["acc"], "hellaswag": ["acc", "acc_norm"],
    "rte": ["acc"], "lambada_openai": ["perplexity", "acc"],
}


# ------------------------------------------------------------------ the harness's metrics

def mean(arr):
    return sum(arr) / len(arr)


def sample_stddev(arr):
    mu = mean(arr)
    return math.sqrt(sum([(x - mu) ** 2 for x in arr]) / (len(arr) - 1))


def mean_stderr(arr):
    return sample_stddev(arr) / math.sqrt(len(arr))


def perplexity(items):
    return math.exp(-mean(items))


def bootstrap_stderr(f, xs, iters):
    res = []
    chunk_size = min(1000, iters)
    for i in range(iters // chunk_size):
        rnd = random.Random()
        rnd.seed(i)
        for _ in range(chunk_size):
            res.append(f(rnd.choices(xs, k=len(xs))))
    return sample_stddev(res)


# ------------------------------------------------------------------ tokens via crepe's tokenizer

def encode_all(model, texts):
    script = (
        "const { openModel } = require('./dist/lib/model/resolve');"
        "const inp = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const m = openModel(inp.model);"
        "process.stdout.write(JSON.stringify(inp.texts.map((t) => Array.from(m.tokenizer.encode(t, { bos: true })))));"
        "m.source.close();"
    )
    out = subprocess.run(["node", "-e", script], input=json.dumps({"model": model, "texts": texts}), capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def main():
    model, assets, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    cfg, w = load(os.path.join(assets, MODELS[model]), np.float64)
    with open(os.path.join(assets, MODELS[model]), "rb") as f:
        import struct
        max_length = struct.unpack("7i", f.read(28))[6]
    all_tasks = tasks(assets, n)
    # _encode_pair's strings: rstrip the context, move the whitespace to the continuation
    pairs = []
    for _, _, docs in all_tasks:
        for d in docs:
            for ctx, cont in d["reqs"]:
                n_spaces = len(ctx) - len(ctx.rstrip())
                if n_spaces > 0:
                    cont = ctx[-n_spaces:] + cont
                    ctx = ctx[:-n_spaces]
                pairs.append((ctx, cont))
    texts = sorted({t for c, k in pairs for t in (c, c + k)})
    ids = dict(zip(texts, encode_all(model, texts)))
    result = {"model": model, "max_length": max_length, "docs_per_task": n, "bootstrap_iters": 100000, "tasks": []}
    for name, file, docs in all_tasks:
        per_doc = []
        for d in docs:
            reqs = []
            for ctx, cont in d["reqs"]:
                n_spaces = len(ctx) - len(ctx.rstrip())
                if n_spaces > 0:
                    cont = ctx[-n_spaces:] + cont
                    ctx = ctx[:-n_spaces]
                whole = ids[ctx + cont]
                context_enc = ids[ctx]
                continuation_enc = whole[len(context_enc):]
                inp = (context_enc + continuation_enc)[-(max_length + 1):][:-1]
                lp = forward_logsoftmax(cfg, w, np.array(inp, dtype=np.int64), np.float64)
                inplen, contlen = len(inp), len(continuation_enc)
                sel = lp[inplen - contlen:inplen]
                greedy = bool((sel.argmax(-1) == np.array(continuation_enc)).all())
                ll = float(sel[np.arange(contlen), continuation_enc].sum())
                reqs.append(dict(context=ctx, continuation=cont, context_ids=context_enc, continuation_ids=continuation_enc,
                                 input_length=inplen, truncated=len(context_enc) + contlen > max_length + 1, ll=ll, greedy=greedy))
            lls = np.array([r["ll"] for r in reqs])
            m = {}
            if d["kind"] == "mc":
                completion_len = np.array([float(len(c)) for c in d["choices"]])
                m["acc"] = 1.0 if int(np.argmax(lls)) == d["gold"] else 0.0
                if "acc_norm" in METRICS[name]:
                    m["acc_norm"] = 1.0 if int(np.argmax(lls / completion_len)) == d["gold"] else 0.0
            else:
                m["perplexity"] = float(lls[0])
                m["acc"] = int(reqs[0]["greedy"])
            per_doc.append(dict(requests=reqs, metrics=m))
        agg = {}
        for metric in METRICS[name]:
            vals = [p["metrics"][metric] for p in per_doc]
            if metric == "perplexity":
                agg[metric] = dict(value=perplexity(vals), stderr=bootstrap_stderr(perplexity, vals, 100000))
            else:
                agg[metric] = dict(value=mean(vals), stderr=mean_stderr(vals))
        result["tasks"].append(dict(task=name, file=file, docs=per_doc, metrics=agg))
    with open(out, "w") as f:
        json.dump(result, f)
        f.write("\n")


if __name__ == "__main__":
    main()
