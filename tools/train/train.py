#!/usr/bin/env python3
# Trains the tiny Qwen2.5-VL (transformers' Qwen2_5_VLForConditionalGeneration, small widths/depths) from scratch on
# generated scenes (colour/shape/count/position/rendered words) and Tux Paint stamps (captions, categories) in the
# Qwen2.5-VL chat format, saves it in Hugging Face form (BF16 safetensors + config/tokenizer/processor files) and
# scores it on the held-out set with the stock transformers generate path.
#
# On the GPU machine (one H200; about 9 minutes in all), from the repository root:
#   python3 tools/train/train.py --bundle train_bundle --heldout data/heldout --out $OUT/model
# Quick CPU smoke test (minutes, nothing meaningful learned):
#   /root/venv-ref/bin/python tools/train/train.py --device cpu --smoke --out /tmp/tiny-smoke
#
# Training details (all deterministic given the seed, up to GPU reduction order):
#  - pools made once with multiprocessing: SCENE_POOL images per scene task (seed 0) and STAMP_VARIANTS random
#    compositions of every training stamp (seed 0); each stamp image is used with both stamp questions;
#  - images live on the GPU as uint8; pixel_values are built on the GPU with exactly the slow Qwen2-VL processor's
#    arithmetic and patch order (checked against AutoProcessor at start-up);
#  - loss: cross entropy on the assistant answer tokens and the closing <|im_end|> only;
#  - speed: the vision window/rotary indices are precomputed once per batch shape (transformers' vision_utils
#    accept them as kwargs) and the vision attention runs as one batched SDPA over equal-length segments instead of
#    a Python loop over 1000+ windows; both are checked against the stock forward at start-up (fp32 logits) and
#    the stock code is restored before saving and evaluating.
import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_vl_data as D  # noqa: E402

import transformers  # noqa: E402
from transformers import (GenerationConfig, PreTrainedTokenizerFast, Qwen2_5_VLConfig,  # noqa: E402
                          Qwen2_5_VLForConditionalGeneration)
from transformers import vision_utils as VU  # noqa: E402
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as QM  # noqa: E402

MIN_PIXELS, MAX_PIXELS = 56 * 56, D.IMAGE_SIZE * D.IMAGE_SIZE  # 112x112 stays 112x112; larger inputs shrink
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]
PATCH, MERGE, TEMPORAL = 14, 2, 2
GRID = D.IMAGE_SIZE // PATCH                     # 8 patches a side
N_IMAGE_TOKENS = (GRID // MERGE) ** 2            # 16 LLM tokens per image

TEXT = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-6, hidden_act="silu",
            max_window_layers=4, use_sliding_window=False, attention_dropout=0.0, initializer_range=0.02,
            use_cache=True)
MROPE = [8, 12, 12]  # sums to head_dim/2 = 64/2, same 1:1.5:1.5 split as Qwen2.5-VL's [16, 24, 24]
VISION = dict(depth=4, hidden_size=128, intermediate_size=512, num_heads=4, out_hidden_size=256,
              fullatt_block_indexes=[1, 3], window_size=56, patch_size=PATCH, spatial_merge_size=MERGE,
              temporal_patch_size=TEMPORAL, tokens_per_second=2, hidden_act="silu", in_channels=3,
              initializer_range=0.02)
TASK_WEIGHTS = {"color": 1.0, "shape": 1.0, "count": 1.5, "position": 1.5, "text": 1.5, "stamp_caption": 3.0,
                "stamp_category": 1.5}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Pools (multiprocessing workers)
_W = {}


def _init_worker(font, npz_path):
    _W["font"] = font
    if npz_path:
        z = np.load(npz_path)
        _W["sprites"], _W["sizes"] = z["sprites"], z["sizes"]


def _scene_job(args):
    task, i = args
    img, q, a = D.make_scene(0, task, i, _W["font"])
    return np.asarray(img, dtype=np.uint8), q, a


def _stamp_job(args):
    stamp_idx, variant, n_variants = args
    w, h = _W["sizes"][stamp_idx]
    sprite = Image.fromarray(_W["sprites"][stamp_idx, :h, :w], "RGBA")
    img = D.compose_stamp(sprite, 0, "stamp_caption", stamp_idx * n_variants + variant)
    return np.asarray(img, dtype=np.uint8)


