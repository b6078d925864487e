# Dev-time generator of a random-weight Qwen2.5-VL checkpoint in the real shapes (for CPU benchmarks).
"""Writes a random-weight Qwen2.5-VL checkpoint with the exact tensor layout of a released model.

Shapes come from a real config.json (default: tests/data/hf_config/qwen2_5_vl_3b.v4.config.json, the
released Qwen2.5-VL-3B-Instruct config; ../shared/docs/qwen2_5_vl.md §1.2). Tensor names are the legacy
(as released) ones: model.layers.*, model.embed_tokens, visual.*, lm_head (absent when the embeddings are
tied). Values: linear weights and biases ~ N(0, std²) (default std 0.02, so activations stay finite),
RMSNorm weights 1. To be disk-bound rather than RNG-bound, 64 M normal values are drawn once and each
chunk of at most 16 M elements is a window of that pool at a random offset (fine for speed benchmarks;
not i.i.d. across the whole model). Stored as BF16 safetensors shards (default at most 4 GB each, the released split) with
model.safetensors.index.json, plus config.json, generation_config.json, preprocessor_config.json (the
released Qwen2.5-VL values), the real Qwen tokenizer files (../shared/data/qwen-tokenizer) and the
Qwen2.5-VL chat template (chat_template.jinja, which takes precedence over the Qwen3 template inside
that tokenizer_config.json).

The output folder is written as OUT.tmp and renamed into place. Memory stays small (the pool: 160 MB).

Usage (about 7.5 GB and 1–3 minutes for the 3B shape):
  /root/venv-ref/bin/python tools/make_random_checkpoint.py /tmp/qwen2_5_vl-3b-random
  [--config CONFIG.json] [--std 0.02] [--seed 0] [--shard-gb 4] [--force]
Not for tests/data: the output is gigabytes; it is a benchmark input only.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "tests/data/hf_config/qwen2_5_vl_3b.v4.config.json")
# The real Qwen tokenizer (../shared/data/qwen-tokenizer); VLQ_TOKENIZER_DIR overrides it (e.g. a copy carried
# to the GPU machine, which has no ../shared).
TOKENIZER_DIR = os.environ.get("VLQ_TOKENIZER_DIR") or os.path.normpath(os.path.join(REPO, "..", "shared/data/qwen-tokenizer"))
CHUNK = 16 * 1024 * 1024
POOL = 64 * 1024 * 1024

# Qwen2.5-VL chat template (the released chat_template.json of Qwen2.5-VL-*-Instruct).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

GENERATION_CONFIG = {  # released Qwen2.5-VL-3B-Instruct generation_config.json
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_p": 0.001,
    "top_k": 1,
    "transformers_version": "4.49.0",
}

PREPROCESSOR_CONFIG = {  # released Qwen2.5-VL preprocessor_config.json
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}


def tensor_specs(cfg):
    """[(name, shape, kind)] with kind 'w' (random) or 'norm' (ones), in released order."""
    t = cfg.get("text_config", cfg)
    v = cfg["vision_config"]
    H, I, L = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    heads, kv, vocab = t["num_attention_heads"], t["num_key_value_heads"], t["vocab_size"]
    hd = H // heads
    vH, vI, depth = v["hidden_size"], v["intermediate_size"], v["depth"]
    out_H = v.get("out_hidden_size", H)
    merge = v.get("spatial_merge_size", 2)
    tp, ps = v.get("temporal_patch_size", 2), v.get("patch_size", 14)
    cin = v.get("in_chans", v.get("in_channels", 3))
    tied = cfg.get("tie_word_embeddings", t.get("tie_word_embeddings", False))
    s = [("model.embed_tokens.weight", (vocab, H), "w")]
    for l in range(L):
        p = f"model.layers.{l}."
        s += [
            (p + "input_layernorm.weight", (H,), "norm"),
            (p + "post_attention_layernorm.weight", (H,), "norm"),
            (p + "self_attn.q_proj.weight", (heads * hd, H), "w"),
            (p + "self_attn.q_proj.bias", (heads * hd,), "w"),
            (p + "self_attn.k_proj.weight", (kv * hd, H), "w"),
            (p + "self_attn.k_proj.bias", (kv * hd,), "w"),
            (p + "self_attn.v_proj.weight", (kv * hd, H), "w"),
            (p + "self_attn.v_proj.bias", (kv * hd,), "w"),
            (p + "self_attn.o_proj.weight", (H, heads * hd), "w"),
            (p + "mlp.gate_proj.weight", (I, H), "w"),
            (p + "mlp.up_proj.weight", (I, H), "w"),
            (p + "mlp.down_proj.weight", (H, I), "w"),
        ]
    s.append(("model.norm.weight", (H,), "norm"))
    if not tied:
        s.append(("lm_head.weight", (vocab, H), "w"))
    s.append(("visual.patch_embed.proj.weight", (vH, cin, tp, ps, ps), "w"))
    for b in range(depth):
        p = f"visual.blocks.{b}."
        s += [
            (p + "norm1.weight", (vH,), "norm"),
            (p + "norm2.weight", (vH,), "norm"),
            (p + "attn.qkv.weight", (3 * vH, vH), "w"),
            (p + "attn.qkv.bias", (3 * vH,), "w"),
            (p + "attn.proj.weight", (vH, vH), "w"),
            (p + "attn.proj.bias", (vH,), "w"),
            (p + "mlp.gate_proj.weight", (vI, vH), "w"),
            (p + "mlp.gate_proj.bias", (vI,), "w"),
            (p + "mlp.up_proj.weight", (vI, vH), "w"),
            (p + "mlp.up_proj.bias", (vI,), "w"),
            (p + "mlp.down_proj.weight", (vH, vI), "w"),
            (p + "mlp.down_proj.bias", (vH,), "w"),
        ]
    mH = vH * merge * merge
    s += [
        ("visual.merger.ln_q.weight", (vH,), "norm"),
        ("visual.merger.mlp.0.weight", (mH, mH), "w"),
        ("visual.merger.mlp.0.bias", (mH,), "w"),
        ("visual.merger.mlp.2.weight", (out_H, mH), "w"),
        ("visual.merger.mlp.2.bias", (out_H,), "w"),
    ]
    return s


def f32_to_bf16_bits(x):
    """float32 array -> uint16 BF16 bits, round to nearest even (values here are finite)."""
    u = x.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def make_pool(rng, std):
    """POOL i.i.d. N(0, std²) values as BF16 bits, twice over (so any CHUNK-long window is contiguous)."""
    x = rng.standard_normal(POOL, dtype=np.float32)
    x *= np.float32(std)
    bits = f32_to_bf16_bits(x)
    return np.concatenate([bits, bits[:CHUNK]])


def write_tensor(f, n, kind, rng, pool):
    done = 0
    while done < n:
        m = min(CHUNK, n - done)
        if kind == "norm":
            f.write(np.full(m, 0x3F80, dtype=np.uint16).tobytes())  # BF16 1.0
        else:
            off = int(rng.integers(0, POOL))
            f.write(pool[off:off + m].tobytes())
        done += m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-gb", type=float, default=4.0)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()

    out = os.path.abspath(a.out)
    if os.path.exists(out) and not a.force:
        sys.exit(f"{out} exists (use --force to replace it)")
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(a.config) as fh:
        cfg = json.load(fh)
    specs = tensor_specs(cfg)

    # Split into shards of at most shard-gb (whole tensors, in order).
    limit = int(a.shard_gb * 1e9)
    shards, cur, cur_bytes = [], [], 0
    for name, shape, kind in specs:
        nb = int(np.prod(shape)) * 2
        if cur and cur_bytes + nb > limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape, kind))
        cur_bytes += nb
    shards.append(cur)

    rng = np.random.default_rng(a.seed)
    pool = make_pool(rng, a.std)
    weight_map, total, t0 = {}, 0, time.time()
    for si, shard in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, _ in shard:
            nb = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nb]}
            off += nb
            weight_map[name] = fname
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * ((8 - len(hb) % 8) % 8)
        with open(os.path.join(tmp, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for name, shape, kind in shard:
                write_tensor(f, int(np.prod(shape)), kind, rng, pool)
        total += off
        print(f"{fname}: {len(shard)} tensors, {off / 1e9:.2f} GB ({time.time() - t0:.0f} s)", flush=True)

    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2)
    shutil.copy(a.config, os.path.join(tmp, "config.json"))
    with open(os.path.join(tmp, "generation_config.json"), "w") as fh:
        json.dump(GENERATION_CONFIG, fh, indent=2)
    with open(os.path.join(tmp, "preprocessor_config.json"), "w") as fh:
        json.dump(PREPROCESSOR_CONFIG, fh, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER_DIR, fn), os.path.join(tmp, fn))
    with open(os.path.join(tmp, "chat_template.jinja"), "w") as fh:
        fh.write(CHAT_TEMPLATE)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)
    n_params = sum(int(np.prod(s)) for _, s, _ in specs)
    print(f"wrote {out}: {len(specs)} tensors, {n_params / 1e9:.3f} B params, {total / 1e9:.2f} GB BF16, "
          f"{len(shards)} shards, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
