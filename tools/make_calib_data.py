#!/usr/bin/env python3
# Regenerates data/calib/ (the default calibration set of `vlq quantize`): images/ (Tux Paint stamps and
# scikit-image sample photos, small PNGs with same-named .txt captions), text.jsonl (short original English
# texts) and sources.tsv (where every image comes from, and its licence).
#
#   /root/venv-ref/bin/python tools/make_calib_data.py [--out data/calib]
#
# Needs Pillow and the Debian packages tuxpaint-stamps-default and python3-skimage (only their data files are
# read). Deterministic: the stamps are chosen by SHA-256 of their path (no RNG), the pixels are a pure function
# of the inputs and the Pillow version (13.0 in the reference venv); PNG bytes may differ with another zlib.
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

from PIL import Image

STAMPS = "/usr/share/tuxpaint/stamps"
SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HELDOUT = os.path.join(REPO, "data", "heldout", "heldout.jsonl")

N_STAMPS = 51
SIZE = 112     # every image fits in 112x112
MIN_INK = 0.03  # stamps with fewer non-white pixels than this on the white canvas are skipped
SPRITE = 100   # stamps: longest side 100 px on a 112x112 white canvas (as the bundled model's training sprites)

# scikit-image sample photos: file, caption (ours), licence (from the docstrings in skimage/data/_fetchers.py).
PHOTOS = [
    ("astronaut.png", "An astronaut in an orange suit smiles in front of a flag.",
     "public domain (NASA Great Images)"),
    ("camera.png", "A black and white photo of a man with a camera on a tripod.", "CC0 (Lav Varshney)"),
    ("chelsea.png", "A close view of a tabby cat with green eyes.", "CC0 (Stefan van der Walt)"),
    ("coffee.png", "A cup of coffee on a red saucer with a spoon.", "CC0 (Rachel Michetti)"),
    ("rocket.jpg", "A rocket on a launch pad at night.", "public domain (SpaceX)"),
    ("hubble_deep_field.jpg", "Many small galaxies on a black sky.", "public domain (NASA)"),
    ("horse.png", "A black horse shape on a white background.", "CC0 (Andreas Preuss, openclipart)"),
    ("coins.png", "Rows of old coins on a dark background.",
     "no known copyright restrictions (Brooklyn Museum)"),
    ("clock_motion.png", "A blurred gray clock on a wall.", "public domain (Stefan van der Walt)"),
    ("retina.jpg", "An orange photo of the back of an eye.", "CC0 (Mikael Haggstrom)"),
    ("brick.png", "A gray brick wall.", "CC0 (CC0Textures)"),
    ("grass.png", "A gray picture of grass.", "CC0 (DeviantArt, linolafett)"),
    ("gravel.png", "A gray picture of small stones.", "CC0 (CC0Textures)"),
]

# Short original English texts in the style of the held-out tasks (descriptions, questions and answers).
TEXTS = [
    "The red circle is on the left.",
    "A blue square sits in the top right corner.",
    "What color is the shape? The shape is green.",
    "How many shapes are there? There are four shapes.",
    "The yellow star is smaller than the purple triangle.",
    "Where is the orange shape? It is in the bottom left.",
    "What word is written in the picture? The word is moon.",
    "A small dog runs across a green field.",
    "Two cats sleep on a warm window sill.",
    "The boat is white and the sea is calm.",
    "What shape is this? It is a triangle.",
    "Three red circles and one blue square.",
    "The picture shows a tree with no leaves.",
    "A bird is sitting on a wire above the road.",
    "Describe this image. A cup of tea on a wooden table.",
    "The sun is low and the sky is orange.",
    "What kind of thing is this? It is an animal.",
    "What kind of thing is this? It is food.",
    "A red apple and a green pear lie next to each other.",
    "The word cake is written in dark letters.",
    "There is one shape in the middle of the image.",
    "The green square is above the blue circle.",
    "Count the stars: one, two, three, four, five.",
    "A purple shape on a light gray background.",
    "The lamp is on and the room is bright.",
    "Snow covers the roof of the small house.",
    "A frog sits on a leaf in the pond.",
    "The king wears a gold crown.",
    "Is the circle red or blue? It is red.",
    "The door is closed and the key is on the floor.",
    "Which corner is the star in? The bottom right corner.",
    "Six small shapes are spread across the picture.",
    "A fish swims near the bottom of the tank.",
    "The book is open on the first page.",
    "Rain falls on the street and the cars drive slowly.",
    "A rose has red petals and a green stem.",
    "The car is parked next to a tall tree.",
    "What color is the star? Yellow.",
    "A box with a blue lid stands on the shelf.",
    "The egg is in a white bowl.",
    "The ship sails toward the harbour in the morning.",
    "A hat hangs on a hook by the door.",
    "Milk is poured into a glass.",
    "Answer with one word: symbol, animal, food, place or object.",
    "The train stops at a small station in the hills.",
    "An orange triangle points up.",
    "Two shapes touch at one corner.",
    "The picture is mostly white with a dark shape in the centre.",
    "A bicycle leans against a fence.",
    "The clock on the wall shows three o'clock.",
    "A child draws a house with a red roof.",
    "The moon is full and bright tonight.",
    "There are no people in the picture.",
    "A green leaf floats on the water.",
    "Where is the blue shape? Top left.",
    "The square is bigger than the circle.",
    "A lighthouse stands on the rocks by the sea.",
    "The bread is fresh and still warm.",
    "An owl looks down from a branch.",
    "The stamp shows a smiling sun.",
    "Please describe the picture in one short sentence.",
    "A plate of pasta with tomato sauce.",
    "The kite flies high above the beach.",
    "The answer is five.",
]