def build_pools(bundle, scene_pool, stamp_variants, workers):
    font = os.path.join(bundle, "DejaVuSans-Bold.ttf")
    npz = os.path.join(bundle, "stamps.npz")
    with open(os.path.join(bundle, "stamps.json"), encoding="utf-8") as f:
        stamps = json.load(f)
    train_idx = [i for i, s in enumerate(stamps) if s["split"] == "train"]
    images, examples = [], []  # examples: (task, image index, question, answer)
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(font, npz)) as pool:
        for task in D.SCENE_TASKS:
            for img, q, a in pool.map(_scene_job, [(task, i) for i in range(scene_pool)], chunksize=256):
                examples.append((task, len(images), q, a))
                images.append(img)
        jobs = [(i, v, stamp_variants) for i in train_idx for v in range(stamp_variants)]
        for (i, _, _), img in zip(jobs, pool.map(_stamp_job, jobs, chunksize=64)):
            examples.append(("stamp_caption", len(images), D.QUESTIONS["stamp_caption"], stamps[i]["caption"]))
            examples.append(("stamp_category", len(images), D.QUESTIONS["stamp_category"], stamps[i]["category"]))
            images.append(img)
    return np.stack(images), examples, stamps


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer, config and the non-weight files of the checkpoint
def make_tokenizer(bundle):
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(bundle, "tokenizer.json"), bos_token=None,
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                                  model_max_length=2048, clean_up_tokenization_spaces=False)
    tok.chat_template = D.CHAT_TEMPLATE
    return tok


def token_ids(tok):
    return {t: tok.convert_tokens_to_ids(t) for t in D.SPECIALS}


def build_config(tok):
    ids = token_ids(tok)
    vocab = int(math.ceil(len(tok) / 128) * 128)
    text = dict(TEXT, vocab_size=vocab, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"],
                rope_parameters={"rope_type": "default", "mrope_section": MROPE, "rope_theta": 1000000.0},
                tie_word_embeddings=False)
    return Qwen2_5_VLConfig(text_config=text, vision_config=dict(VISION), tie_word_embeddings=False,
                            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                            pad_token_id=ids["<|endoftext|>"])


def generation_config(tok):
    ids = token_ids(tok)
    return GenerationConfig(bos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                            eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], do_sample=False,
                            max_new_tokens=48)


