#!/usr/bin/env python3
"""Dev-time oracle for vlq image decoding + Qwen2-VL preprocessing (tests/model/image_*_test.cpp).

Writes test inputs and expected outputs to tests/data/images/:
  - inputs: real photos from Debian's python3-skimage (rocket.jpg, chelsea.png, camera.png, coffee and
    astronaut re-encoded/downsized), synthetic PNG variants written by a tiny PNG encoder below (every
    colour type / bit depth Pillow maps differently, tRNS, Adam7), WebP made with Pillow, and bad inputs
    (truncated, corrupt, GIF/BMP/TIFF, crafted huge / zero-sized headers);
  - golden.json: per image Pillow's mode/size and CRC-32 of the decoded RGB for Image.convert("RGB")
    ("drop") and transformers' convert_to_rgb ("composite"); Pillow BICUBIC resize results; smart_resize
    cases (transformers 5.x function + a 4.x copy); transformers Qwen2VLImageProcessorPil (the slow,
    PIL-based processor) pixel_values (CRC-32 of the float32 bytes, sum) and image_grid_thw;
  - golden/*.rgb (raw HWC uint8), golden/*.f32 (raw float32 pixel_values) for the small cases.

  - process entries also get tv_* fields: the same images through transformers' DEFAULT (torchvision) processor
    Qwen2VLImageProcessor (what AutoProcessor picks), and resize_tv entries: torchvision F.resize(BICUBIC,
    antialias=True) of uint8 tensors;
  - tests/data/golden/image_processor/: real photos (scikit-image) as JPEG/PNG at several sizes, one- and
    multi-image processor calls through BOTH processors (golden.json: CRC-32 + sum + sampled values of
    pixel_values, resized-image CRCs, decoders' CRCs; pixel_values.safetensors: full f32 values of the small
    cases), see make_backend_goldens().

Run with a venv holding Pillow 13, torch + torchvision and transformers 5.x:
    python3 -m venv /root/venv-img && /root/venv-img/bin/pip install torch torchvision transformers pillow \
        numpy safetensors scikit-image
    /root/venv-img/bin/python tools/make_image_golden.py            # everything
    /root/venv-img/bin/python tools/make_image_golden.py --backends  # only the backend goldens
It also decodes/resizes everything with Debian's /usr/bin/python3 (Pillow 9.4, libjpeg-turbo 2.1.5,
libwebp 1.2.4: the libraries vlq links) and stores those results as *_pillow9 fields; Pillow 9 and 13
differ on the bicubic pass order and on palette indices beyond PLTE (vlq: PillowCompat).
Needs: apt-get install python3-skimage python3-pil.
"""
import argparse
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image, features

SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "images")
GOLD = os.path.join(OUT, "golden")
RAW_LIMIT_PIXELS = 20000  # store raw expected RGB below this many pixels
PV_RAW_FILES = {"tiny_28x28.png", "palette_color.png"}  # store raw pixel_values for these


