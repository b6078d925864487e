#!/usr/bin/env python3
# Builds (1) the training bundle for tools/train/train.py (Tux Paint stamp sprites + captions, the byte-level BPE
# tokenizer, the DejaVu font) in an ignored folder that travels to the GPU machine, and (2) the committed held-out
# evaluation set data/heldout/ (PNG images + heldout.jsonl), from a different seed than training.
#
# Needs Debian packages tuxpaint-stamps-default and fonts-dejavu-core, and the reference venv:
#   apt-get install -y tuxpaint-stamps-default fonts-dejavu-core
#   /root/venv-ref/bin/python tools/train/prepare_data.py --bundle train_bundle --heldout data/heldout
# Deterministic: same inputs -> same split, tokenizer and held-out files.
import argparse
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_vl_data as D  # noqa: E402

STAMPS = "/usr/share/tuxpaint/stamps"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
SPRITE = 100          # sprites are stored with their longest side = 100 px (aspect kept), RGBA
BPE_VOCAB = 2026      # regular tokens; the 22 Qwen added tokens follow at 2026..2047
HELDOUT_FRACTION = 0.1
HELDOUT_COUNTS = {"color": 100, "shape": 100, "count": 120, "position": 100, "text": 120, "stamp_caption": 100}
HELDOUT_SEED = 1      # training pools use seed 0


def collect_stamps():
    items = []
    for d, _, files in os.walk(STAMPS):
        for f in sorted(files):
            if not f.endswith(".png") or f.endswith("_mirror.png"):
                continue
            base = os.path.join(d, f[:-4])
            if not os.path.exists(base + ".txt"):
                continue
            with open(base + ".txt", encoding="utf-8") as fh:
                caption = fh.readline().strip()
            if not caption:
                continue
            rel = os.path.relpath(base, STAMPS)
            items.append(dict(stamp=rel, caption=caption, category=D.stamp_category(rel)))
    items.sort(key=lambda x: x["stamp"])
    return items


def split(items):
    rng = np.random.default_rng(0)
    for cat in D.CATEGORIES:
        idx = [i for i, it in enumerate(items) if it["category"] == cat]
        held = set(rng.permutation(idx)[:round(len(idx) * HELDOUT_FRACTION)].tolist())
        for i in idx:
            items[i]["split"] = "heldout" if i in held else "train"


def load_sprite(rel):
    im = Image.open(os.path.join(STAMPS, rel + ".png"))
    im = im.convert("RGBA")  # P/LA/L/RGB -> RGBA (palette transparency becomes alpha)
    w, h = im.size
    s = SPRITE / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)


def make_tokenizer(captions):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(D.QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    corpus = list(captions) + D.training_texts() * 20
    tok.train_from_iterator(corpus, trainer)
    n = tok.get_vocab_size()
    for t, special in zip(D.SPECIALS, D.SPECIAL_IS_SPECIAL):
        a = AddedToken(t, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([a])
    for i, t in enumerate(D.SPECIALS):
        assert tok.token_to_id(t) == n + i, (t, tok.token_to_id(t), n + i)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default="train_bundle")
    ap.add_argument("--heldout", default="data/heldout")
    args = ap.parse_args()

    items = collect_stamps()
    split(items)
    train = [it for it in items if it["split"] == "train"]
    held = [it for it in items if it["split"] == "heldout"]
    print(f"stamps: {len(items)} ({len(train)} train, {len(held)} held out)")

    # ---- training bundle
    os.makedirs(args.bundle, exist_ok=True)
    sprites = np.zeros((len(items), SPRITE, SPRITE, 4), np.uint8)
    sizes = np.zeros((len(items), 2), np.int32)
    pil_sprites = []
    for i, it in enumerate(items):
        sp = load_sprite(it["stamp"])
        pil_sprites.append(sp)
        sizes[i] = sp.size
        sprites[i, :sp.size[1], :sp.size[0]] = np.asarray(sp)
    np.savez_compressed(os.path.join(args.bundle, "stamps.npz"), sprites=sprites, sizes=sizes)
    with open(os.path.join(args.bundle, "stamps.json"), "w") as f:
        json.dump(items, f, indent=1, ensure_ascii=False)
    tok = make_tokenizer([it["caption"] for it in train])
    tok.save(os.path.join(args.bundle, "tokenizer.json"))
    shutil.copy(FONT, os.path.join(args.bundle, "DejaVuSans-Bold.ttf"))
    print(f"tokenizer: {tok.get_vocab_size()} ids")

    # ---- held-out set
    img_dir = os.path.join(args.heldout, "images")
    if os.path.isdir(img_dir):
        shutil.rmtree(img_dir)
    os.makedirs(img_dir)
    rows = []

    def add(task, i, img, question, answer, extra=None):
        name = f"{task}-{i:04d}.png"
        img.save(os.path.join(img_dir, name), optimize=True)
        row = dict(id=f"{task}-{i:04d}", task=task, image=f"images/{name}", question=question,
                   messages=D.messages_for(question, f"images/{name}"), answer=answer,
                   choices=D.ANSWER_SETS.get(task), rule="exact_normalized")
        row.update(extra or {})
        rows.append(row)

    for task in D.SCENE_TASKS:
        for i in range(HELDOUT_COUNTS[task]):
            img, q, a = D.make_scene(HELDOUT_SEED, task, i, FONT)
            add(task, i, img, q, a)
    rng = np.random.default_rng(HELDOUT_SEED)
    train_idx = [i for i, it in enumerate(items) if it["split"] == "train"]
    for k, i in enumerate(sorted(rng.permutation(train_idx)[:HELDOUT_COUNTS["stamp_caption"]].tolist())):
        img = D.compose_stamp(pil_sprites[i], HELDOUT_SEED, "stamp_caption", k)
        add("stamp_caption", k, img, D.QUESTIONS["stamp_caption"], items[i]["caption"],
            dict(stamp=items[i]["stamp"], stamp_seen_in_training=True))
    held_idx = [i for i, it in enumerate(items) if it["split"] == "heldout"]
    for k, i in enumerate(held_idx):
        img = D.compose_stamp(pil_sprites[i], HELDOUT_SEED, "stamp_category", k)
        add("stamp_category", k, img, D.QUESTIONS["stamp_category"], items[i]["category"],
            dict(stamp=items[i]["stamp"], stamp_seen_in_training=False))
    with open(os.path.join(args.heldout, "heldout.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"held-out: {len(rows)} items in {args.heldout}")


if __name__ == "__main__":
    main()