def write_side_files(out, tok):
    """tokenizer.json, tokenizer_config.json, chat_template.jinja, preprocessor_config.json."""
    os.makedirs(out, exist_ok=True)
    tok.save_pretrained(out)
    with open(os.path.join(out, "chat_template.jinja"), "w") as f:
        f.write(D.CHAT_TEMPLATE)
    pre = {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD, "image_processor_type": "Qwen2VLImageProcessor",
           "processor_class": "Qwen2_5_VLProcessor", "merge_size": MERGE, "patch_size": PATCH,
           "temporal_patch_size": TEMPORAL, "resample": 3, "rescale_factor": 1 / 255,
           "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
           "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}}
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------------------------------------------
# Examples -> padded tensors
def encode_examples(tok, examples):
    ids = token_ids(tok)
    im_end = ids["<|im_end|>"]
    prompt_cache, answer_cache, rows = {}, {}, []
    for task, img, q, a in examples:
        if q not in prompt_cache:
            text = tok.apply_chat_template(D.messages_for(q), add_generation_prompt=True, tokenize=False)
            text = text.replace("<|image_pad|>", "<|image_pad|>" * N_IMAGE_TOKENS)
            prompt_cache[q] = tok(text, add_special_tokens=False)["input_ids"]
        p = prompt_cache[q]
        if a not in answer_cache:
            answer_cache[a] = tok(a, add_special_tokens=False)["input_ids"] + [im_end]
        ans = answer_cache[a]
        rows.append((D.TASKS.index(task), img, p, ans))
    # the split tokenisation must equal tokenising the whole rendered conversation
    for task, img, q, a in examples[:: max(1, len(examples) // 50)]:
        msgs = D.messages_for(q) + [{"role": "assistant", "content": a}]
        full = tok.apply_chat_template(msgs, tokenize=False).replace("<|image_pad|>",
                                                                     "<|image_pad|>" * N_IMAGE_TOKENS)
        want = tok(full, add_special_tokens=False)["input_ids"]
        got = prompt_cache[q] + tok(a, add_special_tokens=False)["input_ids"] + [im_end]
        assert want[:len(got)] == got, (q, a)
    L = max(len(p) + len(a) for _, _, p, a in rows)
    E = len(rows)
    inp = np.full((E, L), ids["<|endoftext|>"], np.int64)
    tgt = np.full((E, L), -100, np.int64)
    pos = np.zeros((E, 3, L), np.int64)
    task = np.zeros(E, np.int64)
    img = np.zeros(E, np.int64)
    for e, (t, im, p, a) in enumerate(rows):
        seq = p + a
        inp[e, :len(seq)] = seq
        tgt[e, len(p) - 1:len(seq) - 1] = a
        pos[e] = rope_positions(seq, L, ids["<|image_pad|>"])
        task[e], img[e] = t, im
    return dict(inp=inp, tgt=tgt, pos=pos, task=task, img=img, L=L)


def rope_positions(seq, L, image_id):
    """M-RoPE position ids (3, L) of one sequence with one 4x4-token image (spec section 4.5); padding continues."""
    first = seq.index(image_id)
    side = GRID // MERGE
    pos = np.zeros((3, L), np.int64)
    pos[:, :first] = np.arange(first)
    yy, xx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    pos[0, first:first + side * side] = first
    pos[1, first:first + side * side] = first + yy.reshape(-1)
    pos[2, first:first + side * side] = first + xx.reshape(-1)
    rest = L - (first + side * side)
    pos[:, first + side * side:] = first + side + np.arange(rest)
    return pos


# ---------------------------------------------------------------------------------------------------------------
# Pixel values on the device (same arithmetic and layout as the slow Qwen2-VL image processor, spec section 2.2)
def pixel_values_from_u8(u8):
    """u8 [B, H, W, 3] uint8 (H = W = 112) -> [B*64, 1176] float32 in HF patch order."""
    B = u8.shape[0]
    x = (u8.double() * (1.0 / 255.0)).float()
    mean = torch.tensor(IMAGE_MEAN, device=u8.device, dtype=torch.float32)
    std = torch.tensor(IMAGE_STD, device=u8.device, dtype=torch.float32)
    x = ((x - mean) / std).permute(0, 3, 1, 2)                          # B, C, H, W
    x = x.unsqueeze(1).expand(B, TEMPORAL, 3, D.IMAGE_SIZE, D.IMAGE_SIZE)  # one image = 2 identical frames
    g = GRID // MERGE
    x = x.reshape(B, 1, TEMPORAL, 3, g, MERGE, PATCH, g, MERGE, PATCH)  # b t tt c bh mh py bw mw px
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)                         # b t bh bw mh mw c tt py px
    return x.reshape(B * GRID * GRID, 3 * TEMPORAL * PATCH * PATCH)


# ---------------------------------------------------------------------------------------------------------------
# Batched vision attention (training only; equal-length segments -> one SDPA call)
_SEG_LEN = {}
_ORIG_VISION_ATTN = QM.Qwen2_5_VLVisionAttention.forward


def _fast_vision_attn(self, hidden_states, cu_seqlens, position_embeddings=None, max_seqlen=None, **kwargs):
    seg = _SEG_LEN.get(id(cu_seqlens))
    if seg is None:
        return _ORIG_VISION_ATTN(self, hidden_states, cu_seqlens, position_embeddings=position_embeddings,
                                 max_seqlen=max_seqlen, **kwargs)
    n = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = QM.apply_rotary_pos_emb_vision(q, k, cos, sin)
    q, k, v = (t.reshape(n // seg, seg, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
    return self.proj(o.transpose(1, 2).reshape(n, -1))


def vision_kwargs(batch, device, window_size):
    grid = torch.tensor([[1, GRID, GRID]] * batch, device=device)
    cu = VU.get_vision_cu_seqlens(grid)
    posv = VU.get_vision_position_ids(grid, MERGE)
    widx, cuw = VU.get_vision_window_index(grid, MERGE, window_size, PATCH)
    widx, cuw = widx.to(device), cuw.to(device)
    for c in (cu, cuw):
        lens = (c[1:] - c[:-1]).tolist()
        if len(set(lens)) == 1:
            _SEG_LEN[id(c)] = lens[0]
    return grid, dict(cu_seqlens=cu, position_ids=posv, window_index=widx, cu_window_seqlens=cuw)


def forward_logits(model, inp, pos, u8, grid, vkw, sel=None):
    """Training forward: vision tower -> embedding merge -> decoder (M-RoPE positions given) -> lm_head."""
    pv = pixel_values_from_u8(u8)
    feats = model.model.visual(pv, grid_thw=grid, **dict(vkw)).pooler_output
    emb = model.get_input_embeddings()(inp)
    mask = (inp == model.config.image_token_id).unsqueeze(-1)
    emb = emb.masked_scatter(mask, feats.to(emb.dtype))
    h = model.model.language_model(inputs_embeds=emb, position_ids=pos.transpose(0, 1), use_cache=False)
    h = h.last_hidden_state
    return model.lm_head(h if sel is None else h[sel])


def check_against_stock(model, processor, data, images_np, device, window_size, n=6):
    """My batched path (fp32) must give the stock transformers forward's logits."""
    model.eval()
    idx = np.linspace(0, len(data["inp"]) - 1, n).astype(int)
    grid, vkw = vision_kwargs(n, device, window_size)
    inp = torch.from_numpy(data["inp"][idx]).to(device)
    pos = torch.from_numpy(data["pos"][idx]).to(device)
    u8 = torch.from_numpy(images_np[data["img"][idx]]).to(device)
    with torch.no_grad():
        QM.Qwen2_5_VLVisionAttention.forward = _fast_vision_attn
        mine = forward_logits(model, inp, pos, u8, grid, vkw)
        QM.Qwen2_5_VLVisionAttention.forward = _ORIG_VISION_ATTN
        worst = pv_diff = 0.0
        for j, e in enumerate(idx):
            L = int((data["tgt"][e] != -100).nonzero()[0].max()) + 2
            text = processor.tokenizer.decode(data["inp"][e][:L].tolist(), skip_special_tokens=False)
            text = text.replace("<|image_pad|>" * N_IMAGE_TOKENS, "<|image_pad|>")
            pil = Image.fromarray(images_np[data["img"][e]])
            enc = processor(text=[text], images=[pil], return_tensors="pt").to(device)
            assert enc["input_ids"][0].tolist() == data["inp"][e][:L].tolist(), "processor ids differ"
            pv_mine = pixel_values_from_u8(u8[j:j + 1])
            pv_diff = max(pv_diff, (enc["pixel_values"].float() - pv_mine).abs().max().item())
            ref = model(**enc).logits[0]
            worst = max(worst, (ref - mine[j, :L]).abs().max().item())
    log(f"check: batched training path vs stock forward (processor + model), max |logit diff| = {worst:.2e}, "
        f"max |pixel_values diff| = {pv_diff:.2e}")
    assert worst < 5e-2 and pv_diff < 1e-3, (worst, pv_diff)  # a layout/position bug gives O(1) differences
    model.train()


# ---------------------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default="train_bundle")
    ap.add_argument("--heldout", default="data/heldout")
    ap.add_argument("--out", required=True, help="output folder for the checkpoint")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--time-budget", type=float, default=380.0,
                    help="seconds for the optimisation loop; --steps is lowered at step 40 to fit")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--scene-pool", type=int, default=16000)
    ap.add_argument("--stamp-variants", type=int, default=32)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--eval-batch", type=int, default=96)
    ap.add_argument("--eval-limit", type=int, default=None, help="at most this many held-out rows per task")
    ap.add_argument("--smoke", action="store_true", help="tiny pools and steps, for a CPU test")
    ap.add_argument("--export", default=None,
                    help="also copy model.safetensors, checkpoint.tgz (the other files) and eval_bf16.json here")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.batch, args.scene_pool, args.stamp_variants, args.warmup = 12, 16, 40, 1, 4
    t_start = time.time()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device(args.device)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}")

    tok = make_tokenizer(args.bundle)
    # pools first: the workers are forked before CUDA is initialised
    t0 = time.time()
    images_np, examples, _ = build_pools(args.bundle, args.scene_pool, args.stamp_variants, args.workers)
    data = encode_examples(tok, examples)
    log(f"pools: {len(images_np)} images, {len(examples)} examples, seq len {data['L']}, "
        f"{time.time() - t0:.1f}s")
    cfg = build_config(tok)
    cfg._attn_implementation = "sdpa"
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(device)
    model.generation_config = generation_config(tok)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters ({n_params * 2 / 1e6:.1f} MB in BF16), vocab {cfg.text_config.vocab_size}"
        f" (tokenizer {len(tok)})")
    write_side_files(args.out, tok)
    import eval_heldout
    processor = eval_heldout.load_processor(args.out)
    ip = processor.image_processor
    log(f"processor: {type(processor).__name__} / {type(ip).__name__}, size {getattr(ip, 'size', None)}, "
        f"min/max pixels {getattr(ip, 'min_pixels', None)}/{getattr(ip, 'max_pixels', None)}")

    check_against_stock(model, processor, data, images_np, device, VISION["window_size"])

    # device-resident data
    IM = torch.from_numpy(images_np).to(device)
    INP = torch.from_numpy(data["inp"]).to(device)
    TGT = torch.from_numpy(data["tgt"]).to(device)
    POS = torch.from_numpy(data["pos"]).to(device)
    TASK = torch.from_numpy(data["task"]).to(device)
    IMG = torch.from_numpy(data["img"]).to(device)
    order = torch.argsort(TASK, stable=True)
    counts = torch.bincount(TASK, minlength=len(D.TASKS))
    starts = torch.cumsum(counts, 0) - counts
    weights = torch.tensor([TASK_WEIGHTS[t] for t in D.TASKS], device=device, dtype=torch.float)
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8, fused=(device.type == "cuda"))
    grid, vkw = vision_kwargs(args.batch, device, VISION["window_size"])
    QM.Qwen2_5_VLVisionAttention.forward = _fast_vision_attn
    use_amp = device.type == "cuda"
    total = args.steps
    model.train()
    t_loop = time.time()
    stats = torch.zeros(len(D.TASKS), 2, device=device)
    step = 0
    while step < total:
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        if step >= args.warmup:
            lr = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - args.warmup) /
                                                             max(1, total - args.warmup))))
        for g in opt.param_groups:
            g["lr"] = lr
        t = torch.multinomial(weights, args.batch, replacement=True, generator=gen)
        r = torch.rand(args.batch, device=device, generator=gen)
        e = order[starts[t] + (r * counts[t]).long().clamp(max=counts[t] - 1)]
        inp, tgt, pos = INP[e], TGT[e], POS[e]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = forward_logits(model, inp, pos, IM[IMG[e]], grid, vkw)  # all positions: no host sync
        loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():  # teacher-forced "whole answer right" rate per task on the training batch
            ex_ok = ((logits.argmax(-1) == tgt) | (tgt == -100)).all(1).float()
            stats.index_add_(0, TASK[e], torch.stack([ex_ok, torch.ones_like(ex_ok)], 1))
        if step == 10 and device.type == "cuda":
            torch.cuda.synchronize()
            t10 = time.time()
        if step == 40 and device.type == "cuda":
            torch.cuda.synchronize()
            per_step = (time.time() - t10) / 30
            total_budget = args.time_budget - (time.time() - t_loop)
            fit = 40 + int(total_budget / per_step)
            if fit < total:
                total = max(args.warmup + 100, fit)
            log(f"{per_step * 1000:.1f} ms/step -> {total} steps")
        if step % args.log_every == 0 or step == total:
            acc = (stats[:, 0] / stats[:, 1].clamp(min=1)).tolist()
            log(f"step {step:5d} lr {lr:.2e} loss {loss.item():.4f} {time.time() - t_loop:6.1f}s | " +
                " ".join(f"{t}={a:.2f}" for t, a in zip(D.TASKS, acc)))
            stats.zero_()
    train_secs = time.time() - t_loop
    QM.Qwen2_5_VLVisionAttention.forward = _ORIG_VISION_ATTN
    log(f"trained {total} steps x {args.batch} in {train_secs:.1f}s")

    # save BF16 checkpoint
    model.eval()
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out)
    write_side_files(args.out, tok)  # save_pretrained does not write the tokenizer/processor files
    info = dict(steps=total, batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed,
                scene_pool=args.scene_pool, stamp_variants=args.stamp_variants, train_seconds=round(train_secs, 1),
                params=n_params, images=len(images_np), examples=len(examples), seq_len=data["L"],
                torch=torch.__version__, transformers=transformers.__version__,
                device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu")
    with open(os.path.join(args.out, "train_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    del IM, INP, TGT, POS
    log(f"saved {args.out}: " + ", ".join(f"{n} {os.path.getsize(os.path.join(args.out, n))}"
                                          for n in sorted(os.listdir(args.out))))
    if args.export:
        os.makedirs(args.export, exist_ok=True)
        shutil.copy(os.path.join(args.out, "model.safetensors"), args.export)
        with tarfile.open(os.path.join(args.export, "checkpoint.tgz"), "w:gz") as tf:
            for n in sorted(os.listdir(args.out)):
                if n != "model.safetensors":
                    tf.add(os.path.join(args.out, n), arcname=n)

    # held-out evaluation with the stock transformers path, reloaded from disk in BF16
    res = eval_heldout.evaluate(args.out, args.heldout, device=device, dtype=torch.bfloat16,
                                batch_size=args.eval_batch, limit=3 if args.smoke else args.eval_limit, log=log)
    for d in [args.out] + ([args.export] if args.export else []):
        with open(os.path.join(d, "eval_bf16.json"), "w") as f:
            json.dump(res, f, indent=1, ensure_ascii=False)
    log(f"total {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    main()
