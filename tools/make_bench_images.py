#!/usr/bin/env python3
"""Writes N photo-sized PNGs (default 8 of 640x480: gradients, a few shapes, mild noise) for the serving load
bench's image set (bench/serve_load_bench --images DIR). Standard library only, so it runs on the GPU machine."""
import argparse, os, random, struct, zlib


def png(path, w, h, rows):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", default="640x480")
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.n):
        rnd = random.Random(i)
        c0 = [rnd.randrange(256) for _ in range(3)]
        c1 = [rnd.randrange(256) for _ in range(3)]
        shapes = [(rnd.randrange(w), rnd.randrange(h), rnd.randrange(20, 120), [rnd.randrange(256) for _ in range(3)])
                  for _ in range(4)]
        rows = []
        for y in range(h):
            r = bytearray(3 * w)
            for x in range(w):
                t = (x + y) / (w + h)
                px = [int(c0[k] * (1 - t) + c1[k] * t) for k in range(3)]
                for sx, sy, sr, sc in shapes:
                    if (x - sx) ** 2 + (y - sy) ** 2 < sr * sr:
                        px = sc
                n = rnd.randrange(-6, 7)
                r[3 * x:3 * x + 3] = bytes(min(255, max(0, v + n)) for v in px)
            rows.append(bytes(r))
        png(os.path.join(a.out, f"photo-{i:04d}.png"), w, h, rows)


if __name__ == "__main__":
    main()
