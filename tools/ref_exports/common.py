# Shared helpers for the reference-export scripts: tiny Qwen2.5-VL config, calibration inputs, paths.
"""Dev-time only. Imported by make_base.py, modelopt_export.py, llmc_export.py and
write_expected.py, which run in different virtual environments (different torch /
transformers versions), so this module only needs numpy, Pillow, torch and safetensors.

Token ids of the tiny model: vocab_size 512. Regular Qwen2.5 token ids are folded with
`id % 480`; Qwen special tokens (real id >= 151643) are shifted by -151163, so
<|endoftext|> 151643 -> 480, <|im_start|> 481, <|im_end|> 482, <|vision_start|> 489,
<|vision_end|> 490, <|vision_pad|> 491, <|image_pad|> 492, <|video_pad|> 493.
"""

import json
import os
import pathlib

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
OUT_ROOT = REPO / "tests" / "data" / "ref_exports"
BASE_DIR = OUT_ROOT / "base-bf16"
CALIB_DIR = OUT_ROOT / "calib"

SEED = 1234
SPECIAL_SHIFT = 151163  # real Qwen special id - SPECIAL_SHIFT = tiny id
VOCAB = 512
FOLD = 480
ENDOFTEXT, IM_START, IM_END = 480, 481, 482
VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD = 489, 490, 491, 492, 493

TEXT_CFG = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,  # head_dim 16
    num_key_value_heads=2,  # GQA 2:1
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},  # sums to head_dim/2
    hidden_act="silu",
    tie_word_embeddings=False,  # like Qwen2.5-VL-7B (3B ties)
    use_sliding_window=False,
    sliding_window=4096,
    max_window_layers=2,
    attention_dropout=0.0,
    bos_token_id=ENDOFTEXT,
    eos_token_id=IM_END,
)

VISION_CFG = dict(
    depth=2,
    hidden_size=64,
    intermediate_size=128,  # divisible by 16 (the real 3420 is not: field bug F19)
    num_heads=2,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    tokens_per_second=2,
    window_size=56,  # 56/2/14 = 2x2 merged units per window
    out_hidden_size=64,  # = text hidden
    fullatt_block_indexes=[1],  # block 0 windowed, block 1 full attention
    hidden_act="silu",
)

TOP_CFG = dict(
    image_token_id=IMAGE_PAD,
    video_token_id=VIDEO_PAD,
    vision_start_token_id=VISION_START,
    vision_end_token_id=VISION_END,
    vision_token_id=VISION_PAD,
    bos_token_id=ENDOFTEXT,
    eos_token_id=IM_END,
)

# CLIP normalisation used by Qwen2VLImageProcessor.
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def map_real_ids(ids):
    """Fold real Qwen2.5 token ids into the tiny vocabulary (see module docstring)."""
    out = []
    for i in ids:
        out.append(i - SPECIAL_SHIFT if i >= 151643 else i % FOLD)
    return out


def patchify(img_path):
    """Qwen2-VL image patchification of an RGB PNG whose sides are multiples of 28.

    Returns (pixel_values float32 [grid_h*grid_w, 3*2*14*14], grid_thw [1, gh, gw]).
    Same order as Qwen2VLImageProcessor (rescale 1/255, CLIP normalise, frame repeated to
    temporal_patch_size 2, patches grouped by 2x2 merge windows)."""
    from PIL import Image

    img = np.asarray(Image.open(img_path).convert("RGB"), dtype=np.float32) / 255.0
    img = (img - np.array(IMAGE_MEAN, np.float32)) / np.array(IMAGE_STD, np.float32)
    chw = img.transpose(2, 0, 1)  # C,H,W
    p, m, t = 14, 2, 2
    c, h, w = chw.shape
    assert h % (p * m) == 0 and w % (p * m) == 0, img_path
    frames = np.stack([chw] * t)  # T,C,H,W
    gh, gw = h // p, w // p
    x = frames.reshape(1, t, c, gh // m, m, p, gw // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    x = x.reshape(gh * gw, c * t * p * p)
    return x.astype(np.float32), [1, gh, gw]


def load_calib():
    """Returns (text_samples, image_samples).

    text_samples: list of 1-D int64 token-id lists.
    image_samples: list of dicts {input_ids, pixel_values (np.float32), image_grid_thw}."""
    meta = json.loads((CALIB_DIR / "calib.json").read_text())
    images = []
    for s in meta["image_samples"]:
        pv, thw = patchify(CALIB_DIR / s["image"])
        assert thw == s["image_grid_thw"], (thw, s)
        images.append(dict(input_ids=s["input_ids"], pixel_values=pv, image_grid_thw=thw))
    return meta["text_samples"], images


def text_batches(device="cpu"):
    import torch

    texts, _ = load_calib()
    return [torch.tensor([t], dtype=torch.long, device=device) for t in texts]


def image_batches(dtype, device="cpu"):
    import torch

    _, imgs = load_calib()
    out = []
    for s in imgs:
        ids = torch.tensor([s["input_ids"]], dtype=torch.long, device=device)
        out.append(
            dict(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=torch.from_numpy(s["pixel_values"]).to(dtype=dtype, device=device),
                image_grid_thw=torch.tensor([s["image_grid_thw"]], dtype=torch.long, device=device),
            )
        )
    return out


def versions(*names):
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


def write_provenance(out_dir, info):
    """Write provenance.json (tool versions, recipe, command) next to an export."""
    p = pathlib.Path(out_dir) / "provenance.json"
    p.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def fresh_dir(path):
    import shutil

    path = pathlib.Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def cpu_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
