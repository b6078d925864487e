# Builds the tiny random-weight BF16 Qwen2.5-VL base model and the calibration inputs (dev-time only).
"""Run in /root/venv-mo035 (transformers 4.55.4), see run_all.sh.

Writes
  tests/data/ref_exports/calib/{astronaut,chelsea,coffee}.png   real photos (skimage data), resized
  tests/data/ref_exports/calib/calib.json                        token ids (text + image samples)
  tests/data/ref_exports/base-bf16/                              config.json, model.safetensors,
                                                                 generation_config.json,
                                                                 preprocessor_config.json
No tokenizer files are written: the tiny model's vocabulary (1024) is a folded view of the real
Qwen2.5 tokenizer (see common.py); the calibration token ids were produced with
/work/shared/data/qwen-tokenizer/tokenizer.json and folded.
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common as C  # noqa: E402

SKIMAGE = pathlib.Path("/usr/lib/python3/dist-packages/skimage/data")
TOKENIZER = pathlib.Path("/work/shared/data/qwen-tokenizer/tokenizer.json")

# (source photo, output size W x H, caption)
IMAGES = [
    ("astronaut.png", (112, 112), "An astronaut in a white space suit holding a helmet, an American flag behind her."),
    ("chelsea.png", (168, 112), "A ginger tabby cat looking to the left."),
    ("coffee.png", (168, 112), "A cup of coffee on a saucer with a spoon, seen from above."),
]

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps each weight to the nearest FP8 E4M3 value after dividing by a per-tensor scale.",
    "Vision-language models read an image as a sequence of patch embeddings before the text tokens.",
    "In 2025, many checkpoints were exported with calibrated key and value cache scales.",
]


def make_calib():
    from PIL import Image
    from tokenizers import Tokenizer

    C.CALIB_DIR.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(TOKENIZER))

    def enc(s):
        return tok.encode(s, add_special_tokens=False).ids

    text_samples = [C.map_real_ids(enc(t)) for t in TEXTS]
    image_samples = []
    for src, (w, h), caption in IMAGES:
        img = Image.open(SKIMAGE / src).convert("RGB")
        # centre crop to the target aspect ratio, then bicubic resize
        sw, sh = img.size
        tr = w / h
        if sw / sh > tr:
            nw = int(round(sh * tr))
            box = ((sw - nw) // 2, 0, (sw - nw) // 2 + nw, sh)
        else:
            nh = int(round(sw / tr))
            box = (0, (sh - nh) // 2, sw, (sh - nh) // 2 + nh)
        img = img.crop(box).resize((w, h), Image.BICUBIC)
        img.save(C.CALIB_DIR / src, optimize=True)
        gh, gw = h // 14, w // 14
        n_img_tokens = gh * gw // 4
        prompt = (
            "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
            "<|im_start|>assistant\n" + caption + "<|im_end|>"
        )
        ids = C.map_real_ids(enc(prompt))
        # expand the single <|image_pad|> to one token per merged 2x2 patch group
        k = ids.index(C.IMAGE_PAD)
        ids = ids[:k] + [C.IMAGE_PAD] * n_img_tokens + ids[k + 1 :]
        image_samples.append(
            dict(image=src, caption=caption, image_grid_thw=[1, gh, gw], input_ids=ids)
        )
    meta = dict(
        note=(
            "Token ids of the tiny vocab (512): real Qwen2.5 tokenizer ids folded with id % 480, "
            "special ids (>= 151643) shifted by -151163. Images: skimage data photos, centre-cropped and "
            "bicubic-resized; pixel_values = common.patchify(png)."
        ),
        texts=TEXTS,
        text_samples=text_samples,
        image_samples=image_samples,
    )
    (C.CALIB_DIR / "calib.json").write_text(json.dumps(meta, indent=1) + "\n")


def make_base():
    import transformers
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(C.SEED)
    np.random.seed(C.SEED)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(C.TEXT_CFG),
        vision_config=dict(C.VISION_CFG),
        **C.TOP_CFG,
        **{k: v for k, v in C.TEXT_CFG.items() if k not in ("bos_token_id", "eos_token_id")},
    )
    cfg.torch_dtype = torch.bfloat16
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.bfloat16).eval()
    # The default init leaves norms at 1 and biases at 0; perturb them so that every tensor carries
    # a distinguishable random value (helps C++ tests that compare tensors by value).
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".bias") or "norm" in n or "ln_q" in n:
                p.add_(torch.randn_like(p, dtype=torch.float32).to(p.dtype) * 0.05)
    out = C.fresh_dir(C.BASE_DIR)
    model.save_pretrained(out, safe_serialization=True)
    gen = dict(
        bos_token_id=C.ENDOFTEXT,
        pad_token_id=C.ENDOFTEXT,
        eos_token_id=[C.IM_END, C.ENDOFTEXT],
        do_sample=False,
        transformers_version=transformers.__version__,
    )
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    pre = dict(
        min_pixels=3136,
        max_pixels=12845056,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=C.IMAGE_MEAN,
        image_std=C.IMAGE_STD,
        image_processor_type="Qwen2VLImageProcessor",
        processor_class="Qwen2_5_VLProcessor",
    )
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    # sanity: forward on one text and one image sample
    with torch.no_grad():
        for b in C.text_batches():
            model(input_ids=b)
        for b in C.image_batches(torch.bfloat16):
            o = model(**b)
            assert torch.isfinite(o.logits.float()).all()
    C.write_provenance(
        out,
        dict(
            tool="tools/ref_exports/make_base.py",
            versions=C.versions("torch", "transformers", "safetensors"),
            seed=C.SEED,
            note="random weights (HF init, norms/biases perturbed by N(0,0.05)); BF16",
        ),
    )
    print("base written to", out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-calib", action="store_true")
    a = ap.parse_args()
    if not a.skip_calib:
        make_calib()
    make_base()
