#!/usr/bin/env python3
"""Dev-time Hugging Face oracle for the vlq Qwen2.5-VL CPU runtime (vision tower + language model).

Writes tests/data/golden/model/<case>/ for several tiny Qwen2.5-VL models:
  model/               a complete HF checkpoint (config.json, model.safetensors in BF16, generation_config.json,
                       preprocessor_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja);
                       absent for `trained_heldout`, which uses models/qwen2_5_vl-tiny-trained in place.
  golden.safetensors   (trained_heldout: golden_<item id>.safetensors, one per held-out item)
  case.json            messages (image paths relative to the repository root), rendered prompt, configs,
                       versions, key naming of the checkpoint, tolerance notes, generation result.

Reference run: transformers Qwen2_5_VLForConditionalGeneration loaded from model/ with dtype float32 (the BF16
weights upcast, so the f32 model holds exactly the BF16-rounded values), attn_implementation="eager", the slow
(PIL) image processor Qwen2VLImageProcessorPil (transformers 5.x; the torchvision one is Qwen2VLImageProcessor),
the real Qwen2_5_VLProcessor for <|image_pad|> expansion (its video processor needs torchvision, absent here, so
the constructor's class check is bypassed for video_processor=None only), and no batching/padding.

Tensors in golden*.safetensors (F32 unless noted; S = prompt length, N = patches, Dv = vision hidden,
D = out_hidden_size = H = text hidden, V = vocab):
  input_ids I64 [S]                 processor output (chat template, add_generation_prompt=True, pads expanded)
  pixel_values [N, 1176]            processor output (absent for text-only cases)
  image_grid_thw I64 [n_images, 3]  processor output, patch units (absent for text-only cases)
  position_ids I64 [3, S]           M-RoPE ids the language model received (model.model.get_rope_index;
                                    text-only: arange in all rows, as the model infers them)
  rope_deltas I64 [1]               from get_rope_index (0 for text-only)
  vision.patch_embed [N, Dv]        patch embedding output, processor (raster merge-group) order
  vision.block.{i} [N, Dv]          output of vision block i, in WINDOW order (rows permuted in groups of 4 by
                                    HF's window_index, exactly as HF holds them)
  vision.merger [N/4, D]            visual tower output after undoing the window permutation = the rows scattered
                                    into the <|image_pad|> positions (images concatenated in prompt order)
  lm.embeds [S, H]                  input embeddings after image features were merged in
  lm.layer.{l} [S, H]               output of decoder layer l (residual stream, before the final norm)
  lm.norm [S, H]                    after the final RMSNorm
  logits [K, V]                     logits of the last K = min(S, 16) prompt positions
  generated_ids I64 [G]             greedy generate, new tokens only (do_sample False, repetition_penalty 1.0,
                                    eos ids of generation_config.json; max_new_tokens 12, trained: 48)
trained_heldout: golden_<id>.safetensors per item; only the first item (count-0000) carries pixel_values,
vision.patch_embed, vision.block.* and lm.layer.* (size budget); the others have every other tensor, and case.json
gives pixel_values_crc32 (zlib CRC-32 of the little-endian float32 bytes) and pixel_values_sum for every case.

Regenerate (deterministic; CPU, a minute or two):
    /root/venv-ref/bin/python tools/make_model_golden.py
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import zlib

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import transformers
from transformers import (AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil)
from transformers import processing_utils as _pu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "golden", "model")
TRAINED = "models/qwen2_5_vl-tiny-trained"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"]
LOGITS_K = 16

# ---------------------------------------------------------------------------------------------- processor
_orig_check = _pu.ProcessorMixin.check_argument_for_proper_class


def _check(self, name, arg):
    # transformers 5.24 cannot resolve the video processor class without torchvision; images never need it.
    if name == "video_processor" and arg is None:
        return None
    return _orig_check(self, name, arg)


_pu.ProcessorMixin.check_argument_for_proper_class = _check


def load_processor(model_dir):
    ip = Qwen2VLImageProcessorPil.from_pretrained(model_dir)
    assert type(ip).__name__ == "Qwen2VLImageProcessorPil"
    tok = AutoTokenizer.from_pretrained(model_dir)
    with open(os.path.join(model_dir, "chat_template.jinja")) as f:
        tmpl = f.read()
    return Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=None, chat_template=tmpl)


def composite_rgb(im):
    """transformers convert_to_rgb: non-RGB → RGBA → alpha over white → RGB."""
    if im.mode == "RGB":
        return im
    im = im.convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255))
    bg.alpha_composite(im)
    return bg.convert("RGB")


def check_pixel_values(proc, images, pv, grid):
    """Self-check: closed-form patch layout (qwen2_5_vl.md §2.2) over Pillow BICUBIC reproduces pixel_values."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
    ip = proc.image_processor
    rows = []
    for im, (t, gh, gw) in zip(images, grid.tolist()):
        rh, rw = smart_resize(im.size[1], im.size[0], 28, ip.size["shortest_edge"], ip.size["longest_edge"])
        assert (rh // 14, rw // 14) == (gh, gw), (rh, rw, gh, gw)
        rgb = composite_rgb(im)
        arr = np.array(rgb.resize((rw, rh), Image.BICUBIC)) if (rw, rh) != rgb.size else np.array(rgb)
        x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
        x = (x - np.array(ip.image_mean, np.float32)) / np.array(ip.image_std, np.float32)
        m = x.transpose(2, 0, 1).reshape(3, gh // 2, 2, 14, gw // 2, 2, 14).transpose(1, 4, 2, 5, 0, 3, 6)
        m = np.broadcast_to(m[:, :, :, :, :, None], (*m.shape[:5], 2, 14, 14)).reshape(gh * gw, 1176)
        rows.append(m)
    mine = np.concatenate(rows, 0)
    assert np.array_equal(mine, pv.numpy()), "pixel_values differ from the PIL closed form"


# ---------------------------------------------------------------------------------------------- models
def trained_config():
    with open(os.path.join(ROOT, TRAINED, "config.json")) as f:
        return json.load(f)


def make_config(text, vision, tie=False):
    base = trained_config()
    tc = dict(base["text_config"])
    tc.update(text)
    heads, hd = tc["num_attention_heads"], tc.pop("head_dim")
    tc["hidden_size"] = heads * hd
    assert sum(tc["rope_parameters"]["mrope_section"]) == hd // 2
    tc["layer_types"] = ["full_attention"] * tc["num_hidden_layers"]
    tc["max_window_layers"] = tc["num_hidden_layers"]
    tc["tie_word_embeddings"] = tie
    vc = dict(base["vision_config"])
    vc.update(vision)
    vc["out_hidden_size"] = tc["hidden_size"]
    assert (vc["hidden_size"] // vc["num_heads"]) % 4 == 0
    return Qwen2_5_VLConfig(
        text_config=tc, vision_config=vc, tie_word_embeddings=tie,
        image_token_id=base["image_token_id"], video_token_id=base["video_token_id"],
        vision_start_token_id=base["vision_start_token_id"], vision_end_token_id=base["vision_end_token_id"])


def init_weights(model, seed):
    """Wide-spread random weights (deterministic): Linear/Conv std clamp(1.6/sqrt(fan_in), 0.08, 0.3), biases
    N(0, 0.1), RMSNorm weights U(0.8, 1.2), embeddings N(0, 0.5); then rounded to BF16."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight") or "norm" in name.split(".")[-2] or name.endswith("ln_q.weight"):
                v = 0.8 + 0.4 * torch.rand(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name:
                v = 0.5 * torch.randn(p.shape, generator=g)
            else:
                fan_in = p[0].numel()
                std = min(0.3, max(0.08, 1.6 / math.sqrt(fan_in)))
                v = std * torch.randn(p.shape, generator=g)
            p.copy_(v.to(torch.bfloat16).to(torch.float32))


def rename_to_452(path):
    """transformers 4.52-style keys: model.language_model.*, model.visual.*, lm_head.weight."""
    sd = load_file(path)
    out = {}
    for k, v in sd.items():
        if k.startswith("visual."):
            k = "model." + k
        elif k.startswith("model.") and not k.startswith(("model.language_model.", "model.visual.")):
            k = "model.language_model." + k[len("model."):]
        out[k] = v
    save_file(out, path, metadata={"format": "pt"})


def key_naming(path):
    with safe_open(path, "pt") as f:
        keys = list(f.keys())
    if any(k.startswith("model.language_model.") for k in keys):
        return "transformers-4.52 (model.language_model.*, model.visual.*, lm_head.weight)"
    return "legacy (model.layers.*, model.embed_tokens.weight, model.norm.weight, visual.*, lm_head.weight)"


def write_checkpoint(case, mdir):
    """Random tiny model → BF16 checkpoint folder mdir (save_pretrained + the trained model's tokenizer files)."""
    cfg = make_config(case["text"], case["vision"], tie=case.get("tie", False))
    torch.manual_seed(case["seed"])
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    init_weights(model, case["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        model.to(torch.bfloat16).save_pretrained(tmp)
        os.makedirs(mdir, exist_ok=True)
        for f in ["config.json", "model.safetensors"]:
            shutil.copy(os.path.join(tmp, f), os.path.join(mdir, f))
    for f in TOKENIZER_FILES:
        shutil.copy(os.path.join(ROOT, TRAINED, f), os.path.join(mdir, f))
    with open(os.path.join(ROOT, TRAINED, "preprocessor_config.json")) as f:
        pp = json.load(f)
    if "max_pixels" in case:
        pp["max_pixels"] = pp["size"]["longest_edge"] = case["max_pixels"]
    with open(os.path.join(mdir, "preprocessor_config.json"), "w") as f:
        json.dump(pp, f, indent=2)
        f.write("\n")
    st = os.path.join(mdir, "model.safetensors")
    with safe_open(st, "pt") as f:
        keys = list(f.keys())
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in keys)
    assert ("lm_head.weight" in keys) != case.get("tie", False)
    if case.get("naming") == "4.52":
        rename_to_452(st)
    return model.to(torch.float32)


# ---------------------------------------------------------------------------------------------- capture
def run_case(model_dir, messages, max_new_tokens, ref_model=None):
    proc = load_processor(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    if ref_model is not None:  # the reload (any key naming) holds exactly the BF16-rounded random weights
        a, b = model.state_dict(), ref_model.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    cfg = model.config
    prompt = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    paths = [c["image"] for m in messages if isinstance(m["content"], list) for c in m["content"]
             if c.get("type") == "image"]
    images = [Image.open(os.path.join(ROOT, p)) for p in paths]
    inputs = proc(text=[prompt], images=images or None, return_tensors="pt")
    ids = inputs["input_ids"]
    has_img = "pixel_values" in inputs
    if has_img:
        check_pixel_values(proc, images, inputs["pixel_values"], inputs["image_grid_thw"])

    cap = {}
    hooks = []
    vis, lm = model.model.visual, model.model.language_model

    def out_hook(name):
        def h(mod, args, out):
            t = out[0] if isinstance(out, tuple) else out
            cap[name] = t.detach().clone()
        return h

    if has_img:
        hooks.append(vis.patch_embed.register_forward_hook(out_hook("vision.patch_embed")))
        for i, blk in enumerate(vis.blocks):
            hooks.append(blk.register_forward_hook(out_hook(f"vision.block.{i}")))
        hooks.append(vis.register_forward_hook(
            lambda m, a, o: cap.__setitem__("vision.merger", o.pooler_output.detach().clone())))

    def lm_pre(mod, args, kwargs):
        cap["lm.embeds"] = kwargs["inputs_embeds"][0].detach().clone()
        cap["_pos"] = kwargs.get("position_ids")
    hooks.append(lm.register_forward_pre_hook(lm_pre, with_kwargs=True))
    for i, layer in enumerate(lm.layers):
        hooks.append(layer.register_forward_hook(out_hook(f"lm.layer.{i}")))
    hooks.append(lm.norm.register_forward_hook(out_hook("lm.norm")))

    with torch.no_grad():
        model.model.rope_deltas = None
        out = model(**inputs, use_cache=False)
    for h in hooks:
        h.remove()

    S = ids.shape[1]
    g = {"input_ids": ids[0].clone()}
    if has_img:
        g["pixel_values"] = inputs["pixel_values"].float()
        g["image_grid_thw"] = inputs["image_grid_thw"].long()
    pos, deltas = model.model.get_rope_index(
        ids, mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs.get("image_grid_thw"), attention_mask=inputs["attention_mask"])
    if cap["_pos"] is not None:
        assert torch.equal(cap["_pos"], pos), "model's position ids differ from get_rope_index"
    else:  # text-only: the language model infers arange in all three rows
        assert torch.equal(pos[:, 0], torch.arange(S).expand(3, S)) and int(deltas) == 0
    g["position_ids"] = pos[:, 0].clone()
    g["rope_deltas"] = deltas.reshape(1).long()
    for k, v in cap.items():
        if not k.startswith("_"):
            g[k] = v[0] if v.dim() == 3 else v
    K = min(S, LOGITS_K)
    g["logits"] = out.logits[0, -K:].clone()

    # generation
    gc = model.generation_config
    eos = gc.eos_token_id if isinstance(gc.eos_token_id, list) else [gc.eos_token_id]
    model.model.rope_deltas = None
    with torch.no_grad():
        gen = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, repetition_penalty=1.0,
                             eos_token_id=eos, pad_token_id=gc.pad_token_id, output_logits=True,
                             return_dict_in_generate=True, temperature=None, top_p=None, top_k=None)
    new = gen.sequences[0, S:].clone()
    g["generated_ids"] = new
    margins = []
    for step, lg in enumerate(gen.logits):
        top = torch.topk(lg[0].double(), 2).values
        margins.append(float((top[0] - top[1]) / max(1.0, abs(float(top[0])))))
        assert int(lg[0].argmax()) == int(new[step])
    assert int(gen.logits[0][0].argmax()) == int(out.logits[0, -1].argmax())
    assert torch.allclose(gen.logits[0][0], out.logits[0, -1], atol=1e-4, rtol=1e-4)
    stopped = len(new) > 0 and int(new[-1]) in eos
    win = None
    if has_img:  # HF's window permutation of merged tokens (debug aid; vision.block.* rows follow it in groups of 4)
        from transformers.vision_utils import get_vision_window_index
        vc = cfg.vision_config
        win = get_vision_window_index(inputs["image_grid_thw"], vc.spatial_merge_size, vc.window_size, vc.patch_size)
    info = {
        "prompt": prompt, "image_paths": paths, "S": S, "logits_K": K,
        "n_patches": int(g["pixel_values"].shape[0]) if has_img else 0,
        "image_grid_thw": g["image_grid_thw"].tolist() if has_img else [],
        "n_image_tokens": int((ids == cfg.image_token_id).sum()),
        "vision_window_index": win[0].tolist() if has_img else None,
        "vision_cu_window_seqlens": win[1].tolist() if has_img else None,
        "pixel_values_crc32": zlib.crc32(g["pixel_values"].numpy().astype("<f4").tobytes()) if has_img else None,
        "pixel_values_sum": float(g["pixel_values"].double().sum()) if has_img else None,
        "generated_ids": new.tolist(),
        "generated_text": proc.tokenizer.decode(new, skip_special_tokens=True),
        "stopped_at_eos": stopped, "eos_token_id": eos, "max_new_tokens": max_new_tokens,
        "top2_rel_margins": [round(m, 5) for m in margins],
        "rope_deltas": int(deltas),
    }
    verify(g, cfg, info)
    return g, info, cfg


def verify(g, cfg, info):
    S = g["input_ids"].shape[0]
    vc, tc = cfg.vision_config, cfg.text_config
    H, V = tc.hidden_size, tc.vocab_size
    assert g["position_ids"].shape == (3, S) and g["rope_deltas"].shape == (1,)
    assert g["lm.embeds"].shape == (S, H) and g["lm.norm"].shape == (S, H)
    for i in range(tc.num_hidden_layers):
        assert g[f"lm.layer.{i}"].shape == (S, H)
    assert g["logits"].shape == (min(S, LOGITS_K), V)
    img = g["input_ids"] == cfg.image_token_id
    if "pixel_values" in g:
        N = g["pixel_values"].shape[0]
        assert g["pixel_values"].shape == (N, 1176)
        assert N == int(g["image_grid_thw"].prod(-1).sum())
        assert int(img.sum()) == N // 4
        assert g["vision.patch_embed"].shape == (N, vc.hidden_size)
        for i in range(vc.depth):
            assert g[f"vision.block.{i}"].shape == (N, vc.hidden_size)
        assert g["vision.merger"].shape == (N // 4, H)
        assert torch.equal(g["vision.merger"], g["lm.embeds"][img]), "merger rows != embeds at image positions"
    else:
        assert int(img.sum()) == 0
    for k, v in g.items():
        assert torch.isfinite(v.double()).all(), k
    assert min(info["top2_rel_margins"]) >= 1e-3, info["top2_rel_margins"]


def save_golden(g, path):
    out = {}
    for k, v in g.items():
        out[k] = v.contiguous().to(torch.int64 if k in ("input_ids", "image_grid_thw", "position_ids",
                                                         "rope_deltas", "generated_ids") else torch.float32)
    save_file(out, path, metadata={"producer": "tools/make_model_golden.py"})
    # reload check
    back = load_file(path)
    assert back.keys() == out.keys() and all(torch.equal(back[k], out[k]) for k in out)


def config_summary(cfg):
    tc, vc = cfg.text_config, cfg.vision_config
    return {
        "text": {"hidden": tc.hidden_size, "layers": tc.num_hidden_layers, "heads": tc.num_attention_heads,
                 "kv_heads": tc.num_key_value_heads, "head_dim": tc.hidden_size // tc.num_attention_heads,
                 "intermediate": tc.intermediate_size, "mrope_section": tc.rope_parameters["mrope_section"],
                 "rms_norm_eps": tc.rms_norm_eps, "vocab": tc.vocab_size,
                 "tie_word_embeddings": bool(cfg.tie_word_embeddings)},
        "vision": {"hidden": vc.hidden_size, "depth": vc.depth, "heads": vc.num_heads,
                   "head_dim": vc.hidden_size // vc.num_heads, "intermediate": vc.intermediate_size,
                   "window_size": vc.window_size, "fullatt_block_indexes": vc.fullatt_block_indexes,
                   "out_hidden": vc.out_hidden_size},
    }


TOLERANCES = ("Reference is HF float32 eager on CPU. Suggested checks for a f32 C++ path: every F32 tensor "
              "max|a-b| <= 1e-4 * max(1, max|golden|) (vision.block.* and lm.layer.* may need 5e-4 in deeper "
              "layers); pixel_values bit-exact (PIL path; with Pillow 9 vs 13 differences see "
              "tests/data/images/golden.json); input_ids, image_grid_thw, position_ids, rope_deltas exact; "
              "argmax(logits) and generated_ids exact (top2_rel_margins >= 1e-3 by construction).")

# ---------------------------------------------------------------------------------------------- cases
IMG = "tests/data/images/"
CASES = [
    {
        "name": "gqa2_win56", "seed": 1031, "max_pixels": 30000,
        "text": {"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                 "intermediate_size": 96, "rope_parameters": {"mrope_section": [2, 3, 3], "rope_theta": 1e6,
                                                              "rope_type": "default"}},
        "vision": {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "depth": 2,
                   "fullatt_block_indexes": [1], "window_size": 56},
        "messages": [{"role": "user", "content": [{"type": "image", "image": IMG + "chelsea.png"},
                                                  {"type": "text", "text": "Describe this image."}]}],
        "note": "chelsea.png 451x300 RGB → 196x140 px, grid 10x14 patches (merged 5x7): not a multiple of the "
                "2x2-merged window (56 px) in either dim → window padding in both dims.",
    },
    {
        "name": "gqa6_win112_odd", "seed": 1002, "max_pixels": 20000,
        "text": {"num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 1, "head_dim": 8,
                 "intermediate_size": 80, "rms_norm_eps": 1e-5,
                 "rope_parameters": {"mrope_section": [2, 1, 1], "rope_theta": 1e6, "rope_type": "default"}},
        "vision": {"hidden_size": 48, "num_heads": 3, "intermediate_size": 37, "depth": 3,
                   "fullatt_block_indexes": [2], "window_size": 112},
        "messages": [{"role": "user", "content": [{"type": "image", "image": IMG + "camera_gray.jpg"},
                                                  {"type": "text", "text": "and"},
                                                  {"type": "image", "image": IMG + "rgba_29x57.png"},
                                                  {"type": "text", "text": "What is in these pictures?"}]}],
        "note": "camera_gray.jpg 256x256 L (gray→RGB) → 140x140, grid 10x10 (merged 5x5, window 4 merged → "
                "padding); rgba_29x57.png 29x57 RGBA (alpha over white) upscaled by min_pixels → 56x84, grid "
                "6x4 (merged 3x2, smaller than one window). GQA group 6, odd vision MLP width 37, eps 1e-5.",
    },
    {
        "name": "mha_text_only", "seed": 1003, "naming": "4.52", "tie": True,
        "text": {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 8,
                 "intermediate_size": 64, "rope_parameters": {"mrope_section": [2, 1, 1], "rope_theta": 1e6,
                                                              "rope_type": "default"}},
        "vision": {"hidden_size": 16, "num_heads": 1, "intermediate_size": 16, "depth": 1,
                   "fullatt_block_indexes": [0], "window_size": 112},
        "messages": [{"role": "system", "content": "You are a careful assistant."},
                     {"role": "user", "content": "What color is the sky?"},
                     {"role": "assistant", "content": "blue"},
                     {"role": "user", "content": [{"type": "text", "text": "And the grass?"}]}],
        "note": "Text only (no pixel_values / vision.* tensors), multi-turn with a system message; MHA; the "
                "checkpoint uses transformers-4.52 key names and tie_word_embeddings true (no lm_head.weight: "
                "lm_head = model.language_model.embed_tokens.weight).",
    },
]
TRAINED_ITEMS = ["count-0000", "text-0000", "stamp_caption-0000"]
SECONDARY_DROP = ("pixel_values", "vision.patch_embed", "vision.block.", "lm.layer.")


def write_case_json(path, d):
    with open(path, "w") as f:
        json.dump(d, f, indent=2, ensure_ascii=False)
        f.write("\n")


def versions():
    import PIL
    return {"transformers": transformers.__version__, "torch": torch.__version__, "pillow": PIL.__version__,
            "python": sys.version.split()[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="case names to (re)generate")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        if args.only and case["name"] not in args.only:
            continue
        cdir = os.path.join(OUT, case["name"])
        if os.path.exists(cdir):
            shutil.rmtree(cdir)
        mdir = os.path.join(cdir, "model")
        ref = write_checkpoint(case, mdir)
        g, info, cfg = run_case(mdir, case["messages"], 12, ref_model=ref)
        save_golden(g, os.path.join(cdir, "golden.safetensors"))
        d = {"case": case["name"], "description": case["note"],
             "model_dir": os.path.relpath(mdir, ROOT),
             "checkpoint_key_naming": key_naming(os.path.join(mdir, "model.safetensors")),
             "weights": "random, seed %d, BF16 on disk; HF ran with them upcast to float32" % case["seed"],
             "messages": case["messages"], **info, "config": config_summary(cfg),
             "golden_files": ["golden.safetensors"], "versions": versions(),
             "reference": "Qwen2_5_VLForConditionalGeneration float32, attn_implementation=eager, "
                          "Qwen2VLImageProcessorPil, greedy generate",
             "tolerances": TOLERANCES}
        write_case_json(os.path.join(cdir, "case.json"), d)
        print(f"== {case['name']}: S={info['S']} N={info['n_patches']} grid={info['image_grid_thw']} "
              f"gen={info['generated_ids']} stopped={info['stopped_at_eos']} "
              f"min_margin={min(info['top2_rel_margins']):.4f}")

    if not args.only or "trained_heldout" in args.only:
        cdir = os.path.join(OUT, "trained_heldout")
        if os.path.exists(cdir):
            shutil.rmtree(cdir)
        os.makedirs(cdir)
        items = {}
        with open(os.path.join(ROOT, "data", "heldout", "heldout.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                if r["id"] in TRAINED_ITEMS:
                    items[r["id"]] = r
        mdir = os.path.join(ROOT, TRAINED)
        entries = []
        cfg = None
        for iid in TRAINED_ITEMS:
            r = items[iid]
            msgs = json.loads(json.dumps(r["messages"]))
            for m in msgs:
                for c in m["content"] if isinstance(m["content"], list) else []:
                    if c.get("type") == "image":
                        c["image"] = "data/heldout/" + c["image"]
            g, info, cfg = run_case(mdir, msgs, 48)
            if iid != TRAINED_ITEMS[0]:  # size budget: per-layer intermediates only for the first item
                g = {k: v for k, v in g.items() if not k.startswith(SECONDARY_DROP)}
            info["tensors"] = sorted(g.keys())
            save_golden(g, os.path.join(cdir, f"golden_{iid}.safetensors"))
            entries.append({"id": iid, "task": r["task"], "answer": r["answer"], "messages": msgs,
                            "golden_file": f"golden_{iid}.safetensors", **info,
                            "matches_answer": info["generated_text"].strip().lower().rstrip(".")
                            == r["answer"].strip().lower().rstrip(".")})
            print(f"== trained {iid}: S={info['S']} N={info['n_patches']} gen={info['generated_ids']} "
                  f"text={info['generated_text']!r} expected={r['answer']!r} stopped={info['stopped_at_eos']} "
                  f"min_margin={min(info['top2_rel_margins']):.4f}")
        h = hashlib.sha256(open(os.path.join(mdir, "model.safetensors"), "rb").read()).hexdigest()
        d = {"case": "trained_heldout",
             "description": "The bundled trained model on 3 held-out items of different tasks (greedy, "
                            "max_new_tokens 48). No model/ folder: the checkpoint is model_dir.",
             "model_dir": TRAINED, "model_safetensors_sha256": h,
             "checkpoint_key_naming": key_naming(os.path.join(mdir, "model.safetensors")),
             "config": config_summary(cfg), "items": entries,
             "golden_files": [e["golden_file"] for e in entries], "versions": versions(),
             "reference": "Qwen2_5_VLForConditionalGeneration float32 (BF16 weights upcast), "
                          "attn_implementation=eager, Qwen2VLImageProcessorPil, greedy generate",
             "tolerances": TOLERANCES}
        write_case_json(os.path.join(cdir, "case.json"), d)


if __name__ == "__main__":
    main()
