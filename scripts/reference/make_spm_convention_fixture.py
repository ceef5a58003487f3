#!/usr/bin/env python3
"""Expected ids for transformers' LlamaTokenizer with legacy=False on test/fixtures/spm-feff.

transformers (4.x, slow LlamaTokenizer) with legacy=False loads the sentencepiece model with
add_dummy_prefix switched off, prefixes "\u2581" itself when add_prefix_space (default True), and
encodes text that starts with a space as "<unk>" + text, dropping the pieces of "<unk>". This
script redoes that procedure with the sentencepiece library (no transformers needed) and writes
the ids for every case of expected-ids.json, for add_prefix_space true and false.

    /usr/bin/python3 scripts/reference/make_spm_convention_fixture.py test/fixtures/spm-feff

Needs Debian's python3-sentencepiece and python3-protobuf. The tests only read the output.
"""
import json
import os
import sys

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

SPIECE_UNDERLINE = "\u2581"


def main():
    folder = sys.argv[1]
    proto = model_pb2.ModelProto()
    with open(os.path.join(folder, "tokenizer.model"), "rb") as f:
        proto.ParseFromString(f.read())
    assert not proto.normalizer_spec.remove_extra_whitespaces, "the procedure below assumes a Llama-style model"
    proto.normalizer_spec.add_dummy_prefix = False  # as LlamaTokenizer.get_spm_processor does when not legacy
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(proto.SerializeToString())
    unk = "<unk>"
    unk_len = len(sp.encode(unk))

    def non_legacy(text, add_prefix_space):
        if len(text) == 0:
            return []
        text = text.replace(SPIECE_UNDERLINE, " ")
        if add_prefix_space:
            text = SPIECE_UNDERLINE + text
        if not text.startswith((SPIECE_UNDERLINE, " ")):
            return sp.encode(text)
        ids = sp.encode(unk + text)
        return ids[unk_len:]

    cases = json.load(open(os.path.join(folder, "expected-ids.json"), encoding="utf8"))["cases"]
    # Text holding a special token's spelling is split on it by transformers first; crepe's
    # .model tokenizer spells it out (sentencepiece's behaviour), so those cases are left out.
    texts = [c["text"] for c in cases if not any(s in c["text"] for s in ("<s>", "</s>", "<unk>"))]
    out = {
        "sentencepiece": spm.__version__,
        "procedure": "LlamaTokenizer(legacy=False): add_dummy_prefix off, optional '\u2581' prefix, '<unk>' trick for a leading space",
        "cases": [{"text": t, "prefix": non_legacy(t, True), "no_prefix": non_legacy(t, False)} for t in texts],
    }
    with open(os.path.join(folder, "expected-ids-nonlegacy.json"), "w", encoding="utf8") as f:
        head = {k: v for k, v in out.items() if k != "cases"}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out["cases"]))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
