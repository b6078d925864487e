#!/usr/bin/env python3
# Dev-time generator of the tiny random-weight Qwen2.5-VL checkpoints under tests/data/tiny/ and of the
# PyTorch-computed expected counts (<name>.expected.json) that the C++ `vlq inspect` tests compare against.
#
# Run with the reference venv (torch + transformers + safetensors):
#   /root/venv-ref/bin/python tools/make_tiny_checkpoints.py [--out tests/data/tiny]
#
# It writes four checkpoints made from the SAME random tensors (seed 0, bf16):
#   qwen2_5_vl-bf16-v5      model.save_pretrained() of the installed transformers (5.x), sharded
#                           (max_shard_size 200KB -> 3 shards), v5 nested config.json (text_config,
#                           rope_parameters, dtype), v5 preprocessor_config.json (size.shortest_edge/
#                           longest_edge), tokenizer.json + tokenizer_config.json + chat_template.jinja.
#   qwen2_5_vl-bf16-hf452   the same tensors renamed to the transformers 4.52-4.5x in-memory names
#                           (model.language_model.*, model.visual.*, lm_head.*), one model.safetensors,
#                           config.json in the 4.53 re-save form (flat fields + nested text_config).
#   qwen2_5_vl-bf16-legacy  legacy names (model.*, visual.*, lm_head.*) as the hub released them, one
#                           model.safetensors, config.json in the flat transformers 4.x hub form
#                           (rope_scaling {type: mrope, mrope_section}, torch_dtype, in_chans),
#                           preprocessor_config.json with min_pixels/max_pixels, chat_template.json.
#   qwen2_5_vl-fp8-modelopt handmade FP8 in the ModelOpt layout, Profile A of
#                           /work/shared/docs/fp8-checkpoint-formats.md section 6 (LM Linears F8_E4M3,
#                           F32 0-dim weight_scale/input_scale, self_attn.k_proj.k_scale/v_proj.v_scale,
#                           ViT and lm_head BF16), >= 4.52 names, 2 shards + index,
#                           hf_quant_config.json + config.json quantization_config (4.53 form).
# Every checkpoint is loaded back with transformers (config + weights) and compared to the source model.
import argparse
import copy
import fnmatch
import json
import math
import os
import re
import shutil
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

SEED = 0
VOCAB = 512
# Special tokens placed at the top of the tiny vocabulary (same order as Qwen's 151643..).
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
FIRST_SPECIAL = VOCAB - len(SPECIALS)  # 498
TOK = {t: FIRST_SPECIAL + i for i, t in enumerate(SPECIALS)}

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")

# The Qwen2.5-VL-Instruct chat template (as shipped in the hub chat_template.json).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
    "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
    "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
    "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ "
    "content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}")

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=4096, rms_norm_eps=1e-6,
            hidden_act="silu", max_window_layers=2, use_sliding_window=False, sliding_window=4096,
            attention_dropout=0.0, initializer_range=0.02, use_cache=True,
            bos_token_id=TOK["<|endoftext|>"], eos_token_id=TOK["<|im_end|>"])
MROPE = [2, 3, 3]  # sums to head_dim/2 = 16/2
ROPE_THETA = 1000000.0
VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
              fullatt_block_indexes=[1], window_size=112, patch_size=14, spatial_merge_size=2,
              temporal_patch_size=2, tokens_per_second=2, hidden_act="silu", in_channels=3)
IDS = dict(image_token_id=TOK["<|image_pad|>"], video_token_id=TOK["<|video_pad|>"],
           vision_start_token_id=TOK["<|vision_start|>"], vision_end_token_id=TOK["<|vision_end|>"])
GENERATION = dict(bos_token_id=TOK["<|endoftext|>"], pad_token_id=TOK["<|endoftext|>"],
                  eos_token_id=[TOK["<|im_end|>"], TOK["<|endoftext|>"]], do_sample=True,
                  repetition_penalty=1.05, temperature=1e-6, top_p=0.001, top_k=1, max_new_tokens=64)
MIN_PIXELS, MAX_PIXELS = 3136, 12845056

LM_LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


# ---------------------------------------------------------------------------------------------------
# Naming
def to_new_names(name):
    """legacy (model.*, visual.*) -> transformers >= 4.52 (model.language_model.*, model.visual.*)."""
    if name.startswith("visual."):
        return "model.visual." + name[len("visual."):]
    if name.startswith("model.") and not re.match(r"model\.(language_model|visual)\.", name):
        return "model.language_model." + name[len("model."):]
    return name


def to_legacy_names(name):
    if name.startswith("model.visual."):
        return "visual." + name[len("model.visual."):]
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    return name