def stamp_caption(base):
    with open(base + ".txt", encoding="utf-8") as fh:
        return fh.readline().strip()


def candidate_stamps(excluded):
    out = []
    for d, _, files in os.walk(STAMPS):
        for f in sorted(files):
            if not f.endswith(".png") or f.endswith("_mirror.png"):
                continue
            base = os.path.join(d, f[:-4])
            rel = os.path.relpath(base, STAMPS)
            if rel in excluded or not os.path.exists(base + ".txt"):
                continue
            cap = stamp_caption(base)
            if cap:
                out.append((rel, cap))
    return sorted(out)


def choose_stamps(cands, n):
    """Round-robin over top-level folders, each folder in SHA-256(path) order: spread over categories, no RNG."""
    by_top = {}
    for rel, cap in cands:
        by_top.setdefault(rel.split("/", 1)[0], []).append((hashlib.sha256(rel.encode()).hexdigest(), rel, cap))
    queues = {k: sorted(v) for k, v in sorted(by_top.items())}
    chosen, used_names = [], set()
    while len(chosen) < n and any(queues.values()):
        for k in sorted(queues):
            if queues[k] and len(chosen) < n:
                _, rel, cap = queues[k].pop(0)
                name = os.path.basename(rel).lower()
                if name in used_names or ink_fraction(stamp_image(rel)) < MIN_INK:
                    continue
                used_names.add(name)
                chosen.append((rel, cap))
    return chosen


def ink_fraction(im):
    """Share of pixels visibly darker than white (a white-on-transparent stamp vanishes on the white canvas)."""
    hist = im.convert("L").histogram()
    return sum(hist[:236]) / (im.width * im.height)


def on_white(im):
    im = im.convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, im).convert("RGB")


def stamp_image(rel):
    im = Image.open(os.path.join(STAMPS, rel + ".png")).convert("RGBA")
    w, h = im.size
    s = SPRITE / max(w, h)
    sp = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    canvas = Image.new("RGBA", (SIZE, SIZE), (255, 255, 255, 255))
    canvas.alpha_composite(sp, ((SIZE - sp.width) // 2, (SIZE - sp.height) // 2))
    return canvas.convert("RGB")


def photo_image(name):
    im = on_white(Image.open(os.path.join(SKIMAGE, name)))
    w, h = im.size
    s = SIZE / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(REPO, "data", "calib"))
    args = ap.parse_args()

    excluded = set()
    with open(HELDOUT, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                if "stamp" in r:
                    excluded.add(r["stamp"])

    stamps = choose_stamps(candidate_stamps(excluded), N_STAMPS)
    if len(stamps) != N_STAMPS:
        sys.exit(f"only {len(stamps)} stamps found under {STAMPS}")

    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".calib-", dir=parent)
    img_dir = os.path.join(tmp, "images")
    os.makedirs(img_dir)
    rows = []
    for i, (rel, cap) in enumerate(stamps):
        name = f"stamp-{i:02d}-{os.path.basename(rel).lower()}"
        stamp_image(rel).save(os.path.join(img_dir, name + ".png"), optimize=True)
        with open(os.path.join(img_dir, name + ".txt"), "w", encoding="utf-8") as fh:
            fh.write(cap + "\n")
        rows.append((name + ".png", f"tuxpaint-stamps-default: {rel}.png (caption: {rel}.txt, first line)",
                     "GPL-2.0-or-later (Tux Paint stamps, Bill Kendrick and contributors)"))
    for fname, cap, lic in PHOTOS:
        name = "photo-" + os.path.splitext(fname)[0]
        photo_image(fname).save(os.path.join(img_dir, name + ".png"), optimize=True)
        with open(os.path.join(img_dir, name + ".txt"), "w", encoding="utf-8") as fh:
            fh.write(cap + "\n")
        rows.append((name + ".png", f"scikit-image sample data: skimage/data/{fname} (caption written for vlq)", lic))
    with open(os.path.join(tmp, "text.jsonl"), "w", encoding="utf-8") as fh:
        for t in TEXTS:
            fh.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    with open(os.path.join(tmp, "sources.tsv"), "w", encoding="utf-8") as fh:
        fh.write("image\tsource\tlicence\n")
        for r in rows:
            fh.write("\t".join(r) + "\n")
    # Keep a hand-written README if there is one.
    readme = os.path.join(args.out, "README.md")
    if os.path.exists(readme):
        shutil.copy(readme, os.path.join(tmp, "README.md"))
    if os.path.exists(args.out):
        old = args.out + ".old"
        os.rename(args.out, old)
        os.rename(tmp, args.out)
        shutil.rmtree(old)
    else:
        os.rename(tmp, args.out)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"{args.out}: {len(rows)} images ({len(stamps)} stamps, {len(PHOTOS)} photos), {len(TEXTS)} texts, "
          f"{total} bytes")


if __name__ == "__main__":
    main()
