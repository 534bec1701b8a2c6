"""Writes crates/engine/tests/fixtures/minilm_reference.json.

The fixture is the reference the Rust `minilm::MiniLm` and `text::TextTokenizer` are tested
against (crates/engine/tests/minilm.rs): for a few fixed sentences, the token ids the Python
`tokenizers` package produces from the model's own tokenizer.json, and the all-MiniLM-L6-v2
sentence embeddings (L2-normalised masked mean of the last layer, as sentence-transformers
computes them) from a plain-PyTorch BERT forward written out below. It runs in float64 so
the reference does not depend on which float32 kernels either side picks.

Nothing here uses the Rust code, so a bug on one side cannot hide in both. The weights are
read straight from model.safetensors (header length as u64 LE, JSON header, raw
little-endian data), so only torch and tokenizers are needed.

Run from the repository root with the libtorch virtualenv's Python, after putting the
`tokenizers` package (the Python binding of the same 0.22 release the engine links)
where it can import it, e.g. in a scratch folder on PYTHONPATH:

    VENV=~/.cache/apparate/torch-2.13.0
    $VENV/bin/python -m pip install --target /tmp/pyx tokenizers==0.22.2
    PYTHONPATH=/tmp/pyx $VENV/bin/python scripts/make_minilm_fixture.py

The model files come from `scripts/bootstrap.sh data` ($APPARATE_DATA, else
~/.cache/apparate/data). If the `transformers` package also happens to be importable, the
script cross-checks its own forward against `transformers.BertModel` and prints the gap.
"""

import json
import math
import os
import struct
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, __version__ as tokenizers_version

MAX_LEN = 128
SENTENCES = [
    "Effective but too tepid biopic",
    "We were 17 deep last night &amp; the love was so strong everybody felt it. Even the band.",
    "Le café était délicieux — but the service? Terrible!!! 😡 Never again…",
    # Longer than MAX_LEN tokens, so truncation is part of what is checked.
    " ".join(
        ["On Dec. 19, around noon, New York City's Union Square Business Improvement District "
         "plans the First Santa Claus Ulympics (that's yule-lympics)."] * 5
    ),
]
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
OUT = Path(__file__).resolve().parent.parent / "crates/engine/tests/fixtures/minilm_reference.json"


def read_safetensors(path):
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = bytearray(data[start:end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name.removeprefix("bert.")] = t.to(torch.float64) if t.is_floating_point() else t
    return tensors


def bert_layers(w, cfg, ids, mask):
    """Hidden states after each encoder layer, each [B, T, H]."""
    eps = cfg["layer_norm_eps"]
    hidden_size, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = hidden_size // heads

    def ln(x, name):
        return F.layer_norm(x, (hidden_size,), w[f"{name}.weight"], w[f"{name}.bias"], eps)

    def dense(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    b, t = ids.shape
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:t].unsqueeze(0)
         + w["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, "embeddings.LayerNorm")
    # Padded keys get a large negative bias, as BertModel's extended attention mask does.
    bias = (1.0 - mask[:, None, None, :].to(torch.float64)) * torch.finfo(torch.float64).min
    outs = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def split(y):
            return y.view(b, t, heads, head_dim).transpose(1, 2)

        q = split(dense(x, f"{p}.attention.self.query"))
        k = split(dense(x, f"{p}.attention.self.key"))
        v = split(dense(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + bias
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, hidden_size)
        x = ln(dense(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inner = F.gelu(dense(x, f"{p}.intermediate.dense"))  # exact (erf) GELU
        x = ln(dense(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        outs.append(x)
    return outs


def sentence_embedding(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=1)


def cross_check_with_transformers(model_dir, ids, mask, ours):
    try:
        from transformers import BertModel
    except ImportError:
        return
    model = BertModel.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        last = model(input_ids=ids, attention_mask=mask).last_hidden_state.to(torch.float64)
    gap = (sentence_embedding(last, mask) - ours).abs().max().item()
    print(f"transformers.BertModel (float32) vs this forward: max abs diff {gap:.2e}")


def main():
    data = Path(os.environ.get("APPARATE_DATA", Path.home() / ".cache/apparate/data"))
    model_dir = data / "minilm"
    if not (model_dir / "model.safetensors").exists():
        sys.exit(f"{model_dir}/model.safetensors not found; run `scripts/bootstrap.sh data`")
    cfg = json.loads((model_dir / "config.json").read_text())
    weights = read_safetensors(model_dir / "model.safetensors")

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()  # the file pads every input to 128; we pad per batch below
    tok.enable_truncation(MAX_LEN)
    encodings = [e.ids for e in tok.encode_batch(SENTENCES)]
    longest = max(len(e) for e in encodings)
    ids = torch.tensor([e + [0] * (longest - len(e)) for e in encodings])
    mask = torch.tensor([[1] * len(e) + [0] * (longest - len(e)) for e in encodings])

    with torch.no_grad():
        emb = sentence_embedding(bert_layers(weights, cfg, ids, mask)[-1], mask)
    cross_check_with_transformers(model_dir, ids, mask, emb)

    fixture = {
        "about": "all-MiniLM-L6-v2 reference; made by scripts/make_minilm_fixture.py",
        "tokenizers_version": tokenizers_version,
        "torch_version": torch.__version__,
        "precision": "float64",
        "max_len": MAX_LEN,
        "sentences": [
            {"text": s, "ids": e, "embedding": [round(v, 8) for v in row.tolist()]}
            for s, e, row in zip(SENTENCES, encodings, emb)
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes; token counts {[len(e) for e in encodings]})")


if __name__ == "__main__":
    main()