# ---------------------------------------------------------------------------------------------------
# Independent (PyTorch-side) classification used for the expected counts.
SCALE_SUFFIXES = ["weight_scale", "weight_scale_inv", "weight_scale_2", "weight_global_scale", "input_scale",
                  "input_global_scale", "output_scale", "k_scale", "v_scale", "q_scale", "prob_scale", "kv_scale",
                  "k_bias", "v_bias", "pre_quant_scale", "weight_zero_point", "input_zero_point",
                  "output_zero_point", "_amax"]


def scale_kind(name):
    last = name.rsplit(".", 1)[-1]
    return last if last in SCALE_SUFFIXES else None


def component(name):
    n = to_legacy_names(name)
    if n.startswith("visual.merger."):
        return "vision_merger"
    if n.startswith("visual."):
        return "vision_tower"
    if n.startswith("model.embed_tokens."):
        return "embed_tokens"
    if n.startswith("lm_head."):
        return "lm_head"
    if n.startswith("model."):
        return "language_model"
    return "other"


def kv_spelling(name):
    """How a KV-cache scale key is spelled relative to the attention module's parent, or None."""
    parts = name.split(".")
    last = parts[-1]
    if last in ("k_scale", "v_scale") and len(parts) >= 2:
        return parts[-2] + "." + last  # k_proj.k_scale, qkv_proj.k_scale, self_attn.k_scale, attn.k_scale
    if last == "output_scale" and len(parts) >= 2 and parts[-2] in ("k_proj", "v_proj"):
        return parts[-2] + ".output_scale"
    if last == "kv_scale":
        return "kv_scale"
    return None


def expected_counts(ckpt_dir, model_params=None):
    files = sorted(f for f in os.listdir(ckpt_dir) if f.endswith(".safetensors"))
    tensors = {}
    for f in files:
        with safe_open(os.path.join(ckpt_dir, f), framework="pt") as sf:
            for k in sf.keys():
                tensors[k] = sf.get_tensor(k)
    dtype_name = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16",
                  torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}
    comps = {c: dict(tensors=0, params=0, bytes=0, scale_tensors=0, scale_params=0, scale_bytes=0,
                     linear_modules=0, quantized_modules=0)
             for c in ["vision_tower", "vision_merger", "language_model", "embed_tokens", "lm_head", "other"]}
    by_dtype, scale_by_dtype, scale_by_kind, kv = {}, {}, {}, {}
    naming = set()
    for k, t in tensors.items():
        nb = t.numel() * t.element_size()
        c = component(k)
        if k.startswith("model.language_model.") or k.startswith("model.visual."):
            naming.add("hf-4.52")
        elif k.startswith("model.") or k.startswith("visual."):
            naming.add("legacy")
        kind = scale_kind(k)
        d = dtype_name[t.dtype]
        if kind:
            comps[c]["scale_tensors"] += 1
            comps[c]["scale_params"] += t.numel()
            comps[c]["scale_bytes"] += nb
            e = scale_by_dtype.setdefault(d, dict(tensors=0, params=0, bytes=0))
            scale_by_kind[kind] = scale_by_kind.get(kind, 0) + 1
            sp = kv_spelling(k)
            if sp:
                kv[sp] = kv.get(sp, 0) + 1
        else:
            comps[c]["tensors"] += 1
            comps[c]["params"] += t.numel()
            comps[c]["bytes"] += nb
            e = by_dtype.setdefault(d, dict(tensors=0, params=0, bytes=0))
            if k.endswith(".weight"):
                if t.dim() == 2 and c != "embed_tokens":
                    comps[c]["linear_modules"] += 1
                if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                    comps[c]["quantized_modules"] += 1
        e["tensors"] += 1
        e["params"] += t.numel()
        e["bytes"] += nb
    out = dict(
        checkpoint=os.path.basename(os.path.normpath(ckpt_dir)),
        produced_by=f"tools/make_tiny_checkpoints.py, torch {torch.__version__}, "
                    f"transformers {transformers.__version__}",
        shards=len(files),
        naming=naming.pop() if len(naming) == 1 else ("mixed" if naming else "unknown"),
        tensors=len(tensors),
        params=sum(c["params"] for c in comps.values()),
        bytes=sum(c["bytes"] for c in comps.values()),
        components=comps,
        by_dtype=by_dtype,
        scales=dict(tensors=sum(c["scale_tensors"] for c in comps.values()),
                    params=sum(c["scale_params"] for c in comps.values()),
                    bytes=sum(c["scale_bytes"] for c in comps.values()),
                    by_dtype=scale_by_dtype, by_kind=scale_by_kind),
        kv_scale_spellings=kv,
        quantized_modules=sum(c["quantized_modules"] for c in comps.values()),
    )
    if model_params is not None:
        out["model_num_parameters"] = model_params
    return out