# ---------------------------------------------------------------------------------------- PNG encoder
def _chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def _pack_rows(a, bd):
    rows = []
    for y in range(a.shape[0]):
        r = a[y].reshape(-1).astype(np.int64)
        if bd == 16:
            rows.append(r.astype(">u2").tobytes())
        elif bd == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // bd
            out = bytearray((len(r) * bd + 7) // 8)
            for i, v in enumerate(r):
                out[i // per] |= int(v) << (8 - bd * (i % per + 1))
            rows.append(bytes(out))
    return rows


_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(a, color_type, bit_depth, plte=None, trns=None, interlace=False, width=None, height=None):
    """Encodes raw sample values `a` (H x W [x ch]) as PNG (filter 0 on every row)."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w = a.shape[:2]
    raw = b""
    if interlace:
        for x0, y0, dx, dy in _ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.size:
                raw += b"".join(b"\x00" + r for r in _pack_rows(sub, bit_depth))
    else:
        raw = b"".join(b"\x00" + r for r in _pack_rows(a, bit_depth))
    ihdr = struct.pack(">IIBBBBB", w if width is None else width, h if height is None else height, bit_depth,
                       color_type, 0, 0, 1 if interlace else 0)
    d = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    if plte is not None:
        d += _chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        d += _chunk(b"tRNS", trns)
    d += _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    return d


# ------------------------------------------------------------------------------------------ helpers
def crc(b):
    return zlib.crc32(bytes(b)) & 0xFFFFFFFF


def smooth(h, w, ch, seed, lo=0, hi=255):
    """Smooth-ish deterministic test pattern with some noise (values in [lo, hi])."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for c in range(ch):
        fx, fy, ph = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4), rng.uniform(0, 6.28)
        v = 0.5 + 0.35 * np.sin(fx * x + ph) * np.cos(fy * y + c) + rng.normal(0, 0.08, (h, w))
        out.append(np.clip(lo + v * (hi - lo), lo, hi))
    return np.rint(np.stack(out, -1)).astype(np.int64)


def composite_rgb(im):
    """transformers convert_to_rgb (5.x; 4.x gives the same pixels): composite over white if any alpha."""
    has_alpha = "A" in im.getbands() or im.info.get("transparency") is not None
    if has_alpha:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def smart_resize_v4(height, width, factor, min_pixels, max_pixels):
    # transformers 4.x (models/qwen2_vl/image_processing_qwen2_vl.py @ cb0fc56)
    if height < factor or width < factor:
        raise ValueError("small")
    elif max(height, width) / min(height, width) > 200:
        raise ValueError("aspect")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# ------------------------------------------------------------------------------------------- inputs
def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def save_pil(im, name, **kw):
    b = io.BytesIO()
    im.save(b, **kw)
    write(name, b.getvalue())


def make_inputs():
    os.makedirs(GOLD, exist_ok=True)
    sk = lambda f: os.path.join(SKIMAGE, f)
    # Real photos (public domain / CC0, see skimage/data/_fetchers.py).
    shutil.copy(sk("rocket.jpg"), os.path.join(OUT, "rocket.jpg"))  # 640x427 baseline JPEG, 4:2:0
    shutil.copy(sk("chelsea.png"), os.path.join(OUT, "chelsea.png"))  # 451x300 RGB
    shutil.copy(sk("camera.png"), os.path.join(OUT, "camera.png"))  # 512x512 L
    shutil.copy(sk("truncated.jpg"), os.path.join(OUT, "truncated.jpg"))  # 400 B, cut inside the header
    shutil.copy(sk("foo3x5x4indexed.png"), os.path.join(OUT, "foo3x5x4indexed.png"))  # P + tRNS
    shutil.copy(sk("palette_color.png"), os.path.join(OUT, "palette_color.png"))  # P, 10x10
    coffee = Image.open(sk("coffee.png")).convert("RGB")
    save_pil(coffee, "coffee_q90_444.jpg", format="JPEG", quality=90, subsampling=0)
    chelsea = Image.open(sk("chelsea.png")).convert("RGB")
    save_pil(chelsea, "chelsea_progressive.jpg", format="JPEG", quality=80, progressive=True)
    save_pil(Image.open(sk("camera.png")).resize((256, 256), Image.BICUBIC), "camera_gray.jpg", format="JPEG",
             quality=85)
    save_pil(chelsea.crop((150, 40, 270, 120)).convert("CMYK"), "cmyk.jpg", format="JPEG", quality=90)
    astro = Image.open(sk("astronaut.png")).convert("RGB").resize((192, 192), Image.BICUBIC)
    yy, xx = np.mgrid[0:192, 0:192]
    alpha = np.clip(255 - np.hypot(yy - 96, xx - 96) * 2.2, 0, 255).astype(np.uint8)
    astro_rgba = Image.fromarray(np.dstack([np.array(astro), alpha]), "RGBA")
    save_pil(astro_rgba, "astronaut_rgba.png", format="PNG")

    # Synthetic PNGs covering Pillow's mode mapping.
    write("rgba_29x57.png", png_bytes(np.dstack([smooth(57, 29, 3, 1), smooth(57, 29, 1, 2)]), 6, 8))
    pal = smooth(1, 40, 3, 3)[0]
    write("palette_trns.png", png_bytes(smooth(23, 31, 1, 4, 0, 45)[:, :, 0], 3, 8, plte=pal,
                                        trns=bytes([0, 30, 60, 90, 120, 150, 180, 210, 240, 255, 7])))
    write("palette_2bit_trns.png", png_bytes(smooth(9, 13, 1, 5, 0, 3)[:, :, 0], 3, 2,
                                             plte=[[200, 10, 10], [10, 200, 10], [10, 10, 200], [90, 90, 90]],
                                             trns=bytes([0, 128])))
    write("gray16.png", png_bytes(smooth(17, 31, 1, 6, 0, 600), 0, 16))
    write("rgb16.png", png_bytes(smooth(19, 23, 3, 7, 0, 65535), 2, 16))
    write("rgba16.png", png_bytes(smooth(13, 21, 4, 8, 0, 65535), 6, 16))
    write("gray_alpha.png", png_bytes(smooth(20, 33, 2, 9), 4, 8))
    write("gray_alpha16.png", png_bytes(smooth(11, 15, 2, 10, 0, 65535), 4, 16))
    g = smooth(18, 25, 1, 11)
    write("gray_trns.png", png_bytes(g, 0, 8, trns=struct.pack(">H", int(g[5, 5, 0]))))
    write("gray1_trns.png", png_bytes((smooth(15, 21, 1, 12) > 128).astype(np.int64), 0, 1,
                                      trns=struct.pack(">H", 1)))
    write("gray4.png", png_bytes(smooth(14, 19, 1, 13, 0, 15), 0, 4))
    rgb = smooth(16, 22, 3, 14)
    write("rgb_trns.png", png_bytes(rgb, 2, 8, trns=struct.pack(">HHH", *[int(v) for v in rgb[3, 4]])))
    write("rgb_interlaced.png", png_bytes(smooth(29, 37, 3, 15), 2, 8, interlace=True))
    write("tiny_28x28.png", png_bytes(smooth(28, 28, 3, 16), 2, 8))
    write("wide_1000x30.png", png_bytes(smooth(30, 1000, 3, 17), 2, 8))
    write("small_20x20.png", png_bytes(smooth(20, 20, 3, 18), 2, 8))
    write("extreme_6000x28.png", png_bytes(np.zeros((28, 6000, 3), np.int64) + 77, 2, 8))

    # WebP (Pillow's encoder).
    save_pil(chelsea.crop((100, 50, 300, 200)), "chelsea_lossy.webp", format="WEBP", quality=80)
    save_pil(astro_rgba.crop((40, 40, 104, 104)), "rgba_lossless.webp", format="WEBP", lossless=True)
    save_pil(astro_rgba.crop((60, 20, 140, 100)), "rgba_lossy.webp", format="WEBP", quality=75)
    frames = [Image.fromarray(smooth(16, 16, 3, s).astype(np.uint8)) for s in (20, 21)]
    b = io.BytesIO()
    frames[0].save(b, format="WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    write("bad_animated.webp", b.getvalue())

    # Bad inputs.
    rocket = open(sk("rocket.jpg"), "rb").read()
    write("bad_truncated_scan.jpg", rocket[: len(rocket) * 6 // 10])
    ok_png = png_bytes(smooth(24, 40, 3, 30), 2, 8)
    idat = ok_png.index(b"IDAT")
    bad = bytearray(ok_png)
    bad[idat + 20] ^= 0x55  # flips data bits: CRC mismatch in IDAT
    write("bad_crc.png", bytes(bad))
    write("bad_truncated.png", ok_png[: idat + 60])
    raw_garbage = b"\x00" * 8 + bytes(range(256)) * 4
    d = ok_png[:idat - 4] + _chunk(b"IDAT", raw_garbage) + _chunk(b"IEND", b"")
    write("bad_zlib.png", d)
    save_pil(frames[0], "bad_format.gif", format="GIF")
    save_pil(frames[0], "bad_format.bmp", format="BMP")
    save_pil(frames[0], "bad_format.tiff", format="TIFF")
    write("bad_huge_dims.png", b"\x89PNG\r\n\x1a\n"
          + _chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) + _chunk(b"IEND", b""))
    write("bad_zero_height.png", b"\x89PNG\r\n\x1a\n"
          + _chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 0, 8, 2, 0, 0, 0)) + _chunk(b"IEND", b""))
    small_jpg = io.BytesIO()
    frames[0].save(small_jpg, format="JPEG", quality=90)
    sj = bytearray(small_jpg.getvalue())
    sof = sj.index(b"\xff\xc0")
    huge = bytearray(sj)
    huge[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    write("bad_huge_dims.jpg", bytes(huge))
    zero = bytearray(sj)
    zero[sof + 7:sof + 9] = struct.pack(">H", 0)  # width 0
    write("bad_zero_width.jpg", bytes(zero))
    write("bad_empty.png", b"")
    write("bad_random.bin", bytes(np.random.default_rng(40).integers(0, 256, 64, dtype=np.uint8)))


GOOD = ["rocket.jpg", "chelsea.png", "camera.png", "coffee_q90_444.jpg", "chelsea_progressive.jpg",
        "camera_gray.jpg", "cmyk.jpg", "astronaut_rgba.png", "foo3x5x4indexed.png", "palette_color.png",
        "rgba_29x57.png", "palette_trns.png", "palette_2bit_trns.png", "gray16.png", "rgb16.png", "rgba16.png",
        "gray_alpha.png", "gray_alpha16.png", "gray_trns.png", "gray1_trns.png", "gray4.png", "rgb_trns.png",
        "rgb_interlaced.png", "tiny_28x28.png", "wide_1000x30.png", "small_20x20.png", "extreme_6000x28.png",
        "chelsea_lossy.webp", "rgba_lossless.webp", "rgba_lossy.webp"]

# (input, out_w, out_h): Pillow BICUBIC resize of the composite RGB
RESIZES = [("chelsea.png", 448, 308), ("coffee_q90_444.jpg", 308, 196), ("coffee_q90_444.jpg", 840, 560),
           ("rocket.jpg", 644, 420), ("rocket.jpg", 28, 28), ("rocket.jpg", 224, 140), ("camera.png", 300, 200),
           ("rgba_29x57.png", 28, 56), ("rgba_29x57.png", 300, 500), ("rgba_29x57.png", 56, 57),
           ("rgba_29x57.png", 29, 28), ("wide_1000x30.png", 56, 28), ("wide_1000x30.png", 1008, 28),
           ("tiny_28x28.png", 1, 1), ("tiny_28x28.png", 3, 5), ("astronaut_rgba.png", 97, 193),
           ("tiny_28x28.png", 28, 28)]

SMART = [(427, 640), (480, 640), (300, 451), (28, 28), (42, 42), (70, 70), (98, 126), (3024, 4032), (57, 29),
         (30, 1000), (20, 20), (10, 10), (1, 1), (28, 5600), (28, 5601), (5601, 28), (100000, 100000),
         (12345, 6789), (999, 1), (4000, 20)]
SMART_PARAMS = [(28, 3136, 12845056), (28, 3136, 1003520), (28, 200704, 1003520), (28, 3136, 50176),
                (32, 4096, 16384 * 32 * 32), (28, 3136, 3136)]

# (input, min_pixels, max_pixels) through transformers' Qwen2VLImageProcessorPil
PROCESS = [(f, 3136, 12845056) for f in GOOD] + [
    ("rocket.jpg", 3136, 50176), ("chelsea.png", 3136, 50176), ("astronaut_rgba.png", 3136, 50176),
    ("rgba_29x57.png", 1003520, 12845056), ("tiny_28x28.png", 784, 12845056)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", action="store_true", help="only tests/data/golden/image_processor/")
    args = ap.parse_args()
    import transformers
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as qpil

    assert int(transformers.__version__.split(".")[0]) >= 5, "needs transformers 5.x (torchvision processor)"
    make_backend_goldens()
    if args.backends:
        return

    make_inputs()
    for f in os.listdir(GOLD):
        os.remove(os.path.join(GOLD, f))
    gold = {"generator": "tools/make_image_golden.py",
            "versions": {"pillow": Image.__version__ if hasattr(Image, "__version__") else "",
                         "transformers": transformers.__version__, "numpy": np.__version__,
                         "libjpeg_turbo": features.version("libjpeg_turbo"), "webp": features.version("webp")},
            "decode": [], "resize": [], "smart_resize": [], "process": []}
    import PIL
    gold["versions"]["pillow"] = PIL.__version__

    for f in GOOD:
        im = Image.open(os.path.join(OUT, f))
        im.load()
        drop = np.array(im.convert("RGB"))
        comp = np.array(composite_rgb(im))
        e = {"file": f, "pil_mode": im.mode, "width": im.size[0], "height": im.size[1],
             "has_transparency": "A" in im.getbands() or im.info.get("transparency") is not None,
             "drop_crc32": crc(drop.tobytes()), "composite_crc32": crc(comp.tobytes())}
        if im.size[0] * im.size[1] <= RAW_LIMIT_PIXELS:
            base = os.path.splitext(f)[0] + "_" + f.rsplit(".", 1)[1]
            for key, arr in (("drop", drop), ("composite", comp)):
                name = f"{base}.{key}.rgb"
                if key == "composite" and np.array_equal(drop, comp):
                    e["composite_raw"] = e["drop_raw"]
                    continue
                open(os.path.join(GOLD, name), "wb").write(arr.tobytes())
                e[f"{key}_raw"] = "golden/" + name
        gold["decode"].append(e)

    for f, w, h in RESIZES:
        src = composite_rgb(Image.open(os.path.join(OUT, f)))
        out = np.array(src.resize((w, h), Image.BICUBIC))
        e = {"file": f, "width": w, "height": h, "crc32": crc(out.tobytes())}
        if w * h <= RAW_LIMIT_PIXELS:
            name = f"resize_{os.path.splitext(f)[0]}_{w}x{h}.rgb"
            open(os.path.join(GOLD, name), "wb").write(out.tobytes())
            e["raw"] = "golden/" + name
        gold["resize"].append(e)

    gold["resize_tv"] = []
    for f, w, h in RESIZES:
        src = np.array(composite_rgb(Image.open(os.path.join(OUT, f))))
        e = {"file": f, "width": w, "height": h}
        try:
            e["crc32"] = crc(tv_resize(src, w, h).tobytes())
        except RuntimeError as ex:  # torch's AVX kernel asserts on some tiny outputs
            e["error"] = str(ex).split("\n")[0][:200]
        gold["resize_tv"].append(e)

    for h, w in SMART:
        for factor, mn, mx in SMART_PARAMS:
            e = {"height": h, "width": w, "factor": factor, "min_pixels": mn, "max_pixels": mx}
            try:
                e["v5"] = list(qpil.smart_resize(h, w, factor, mn, mx))
            except ValueError as ex:
                e["v5"] = "aspect" if "aspect" in str(ex) else "error"
            try:
                e["v4"] = list(smart_resize_v4(h, w, factor, mn, mx))
            except ValueError as ex:
                e["v4"] = str(ex)
            gold["smart_resize"].append(e)

    for f, mn, mx in PROCESS:
        proc = qpil.Qwen2VLImageProcessorPil(min_pixels=mn, max_pixels=mx)
        im = Image.open(os.path.join(OUT, f))
        e = {"file": f, "min_pixels": mn, "max_pixels": mx}
        try:
            r = proc(images=[im], return_tensors="np")
        except ValueError as ex:
            e["error"] = str(ex)
            gold["process"].append(e)
            continue
        pv = np.ascontiguousarray(r["pixel_values"], dtype=np.float32)
        grid = [int(v) for v in r["image_grid_thw"][0]]
        rh, rw = qpil.smart_resize(im.size[1], im.size[0], 28, mn, mx)
        rgb = composite_rgb(im)
        resized = np.array(rgb.resize((rw, rh), Image.BICUBIC)) if (rw, rh) != rgb.size else np.array(rgb)
        # Self-check: the closed-form patch layout of qwen2_5_vl.md §2.2 reproduces HF's pixel_values.
        x = resized.astype(np.float64) * (1 / 255)
        x = ((x.astype(np.float32) - np.array(proc.image_mean, np.float32)) / np.array(proc.image_std, np.float32))
        gh, gw = rh // 14, rw // 14
        mine = x.transpose(2, 0, 1).reshape(3, gh // 2, 2, 14, gw // 2, 2, 14).transpose(1, 4, 2, 5, 0, 3, 6)
        mine = np.broadcast_to(mine[:, :, :, :, :, None], (*mine.shape[:5], 2, 14, 14)).reshape(gh * gw, 1176)
        assert np.array_equal(mine, pv), f"layout self-check failed for {f}"
        e.update({"grid_thw": grid, "n_patches": int(pv.shape[0]), "patch_dim": int(pv.shape[1]),
                  "resized_height": rh, "resized_width": rw, "resized_crc32": crc(resized.tobytes()),
                  "pv_crc32": crc(pv.tobytes()), "pv_sum": float(pv.astype(np.float64).sum())})
        e.update(torchvision_process(im, mn, mx))
        if f in PV_RAW_FILES:
            name = f"pv_{os.path.splitext(f)[0]}_{mn}_{mx}.f32"
            open(os.path.join(GOLD, name), "wb").write(pv.astype("<f4").tobytes())
            e["pv_raw"] = "golden/" + name
        gold["process"].append(e)

    def dump():
        with open(os.path.join(OUT, "golden.json"), "w") as fjson:
            json.dump(gold, fjson, indent=1)
            fjson.write("\n")

    dump()
    add_pillow9(gold)
    dump()
    print(f"wrote {len(gold['decode'])} decode, {len(gold['resize'])} resize, {len(gold['smart_resize'])} "
          f"smart_resize, {len(gold['process'])} process cases to {OUT}")


# ------------------------------------------------------------ tests/data/golden/image_processor (both backends)
BACKEND_DIR = os.path.join(ROOT, "tests", "data", "golden", "image_processor")
# (file, source photo in skimage/data, size (w, h) or None = as is, save options)
PHOTOS = [
    ("astronaut_512.jpg", "astronaut.png", None, dict(format="JPEG", quality=85)),  # 4:2:0, downscaled to 504
    ("coffee_333x257.png", "coffee.png", (333, 257), dict(format="PNG")),  # odd size; w up, h down
    ("chelsea_97x61_444.jpg", "chelsea.png", (97, 61), dict(format="JPEG", quality=95, subsampling=0)),  # small
    ("rocket_50x37.png", "rocket.jpg", (50, 37), dict(format="PNG")),  # below min_pixels: scaled up
    ("motorcycle_1280x720.jpg", "motorcycle_left.png", (1280, 720), dict(format="JPEG", quality=80)),  # 720p
    ("hubble_1000x872_prog.jpg", "hubble_deep_field.jpg", None, dict(format="JPEG", quality=80, progressive=True)),
    ("ihc_211x300_422.jpg", "ihc.png", (211, 300), dict(format="JPEG", quality=90, subsampling=1)),  # 4:2:2
]
RELEASED = (3136, 12845056)  # Qwen2.5-VL preprocessor_config.json
TINY = (3136, 12544)  # models/qwen2_5_vl-tiny-trained: everything is scaled down to <= 112x112
# (images, min_pixels, max_pixels): one processor call each, through both backends
BACKEND_CASES = [([f], *RELEASED) for f, *_ in PHOTOS] + [([f], *TINY) for f, *_ in PHOTOS] + [
    (["motorcycle_1280x720.jpg"], 3136, 401408),  # 720p scaled down to fit 512 merged tokens
    (["astronaut_512.jpg", "coffee_333x257.png"], *RELEASED),  # two images of different sizes
    (["chelsea_97x61_444.jpg", "chelsea_97x61_444.jpg"], *RELEASED),  # same size: stacked into one torch batch
    (["motorcycle_1280x720.jpg", "rocket_50x37.png", "astronaut_512.jpg"], *TINY),
]
RAW_PV_FILES = {"rocket_50x37.png"}  # single-image calls whose full pixel_values are stored
N_SAMPLES = 97


def make_photos():
    import skimage
    src = os.path.join(os.path.dirname(skimage.__file__), "data")
    os.makedirs(BACKEND_DIR, exist_ok=True)
    for name, photo, size, opts in PHOTOS:
        im = Image.open(os.path.join(src, photo)).convert("RGB")
        if size is not None:
            im = im.resize(size, Image.BICUBIC)
        im.save(os.path.join(BACKEND_DIR, name), **opts)


def samples(pv):
    flat = pv.reshape(-1)
    idx = np.linspace(0, flat.size - 1, N_SAMPLES).astype(np.int64)
    return [[int(i), float(flat[i])] for i in idx]


def decode_entry(f):
    """CRC-32 of the RGB that PIL (what the processors get from Image.open) and torchvision.io decode."""
    import torch
    from torchvision.io import ImageReadMode, decode_image
    data = open(os.path.join(BACKEND_DIR, f), "rb").read()
    im = Image.open(io.BytesIO(data))
    pil = np.array(im.convert("RGB"))
    tv = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    tv = tv.permute(1, 2, 0).contiguous().numpy()
    return {"file": f, "width": im.size[0], "height": im.size[1], "pil_crc32": crc(pil.tobytes()),
            "torchvision_io_crc32": crc(tv.tobytes()), "pil_equals_torchvision_io": bool(np.array_equal(pil, tv))}


def backend_case(files, mn, mx, raw):
    """One processor call through both backends; checks the closed-form oracle (resize + normalise + patchify)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
    ims = [Image.open(os.path.join(BACKEND_DIR, f)) for f in files]
    e = {"files": files, "min_pixels": mn, "max_pixels": mx}
    rgbs = [np.array(composite_rgb(im)) for im in ims]
    for key, proc, resize in (("pil", pil_processor(mn, mx), None), ("torchvision", tv_processor(mn, mx), tv_resize)):
        pv, grid = run_processor(proc, ims)
        resized = []
        for rgb in rgbs:
            h, w = smart_resize(rgb.shape[0], rgb.shape[1], 28, mn, mx)
            if (w, h) == (rgb.shape[1], rgb.shape[0]):
                resized.append(rgb)
            elif resize is None:
                resized.append(np.array(Image.fromarray(rgb).resize((w, h), Image.BICUBIC)))
            else:
                resized.append(resize(rgb, w, h))
        assert pv.shape[0] == sum(r.shape[0] * r.shape[1] // 196 for r in resized), files
        e[key] = {"grid_thw": grid, "resized_crc32": [crc(r.tobytes()) for r in resized],
                  "n_patches": int(pv.shape[0]), "pv_crc32": crc(pv.tobytes()),
                  "pv_sum": float(pv.astype(np.float64).sum()), "samples": samples(pv)}
        if len(files) == 1 and files[0] in RAW_PV_FILES and (mn, mx) == RELEASED:
            name = f"{key}_{len(raw) // 2}"
            raw[name] = pv
            e[key]["raw"] = name
    d = np.abs(run_processor(pil_processor(mn, mx), ims)[0] - run_processor(tv_processor(mn, mx), ims)[0])
    e["pil_vs_torchvision_max_abs"] = float(d.max())
    e["pil_vs_torchvision_max_steps"] = int(round(float(d.max()) / (1 / 255 / 0.26130258)))
    return e


def make_backend_goldens():
    """Real photos through both transformers processors (tests/image/image_backend_test.cpp)."""
    import torch
    import torchvision
    import transformers
    from safetensors.numpy import save_file
    from transformers import AutoImageProcessor
    make_photos()
    auto = type(AutoImageProcessor.from_pretrained(os.path.join(ROOT, "models", "qwen2_5_vl-tiny-trained"))).__name__
    import PIL
    gold = {"generator": "tools/make_image_golden.py (make_backend_goldens)",
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "pillow": PIL.__version__,
                         "libjpeg_turbo": features.version("libjpeg_turbo"),
                         "cpu_capability": torch.backends.cpu.get_cpu_capability()},
            "auto_image_processor": auto, "decode": [decode_entry(f) for f, *_ in PHOTOS], "cases": []}
    raw = {}
    for files, mn, mx in BACKEND_CASES:
        gold["cases"].append(backend_case(files, mn, mx, raw))
    save_file(raw, os.path.join(BACKEND_DIR, "pixel_values.safetensors"))
    text = json.dumps(gold, indent=1)
    # one line per [index, value] sample and per short number list
    text = re.sub(r"\[\s+(-?[0-9][0-9.e+-]*),\s+(-?[0-9][0-9.e+-]*)\s+\]", r"[\1, \2]", text)
    text = re.sub(r"\[\s+(-?[0-9][0-9.e+-]*),\s+(-?[0-9][0-9.e+-]*),\s+(-?[0-9][0-9.e+-]*)\s+\]",
                  r"[\1, \2, \3]", text)
    with open(os.path.join(BACKEND_DIR, "golden.json"), "w") as fjson:
        fjson.write(text + "\n")
    worst = max(c["pil_vs_torchvision_max_steps"] for c in gold["cases"])
    print(f"AutoImageProcessor picks {auto}; {len(gold['cases'])} backend cases, {len(raw)} raw; "
          f"PIL vs torchvision differ by up to {worst} 8-bit steps")


# ------------------------------------------------------------------------- torchvision (default) processor
def tv_resize(rgb, w, h):
    """torchvision F.resize of an HWC uint8 array exactly as Qwen2VLImageProcessor calls it."""
    import torch
    from torchvision.transforms.v2 import functional as tvF
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
    out = tvF.resize(t, [h, w], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
    return out.permute(1, 2, 0).contiguous().numpy()


def tv_processor(mn, mx):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    return Qwen2VLImageProcessor(size={"shortest_edge": mn, "longest_edge": mx})


def pil_processor(mn, mx):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    return Qwen2VLImageProcessorPil(size={"shortest_edge": mn, "longest_edge": mx})


def run_processor(proc, images):
    """pixel_values (float32 numpy) and image_grid_thw rows of one processor call, or the ValueError text."""
    try:
        r = proc(images=images, return_tensors="pt")
    except ValueError as ex:
        return None, str(ex)
    return np.ascontiguousarray(r["pixel_values"].numpy(), dtype=np.float32), r["image_grid_thw"].tolist()


def torchvision_process(im, mn, mx):
    """tv_* fields of a process entry: the default processor's pixel_values and resized image."""
    pv, grid = run_processor(tv_processor(mn, mx), [im])
    if pv is None:
        return {"tv_error": grid}
    _, gh, gw = grid[0]
    rgb = np.array(composite_rgb(im))
    resized = tv_resize(rgb, gw * 14, gh * 14) if (gw * 14, gh * 14) != (rgb.shape[1], rgb.shape[0]) else rgb
    return {"tv_grid_thw": grid[0], "tv_resized_crc32": crc(resized.tobytes()), "tv_pv_crc32": crc(pv.tobytes()),
            "tv_pv_sum": float(pv.astype(np.float64).sum())}


CROSS = r"""
import json, sys, zlib, numpy as np, PIL
from PIL import Image
d, gold = sys.argv[1], json.load(open(sys.argv[2]))
def crc(a): return zlib.crc32(np.ascontiguousarray(a).tobytes()) & 0xffffffff
def comp(im):
    if "A" in im.getbands() or im.info.get("transparency") is not None:
        rgba = im.convert("RGBA"); bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")
out = {"pillow": PIL.__version__, "decode": [], "resize": [], "process": []}
for e in gold["decode"]:
    im = Image.open(d + "/" + e["file"])
    out["decode"].append([crc(np.array(im.convert("RGB"))), crc(np.array(comp(im)))])
for e in gold["resize"]:
    out["resize"].append(crc(np.array(comp(Image.open(d + "/" + e["file"])).resize((e["width"], e["height"]),
                                                                                  Image.BICUBIC))))
for e in gold["process"]:
    if "error" in e: out["process"].append(None); continue
    rgb = comp(Image.open(d + "/" + e["file"])); size = (e["resized_width"], e["resized_height"])
    out["process"].append(crc(np.array(rgb.resize(size, Image.BICUBIC) if size != rgb.size else rgb)))
json.dump(out, sys.stdout)
"""


def add_pillow9(gold):
    """Adds Debian Pillow 9.4 results (the libjpeg-turbo/libpng/libwebp vlq links) as *_pillow9 fields."""
    r = subprocess.run(["/usr/bin/python3", "-c", CROSS, OUT, os.path.join(OUT, "golden.json")],
                       capture_output=True, text=True, check=True)
    res = json.loads(r.stdout)
    gold["versions"]["pillow9"] = res["pillow"]
    diffs = []
    for e, (drop, comp) in zip(gold["decode"], res["decode"]):
        e["drop_crc32_pillow9"], e["composite_crc32_pillow9"] = drop, comp
        if (drop, comp) != (e["drop_crc32"], e["composite_crc32"]):
            diffs.append("decode " + e["file"])
    for e, c in zip(gold["resize"], res["resize"]):
        e["crc32_pillow9"] = c
        if c != e["crc32"]:
            diffs.append(f"resize {e['file']} {e['width']}x{e['height']}")
    for e, c in zip(gold["process"], res["process"]):
        if c is not None:
            e["resized_crc32_pillow9"] = c
    print(f"Pillow {res['pillow']} differs from Pillow {gold['versions']['pillow']} on:", diffs)


if __name__ == "__main__":
    main()
