#!/usr/bin/env python3
"""Writes a calibration set in vlq's formats for GPU-scale quantization timings (issue #13): OUT/text.jsonl with
N text documents of about --words words each (sentences drawn from data/calib/text.jsonl and
data/heldout, shuffled with a fixed seed) and OUT/images/ with M photo-sized PNGs (gradients, shapes, noise;
numpy) and a same-stem .txt caption each. Same data for vlq quantize and the ModelOpt peer
(tools/modelopt_peer.py). Runs on the GPU machine (numpy + standard library)."""
import argparse, json, os, random, struct, zlib

import numpy as np

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40),
          "purple": (140, 60, 170), "orange": (240, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20)}


def png(path, img):
    h, w, _ = img.shape

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def sentences(root):
    out = []
    for rel in ("data/calib/text.jsonl",):
        p = os.path.join(root, rel)
        if os.path.exists(p):
            for line in open(p, encoding="utf-8"):
                line = line.strip()
                if line:
                    out.append(json.loads(line)["text"])
    return out or ["The red circle is on the left.", "A blue square sits in the top right corner."]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--text", type=int, default=512)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--words", type=int, default=450, help="words per text document (~1.2 tokens a word)")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rnd = random.Random(a.seed)
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    pool = sentences(root)
    with open(os.path.join(a.out, "text.jsonl"), "w", encoding="utf-8") as f:
        for _ in range(a.text):
            words = []
            while len(words) < a.words:
                words += rnd.choice(pool).split()
            f.write(json.dumps({"text": " ".join(words)}) + "\n")
    w, h = map(int, a.size.split("x"))
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(a.images):
        g = np.random.default_rng(a.seed * 100003 + i)
        c0, c1 = g.integers(0, 256, 3), g.integers(0, 256, 3)
        t = ((xx + yy) / (w + h))[..., None]
        img = c0 * (1 - t) + c1 * t
        names = []
        for _ in range(int(g.integers(1, 5))):
            name = list(COLORS)[int(g.integers(len(COLORS)))]
            cx, cy, r = int(g.integers(w)), int(g.integers(h)), int(g.integers(20, 120))
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = COLORS[name]
            names.append(name)
        img = np.clip(img + g.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
        stem = os.path.join(a.out, "images", f"calib-{i:04d}")
        png(stem + ".png", img)
        with open(stem + ".txt", "w", encoding="utf-8") as f:
            f.write(f"A picture with {len(names)} circle(s): " + ", ".join(names) + ", on a colour gradient.\n")
    print(f"wrote {a.text} text documents and {a.images} images to {a.out}")


if __name__ == "__main__":
    main()