# ---------------------------------------------------------------------------------------------------
# Tokenizer / processor files
def make_tokenizer():
    corpus_files = [p for p in ["/work/shared/docs/qwen2_5_vl.md", "/work/shared/docs/fp8-checkpoint-formats.md"]
                    if os.path.exists(p)]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=FIRST_SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    if corpus_files:
        tok.train(corpus_files, trainer)
    else:  # fallback corpus keeps the script runnable elsewhere
        tok.train_from_iterator(["Describe this image. You are a helpful assistant."] * 100, trainer)
    assert tok.get_vocab_size() == FIRST_SPECIAL, tok.get_vocab_size()
    tok.add_special_tokens(SPECIALS)
    for t, i in TOK.items():
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t), i)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, model_max_length=4096)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def preprocessor_v5():
    return {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "Qwen2VLImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711], "merge_size": 2, "patch_size": 14,
            "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"longest_edge": MAX_PIXELS, "shortest_edge": MIN_PIXELS}, "temporal_patch_size": 2}


def preprocessor_hub():
    return {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "patch_size": 14, "temporal_patch_size": 2,
            "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "Qwen2_5_VLImageProcessor",
            "processor_class": "Qwen2_5_VLProcessor"}


def save_processor_v5(tokenizer, out):
    tokenizer.save_pretrained(out)
    write_json(os.path.join(out, "preprocessor_config.json"), preprocessor_v5())


# ---------------------------------------------------------------------------------------------------
# Config forms
def config_flat_hub():
    """The flat transformers 4.x form of the released hub config.json."""
    c = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
         "bos_token_id": TEXT["bos_token_id"], "eos_token_id": TEXT["eos_token_id"],
         "vision_start_token_id": IDS["vision_start_token_id"], "vision_end_token_id": IDS["vision_end_token_id"],
         "vision_token_id": TOK["<|vision_pad|>"], "image_token_id": IDS["image_token_id"],
         "video_token_id": IDS["video_token_id"], "hidden_act": "silu", "hidden_size": TEXT["hidden_size"],
         "initializer_range": 0.02, "intermediate_size": TEXT["intermediate_size"],
         "max_position_embeddings": TEXT["max_position_embeddings"], "max_window_layers": TEXT["max_window_layers"],
         "model_type": "qwen2_5_vl", "num_attention_heads": TEXT["num_attention_heads"],
         "num_hidden_layers": TEXT["num_hidden_layers"], "num_key_value_heads": TEXT["num_key_value_heads"],
         "rms_norm_eps": TEXT["rms_norm_eps"], "rope_theta": ROPE_THETA, "sliding_window": 4096,
         "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.49.0",
         "use_cache": True, "use_sliding_window": False,
         "vision_config": {"depth": VISION["depth"], "hidden_act": "silu", "hidden_size": VISION["hidden_size"],
                           "intermediate_size": VISION["intermediate_size"], "num_heads": VISION["num_heads"],
                           "in_chans": 3, "out_hidden_size": VISION["out_hidden_size"], "patch_size": 14,
                           "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": VISION["window_size"],
                           "fullatt_block_indexes": VISION["fullatt_block_indexes"],
                           "tokens_per_second": VISION["tokens_per_second"], "temporal_patch_size": 2},
         "rope_scaling": {"type": "mrope", "mrope_section": MROPE},
         "vocab_size": VOCAB}
    return c


def config_453_resave():
    """Flat fields + nested text_config, as transformers 4.53 re-saves a hub config."""
    c = config_flat_hub()
    c["transformers_version"] = "4.53.1"
    c["rope_scaling"] = {"mrope_section": MROPE, "rope_type": "default", "type": "default"}
    c["vision_config"]["in_channels"] = 3
    c["vision_config"]["model_type"] = "qwen2_5_vl"
    tc = {k: c[k] for k in ["attention_dropout", "bos_token_id", "eos_token_id", "hidden_act", "hidden_size",
                            "initializer_range", "intermediate_size", "max_position_embeddings",
                            "max_window_layers", "num_attention_heads", "num_hidden_layers",
                            "num_key_value_heads", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
                            "torch_dtype", "use_cache", "use_sliding_window", "vocab_size"]}
    tc.update({"model_type": "qwen2_5_vl_text", "layer_types": ["full_attention"] * TEXT["num_hidden_layers"],
               "sliding_window": None, "rope_scaling": dict(c["rope_scaling"])})
    c["text_config"] = tc
    return c


# ---------------------------------------------------------------------------------------------------
def build_model():
    cfg = Qwen2_5_VLConfig(
        text_config=dict(TEXT, rope_parameters={"rope_type": "default", "mrope_section": MROPE,
                                                "rope_theta": ROPE_THETA}, tie_word_embeddings=False),
        vision_config=dict(VISION), tie_word_embeddings=False, **IDS)
    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    # Make every parameter non-trivial (norm weights default to 1, biases to 0): small random values.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_((1.0 if "norm" in n or "ln_q" in n else 0.0) + 0.02 * torch.randn_like(p))
    model = model.to(torch.bfloat16).eval()
    model.generation_config = transformers.GenerationConfig(**GENERATION)
    return model


def load_tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), framework="pt") as sf:
                for k in sf.keys():
                    out[k] = sf.get_tensor(k)
    return out


def save_single(tensors, out):
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})


def save_sharded(tensors, out, shard_of):
    """shard_of(name) -> shard index (0-based). Writes model-0000i-of-0000n.safetensors + index."""
    groups = {}
    for k, v in tensors.items():
        groups.setdefault(shard_of(k), {})[k] = v.contiguous()
    n = len(groups)
    weight_map, total = {}, 0
    for i in sorted(groups):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(dict(sorted(groups[i].items())), os.path.join(out, fname), metadata={"format": "pt"})
        for k, v in groups[i].items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
    write_json(os.path.join(out, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})


def check_loads(d, ref_state, dequant=False):
    """Load d with transformers and compare every parameter with the source model (bf16 only)."""
    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(d, dtype=torch.bfloat16)
    sd = m.state_dict()
    assert set(sd) == set(ref_state), sorted(set(sd) ^ set(ref_state))[:10]
    for k, v in ref_state.items():
        assert torch.equal(sd[k], v), k
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tiny"))
    args = ap.parse_args()
    root = os.path.abspath(args.out)
    os.makedirs(root, exist_ok=True)

    model = build_model()
    ref_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # in-memory (>= 4.52) names
    n_params = sum(p.numel() for p in model.parameters())
    tokenizer = make_tokenizer()
    results = {}

    def fresh(name):
        d = os.path.join(root, name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        return d

    # (a) transformers save_pretrained, sharded ------------------------------------------------------
    a = fresh("qwen2_5_vl-bf16-v5")
    model.save_pretrained(a, max_shard_size="200KB")
    save_processor_v5(tokenizer, a)
    check_loads(a, ref_state)
    saved = load_tensors(a)
    names = sorted(saved)
    assert not any(k.startswith("model.language_model.") or k.startswith("model.visual.") for k in names), \
        "save_pretrained wrote >= 4.52 names"  # transformers 5.24 writes the legacy names
    legacy = {to_legacy_names(k): v for k, v in ref_state.items()}
    assert set(saved) == set(legacy)
    for k in saved:
        assert torch.equal(saved[k], legacy[k]), k
    results[a] = n_params

    # (b) >= 4.52 names, single file, 4.53 re-save config form ---------------------------------------
    b = fresh("qwen2_5_vl-bf16-hf452")
    save_single({to_new_names(k): v for k, v in legacy.items()}, b)
    write_json(os.path.join(b, "config.json"), config_453_resave())
    write_json(os.path.join(b, "generation_config.json"), dict(GENERATION, transformers_version="4.53.1"))
    write_json(os.path.join(b, "preprocessor_config.json"), dict(preprocessor_hub(),
               size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}))
    tokenizer.save_pretrained(b)
    check_loads(b, ref_state)
    results[b] = n_params

    # (c) legacy names, flat hub config --------------------------------------------------------------
    c = fresh("qwen2_5_vl-bf16-legacy")
    save_single(legacy, c)
    write_json(os.path.join(c, "config.json"), config_flat_hub())
    write_json(os.path.join(c, "generation_config.json"), dict(GENERATION, transformers_version="4.49.0"))
    write_json(os.path.join(c, "preprocessor_config.json"), preprocessor_hub())
    tmp = tempfile.mkdtemp()
    tokenizer.save_pretrained(tmp)
    shutil.copy(os.path.join(tmp, "tokenizer.json"), c)
    tc = json.load(open(os.path.join(tmp, "tokenizer_config.json")))
    tc["chat_template"] = CHAT_TEMPLATE  # hub files carry the template in tokenizer_config.json ...
    write_json(os.path.join(c, "tokenizer_config.json"), tc)
    write_json(os.path.join(c, "chat_template.json"), {"chat_template": CHAT_TEMPLATE})  # ... and here
    shutil.rmtree(tmp)
    check_loads(c, ref_state)
    results[c] = n_params

    # (d) ModelOpt FP8, Profile A ---------------------------------------------------------------------
    d = fresh("qwen2_5_vl-fp8-modelopt")
    # Calibration: per-tensor amax of each LM Linear's input and of k_proj/v_proj outputs (handmade
    # stand-in for ModelOpt's K/V BMM quantizers, which observe K after RoPE), on random token ids.
    amax_in, amax_out = {}, {}
    hooks = []
    lm = model.model.language_model
    for li, layer in enumerate(lm.layers):
        for lin in LM_LINEARS:
            mod = layer.get_submodule(lin)
            key = f"model.language_model.layers.{li}.{lin}"

            def hook(m, inp, out, key=key):
                amax_in[key] = max(amax_in.get(key, 0.0), inp[0].detach().float().abs().max().item())
                amax_out[key] = max(amax_out.get(key, 0.0), out.detach().float().abs().max().item())
            hooks.append(mod.register_forward_hook(hook))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            ids = torch.randint(0, FIRST_SPECIAL, (2, 32), generator=g)
            model(input_ids=ids)
    for h in hooks:
        h.remove()

    fp8 = {}
    for k, v in ref_state.items():
        mod = k.rsplit(".", 1)[0]
        if k.endswith(".weight") and mod in amax_in:
            w = v.float()
            amax = w.abs().max().item()
            ws = amax / 448.0
            fp8[k] = (w / ws).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
            fp8[mod + ".weight_scale"] = torch.tensor(ws, dtype=torch.float32)
            fp8[mod + ".input_scale"] = torch.tensor(amax_in[mod] / 448.0, dtype=torch.float32)
        else:
            fp8[k] = v
    for li in range(TEXT["num_hidden_layers"]):
        p = f"model.language_model.layers.{li}.self_attn"
        # ModelOpt >= 0.43 with --kv_cache_qformat fp8: amax/448, no clamp to 1.0.
        fp8[p + ".k_proj.k_scale"] = torch.tensor(amax_out[p + ".k_proj"] / 448.0, dtype=torch.float32)
        fp8[p + ".v_proj.v_scale"] = torch.tensor(amax_out[p + ".v_proj"] / 448.0, dtype=torch.float32)
    # Two shards: vision + lm_head in the second one, language model in the first.
    save_sharded(fp8, d, lambda k: 1 if k.startswith("model.visual.") or k.startswith("lm_head.") else 0)
    exclude = ["lm_head", "model.visual*"]
    producer = {"name": "modelopt", "version": "0.47.0"}
    write_json(os.path.join(d, "hf_quant_config.json"),
               {"producer": producer, "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8",
                                                       "exclude_modules": exclude}})
    cfg = config_453_resave()
    fmt = {"dynamic": False, "num_bits": 8, "type": "float"}
    cfg["quantization_config"] = {"config_groups": {"group_0": {"input_activations": fmt, "weights": fmt,
                                                                "targets": ["Linear"]}},
                                  "ignore": exclude, "kv_cache_scheme": fmt, "producer": producer,
                                  "quant_algo": "FP8", "quant_method": "modelopt"}
    write_json(os.path.join(d, "config.json"), cfg)
    write_json(os.path.join(d, "generation_config.json"), dict(GENERATION, transformers_version="4.53.1"))
    save_processor_v5(tokenizer, d)
    # Sanity: dequantized LM weights are close to the bf16 ones; all non-LM tensors identical.
    back = load_tensors(d)
    for k, v in ref_state.items():
        if back[k].dtype == torch.float8_e4m3fn:
            deq = back[k].float() * back[k.rsplit(".", 1)[0] + ".weight_scale"]
            err = (deq - v.float()).abs().max().item()
            assert err <= 0.07 * v.float().abs().max().item(), (k, err)
        else:
            assert torch.equal(back[k], v), k
    results[d] = n_params

    for dd, n in results.items():
        exp = expected_counts(dd, n)
        if "fp8" not in dd:  # a bf16 checkpoint holds exactly the model's parameters
            assert exp["params"] == n, (dd, exp["params"], n)
        write_json(os.path.join(root, os.path.basename(dd) + ".expected.json"), exp)
        size = sum(os.path.getsize(os.path.join(dd, f)) for f in os.listdir(dd))
        print(f"{os.path.basename(dd)}: {exp['tensors']} tensors, {exp['params']} params, "
              f"{exp['shards']} shard(s), naming {exp['naming']}, {size} bytes on disk")
    print("transformers", transformers.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
