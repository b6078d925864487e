#!/usr/bin/env python3
"""Dev-time generator of the numerics golden data (tests/data/golden/numerics/*.bin) from PyTorch.

Writes what PyTorch's CPU `Tensor.to(dtype)` returns for f32/bf16/f16/FP8 conversions, plus the
per-tensor E4M3 quantize/dequantize expressions the FP8 writer mirrors, for tests/core/numerics_test.cpp.
PyTorch is the authority; ml_dtypes is cross-checked and its differences are written to
crosscheck.txt. Needs the venv /root/venv-ref (torch, ml_dtypes, numpy). CI never runs this.

Usage:  /root/venv-ref/bin/python tools/make_numerics_golden.py [--out DIR]
        /root/venv-ref/bin/python tools/make_numerics_golden.py --compare [--device cuda]
          (re-runs torch on the committed inputs, on this torch/device, and reports differences)

File format (little-endian): 16-byte header  b"VLQG" | u32 version=1 | u32 elem_size | u32 count,
then `count` elements of `elem_size` bytes (u8 FP8 codes, u16 BF16/F16 bits, u32 f32 bits).
Files are columns: element i of every f32_to_* file is the conversion of element i of f32_inputs.bin.
See tests/data/golden/numerics/README.md for the list.

NaN bits: torch's vectorized CPU loops and its scalar loop disagree on some NaN outputs (f32->bf16:
0xffff on AVX2/AVX-512, 0x7fc0 in the scalar c10 code). The goldens are made with
ATEN_CPU_CAPABILITY=default (set below before torch is imported), whose results are c10's; the
native-ISA run is compared in a subprocess and its differences are listed in crosscheck.txt.
Arrays are padded to multiples of 256 elements so no element goes through a loop's scalar tail.
"""
import argparse
import os
import struct
import subprocess
import sys

if "--native" not in sys.argv:
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")

import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    import ml_dtypes  # noqa: E402
except ImportError:  # cross-check skipped
    ml_dtypes = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden", "numerics")
SEED = 20261129
PAD = 256
QN = 2048  # quantize inputs per scale


# ---- file io -----------------------------------------------------------------------------------------
def write_col(out_dir, name, arr):
    arr = np.ascontiguousarray(arr)
    assert arr.dtype in (np.uint8, np.uint16, np.uint32), arr.dtype
    with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
        f.write(b"VLQG" + struct.pack("<III", 1, arr.dtype.itemsize, arr.size))
        f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())


def read_col(out_dir, name):
    with open(os.path.join(out_dir, name + ".bin"), "rb") as f:
        data = f.read()
    assert data[:4] == b"VLQG", name
    _, size, count = struct.unpack("<III", data[4:16])
    dt = {1: np.uint8, 2: np.uint16, 4: np.uint32}[size]
    arr = np.frombuffer(data[16:], dtype=np.dtype(dt).newbyteorder("<"))
    assert arr.size == count, name
    return arr.astype(dt)


# ---- torch helpers ----------------------------------------------------------------------------------
def f32_tensor(bits_u32, device="cpu"):
    return torch.from_numpy(bits_u32.astype(np.uint32).view(np.int32).copy()).view(torch.float32).to(device)


def u16_tensor(bits_u16, dtype, device="cpu"):
    return torch.from_numpy(bits_u16.astype(np.uint16).view(np.int16).copy()).view(dtype).to(device)


def u8_tensor(bits_u8, dtype, device="cpu"):
    return torch.from_numpy(bits_u8.astype(np.uint8).copy()).view(dtype).to(device)


def bits_of(t):
    t = t.cpu().contiguous()
    if t.element_size() == 1:
        return t.view(torch.uint8).numpy().copy()
    if t.element_size() == 2:
        return t.view(torch.int16).numpy().view(np.uint16).copy()
    return t.view(torch.int32).numpy().view(np.uint32).copy()


# ---- inputs -----------------------------------------------------------------------------------------
def f32_bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def decoded_fp8(dtype):
    """Sorted distinct finite non-negative values of an fp8 dtype (via torch decode)."""
    v = u8_tensor(np.arange(128, dtype=np.uint8), dtype).float().numpy()
    v = v[np.isfinite(v)]
    return np.unique(v.astype(np.float64))


def boundary_points(values):
    """Midpoints of adjacent representable values, exactly, and 1-3 f32 ulps either side (+ values)."""
    vals = np.asarray(values, dtype=np.float64)
    mids = (vals[:-1] + vals[1:]) / 2  # exact in f64, and in f32 for these formats
    m32 = mids.astype(np.float32)
    assert np.all(m32.astype(np.float64) == mids)
    out = [vals.astype(np.float32), m32]
    for k in (1, 2, 3):
        b = m32.view(np.uint32).astype(np.int64)
        out.append((b + k).astype(np.uint32).view(np.float32))
        out.append(np.maximum(b - k, 0).astype(np.uint32).view(np.float32))
    return np.concatenate(out)


def make_f32_inputs(rng):
    parts = []
    # Hand-picked specials.
    special = [0.0, -0.0, np.inf, -np.inf, 448.0, 464.0, 480.0, 496.0, 512.0, 1e4, 57344.0, 61440.0,
               65504.0, 65520.0, 65536.0, 2.0**-6, 2.0**-7, 2.0**-9, 2.0**-10, 3 * 2.0**-10, 2.0**-14,
               2.0**-16, 2.0**-17, 3 * 2.0**-17, 2.0**-24, 2.0**-25, 3 * 2.0**-25, 1.0, 1.5, -1.0,
               np.finfo(np.float32).max, np.finfo(np.float32).tiny, 2.0**-149, 2.0**-126 - 2.0**-149]
    sp = f32_bits(special)
    nan_bits = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF,
                         0x7FA5A000, 0xFF8FE000, 0x7F812345, 0x7FE00000, 0x7F802000, 0x7F801FFF,
                         0x7FBFFFFF, 0x7F900000, 0xFF900000, 0x7FF00000], dtype=np.uint32)
    # ulp neighbours of the specials (for the max/overflow boundaries mainly)
    sp_i = sp.astype(np.int64)
    parts += [sp, nan_bits, np.clip(sp_i + 1, 0, 0xFFFFFFFF).astype(np.uint32),
              np.clip(sp_i - 1, 0, 0xFFFFFFFF).astype(np.uint32)]
    # Exact ties (and ulp neighbours) between adjacent values of each target format, both signs.
    e4 = decoded_fp8(torch.float8_e4m3fn)
    e5 = decoded_fp8(torch.float8_e5m2)
    e4_ext = np.append(e4, [480.0, 512.0])  # ties above the max: 464, 496
    e5_ext = np.append(e5, [65536.0])
    f16 = u16_tensor(np.arange(0x7C00, dtype=np.uint16), torch.float16).float().numpy().astype(np.float64)
    f16_sample = np.unique(np.concatenate([f16[:64], f16[-64:], f16[rng.integers(0, f16.size, 1024)],
                                           [65536.0]]))
    bf_exps = np.arange(-133, 128)  # bf16 binades, subnormals included (2^-133 is the min subnormal)
    bf_vals = []
    for e in bf_exps:
        m = rng.integers(0, 128, 2)
        bf_vals += list((1 + m / 128.0) * 2.0**float(e)) if e >= -126 else list(m * 2.0**-133)
    bf_vals = np.array([v for v in bf_vals if v < 3.3e38], dtype=np.float64)
    for vals in (e4_ext, e5_ext, f16_sample):
        b = boundary_points(vals)
        parts += [f32_bits(b), f32_bits(-b)]
    bpts = []
    for v in bf_vals:  # ties between bf16 neighbours (subnormal binades too), and 1 ulp either side
        u = int(np.float32(v).view(np.uint32)) & 0xFFFF0000
        for lo in (0x8000, 0x7FFF, 0x8001, 0x0001, 0xFFFF):
            bpts.append(u | lo)
    bpts = np.array(bpts, dtype=np.uint64)
    bpts = bpts[bpts < 0x7F800000].astype(np.uint32)
    parts += [bpts, bpts | np.uint32(0x80000000)]
    # Random: uniform over all 2^32 bit patterns (NaN/inf/subnormal included in proportion).
    parts.append(rng.integers(0, 2**32, 12288, dtype=np.uint64).astype(np.uint32))
    # Random in the FP8/F16 ranges: exponents 2^-28 .. 2^18, random mantissa and sign.
    n = 24576
    e = rng.integers(127 - 28, 127 + 18, n, dtype=np.uint64)
    m = rng.integers(0, 2**23, n, dtype=np.uint64)
    s = rng.integers(0, 2, n, dtype=np.uint64)
    parts.append(((s << 31) | (e << 23) | m).astype(np.uint32))
    # Random f32 subnormals, and inf/NaN with random payloads.
    parts.append((rng.integers(0, 2**23, 1024, dtype=np.uint64) | (rng.integers(0, 2, 1024, dtype=np.uint64) << 31)).astype(np.uint32))
    parts.append((rng.integers(0, 2**23, 1024, dtype=np.uint64) | np.uint64(0x7F800000) | (rng.integers(0, 2, 1024, dtype=np.uint64) << 31)).astype(np.uint32))
    x = np.concatenate(parts).astype(np.uint32)
    # dedupe, keep order
    _, idx = np.unique(x, return_index=True)
    x = x[np.sort(idx)]
    pad = (-x.size) % PAD
    if pad:
        x = np.concatenate([x, rng.integers(0, 2**32, pad, dtype=np.uint64).astype(np.uint32)])
    return x


def make_quant_inputs(rng):
    """Per-scale rows of QN values: weight-like randoms, specials, and values x = m * scale (rounded to
    f32, and 1-2 ulps either side) for every E4M3 tie m, so that x / scale lands on or next to a tie
    (there, a multiply by 1/scale instead of the division changes the code)."""
    scales = np.array([1.0, 0.05 * 4 / 448, 0.25 / 448, 1.0 / 448, 3.0 / 448, 2.0**-20, 7.0, 1e-3],
                      dtype=np.float32)
    e4 = decoded_fp8(torch.float8_e4m3fn)
    mids = np.append((e4[:-1] + e4[1:]) / 2, [464.0]).astype(np.float32)
    sp = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 448.0, 464.0, 465.0, -1e30, 2.0**-10,
                   3 * 2.0**-10, 1e-30], dtype=np.float32)
    rows = []
    for sc in scales:
        t = (mids * sc).astype(np.float32).view(np.uint32).astype(np.int64)
        ties = np.concatenate([t, t + 1, t - 1, t + 2, t - 2]).astype(np.uint32).view(np.float32)
        ties = np.concatenate([ties, -ties])
        w = rng.standard_normal(QN).astype(np.float32) * np.float32(0.05)
        w[:32] *= 60  # outliers beyond amax for the small scales
        w[32:32 + sp.size] = sp
        w[QN - ties.size:] = ties
        rows.append(w)
    x = np.concatenate(rows)
    x_bf16 = bits_of(torch.from_numpy(x).to(torch.bfloat16))
    return x.view(np.uint32), scales.view(np.uint32), x_bf16


# ---- torch computations ------------------------------------------------------------------------------
def torch_columns(x_bits, device="cpu"):
    x = f32_tensor(x_bits, device)
    return {
        "f32_to_e4m3fn": bits_of(x.to(torch.float8_e4m3fn)),
        "f32_to_e4m3fn_sat": bits_of(torch.clamp(x, -448, 448).to(torch.float8_e4m3fn)),
        "f32_to_e5m2": bits_of(x.to(torch.float8_e5m2)),
        "f32_to_bf16": bits_of(x.to(torch.bfloat16)),
        "f32_to_f16": bits_of(x.to(torch.float16)),
    }


def torch_tables(device="cpu"):
    codes = np.arange(256, dtype=np.uint8)
    pats = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    bf = u16_tensor(pats, torch.bfloat16, device)
    return {
        "e4m3fn_to_f32": bits_of(u8_tensor(codes, torch.float8_e4m3fn, device).float()),
        "e5m2_to_f32": bits_of(u8_tensor(codes, torch.float8_e5m2, device).float()),
        "bf16_to_f32": bits_of(bf.float()),
        "f16_to_f32": bits_of(u16_tensor(pats, torch.float16, device).float()),
        "bf16_to_e4m3fn": bits_of(bf.to(torch.float8_e4m3fn)),
        "bf16_to_e4m3fn_sat": bits_of(torch.clamp(bf, -448, 448).to(torch.float8_e4m3fn)),
        "bf16_to_e5m2": bits_of(bf.to(torch.float8_e5m2)),
    }


def torch_quant(qx_bits, scale_bits, qx_bf16, device="cpu", scale_kind="tensor"):
    """Row s of the inputs (QN values) is quantized with scale s; dequant covers all 256 codes.
    scale_kind: "tensor" = 0-dim float32 tensor on `device` (the goldens), "cpu0dim" = 0-dim float32
    tensor on the CPU, "float" = a Python float (the last two only differ from "tensor" on CUDA)."""
    x = f32_tensor(qx_bits, device).reshape(-1, QN)
    xb = u16_tensor(qx_bf16, torch.bfloat16, device).reshape(-1, QN)
    scales = f32_tensor(scale_bits, device)
    codes = u8_tensor(np.arange(256, dtype=np.uint8), torch.float8_e4m3fn, device)
    q, qb_f, qb_b, qb_s, dq = [], [], [], [], []
    for i in range(scales.numel()):
        s0 = scales[i].clone()  # 0-dim float32 tensor, like ModelOpt's weight_scale
        if scale_kind == "cpu0dim":
            s0 = s0.cpu()
        elif scale_kind == "float":
            s0 = float(s0)
        q.append(bits_of(torch.clamp(x[i] / s0, -448, 448).to(torch.float8_e4m3fn)))
        qb_f.append(bits_of(torch.clamp(xb[i].float() / s0, -448, 448).to(torch.float8_e4m3fn)))
        quot = xb[i] / s0
        assert quot.dtype == torch.bfloat16
        qb_b.append(bits_of(torch.clamp(quot, -448, 448).to(torch.float8_e4m3fn)))
        # CUDA's `x_bf16 / s0` (s0 a 0-dim float32 CUDA tensor) casts s0 to BF16 first; on the CPU that
        # is spelled with an explicit cast. --compare --device cuda checks the two agree.
        if device == "cpu" or scale_kind != "tensor":
            quot_s = xb[i] / (s0.to(torch.bfloat16) if torch.is_tensor(s0) else torch.tensor(s0).to(torch.bfloat16))
        else:
            quot_s = xb[i] / s0
        qb_s.append(bits_of(torch.clamp(quot_s, -448, 448).to(torch.float8_e4m3fn)))
        dq.append(bits_of(codes.to(torch.float32) * s0))
    return {
        "quant_f32_e4m3": np.concatenate(q),
        "quant_bf16_f32q_e4m3": np.concatenate(qb_f),
        "quant_bf16_bf16q_e4m3": np.concatenate(qb_b),
        "quant_bf16_bf16s_e4m3": np.concatenate(qb_s),
        "dequant_e4m3": np.concatenate(dq),
    }


# ---- comparisons ------------------------------------------------------------------------------------
# Output kind of every column, for NaN detection.
KIND = {
    "f32_to_e4m3fn": "e4m3", "f32_to_e4m3fn_sat": "e4m3", "f32_to_e5m2": "e5m2", "f32_to_bf16": "bf16",
    "f32_to_f16": "f16", "e4m3fn_to_f32": "f32", "e5m2_to_f32": "f32", "bf16_to_f32": "f32",
    "f16_to_f32": "f32", "bf16_to_e4m3fn": "e4m3", "bf16_to_e4m3fn_sat": "e4m3", "bf16_to_e5m2": "e5m2",
    "quant_f32_e4m3": "e4m3", "quant_bf16_f32q_e4m3": "e4m3", "quant_bf16_bf16q_e4m3": "e4m3",
    "quant_bf16_bf16s_e4m3": "e4m3",
    "dequant_e4m3": "f32",
}


def is_nan_bits(arr, name):
    kind = KIND[name]
    a = arr.astype(np.uint64)
    if kind == "e4m3":
        return (a & 0x7F) == 0x7F
    if kind == "e5m2":
        return (a & 0x7F) > 0x7C
    if kind == "bf16":
        return (a & 0x7FFF) > 0x7F80
    if kind == "f16":
        return (a & 0x7FFF) > 0x7C00
    return (a & 0x7FFFFFFF) > 0x7F800000


def diff_report(label, ref, other, inputs=None, limit=6):
    lines = []
    for name in sorted(ref):
        a, b = ref[name], other.get(name)
        if b is None:
            continue
        bad = np.nonzero(a != b)[0]
        if bad.size == 0:
            lines.append(f"  {name}: identical ({a.size} values)")
            continue
        nan_a, nan_b = is_nan_bits(a, name), is_nan_bits(b, name)
        both_nan = bad[nan_a[bad] & nan_b[bad]]
        real = bad[~(nan_a[bad] & nan_b[bad])]
        lines.append(f"  {name}: {bad.size} of {a.size} differ: {both_nan.size} only in NaN bits, "
                     f"{real.size} in value")
        for idx in list(both_nan[:2]) + list(real[:limit]):
            src = f" input 0x{int(inputs[idx]):08x}" if inputs is not None and idx < inputs.size else ""
            lines.append(f"    [{idx}]{src}: {label[0]} 0x{int(a[idx]):x}  {label[1]} 0x{int(b[idx]):x}")
    return lines


def mldtypes_columns(x_bits):
    x = x_bits.view(np.float32)
    with np.errstate(all="ignore"):
        return {
            "f32_to_e4m3fn": x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8),
            "f32_to_e5m2": x.astype(ml_dtypes.float8_e5m2).view(np.uint8),
            "f32_to_bf16": x.astype(ml_dtypes.bfloat16).view(np.uint16),
            "f32_to_f16": x.astype(np.float16).view(np.uint16),
        }


def mldtypes_tables():
    codes = np.arange(256, dtype=np.uint8)
    pats = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    with np.errstate(all="ignore"):
        return {
            "e4m3fn_to_f32": codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32).view(np.uint32),
            "e5m2_to_f32": codes.view(ml_dtypes.float8_e5m2).astype(np.float32).view(np.uint32),
            "bf16_to_f32": pats.view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32),
            "f16_to_f32": pats.view(np.float16).astype(np.float32).view(np.uint32),
            "bf16_to_e4m3fn": pats.view(ml_dtypes.bfloat16).astype(ml_dtypes.float8_e4m3fn).view(np.uint8),
            "bf16_to_e5m2": pats.view(ml_dtypes.bfloat16).astype(ml_dtypes.float8_e5m2).view(np.uint8),
        }


def run_native_subprocess(out_dir):
    """Torch with its native CPU capability, on the committed inputs; returns report lines."""
    cmd = [sys.executable, os.path.abspath(__file__), "--native", "--compare", "--out", out_dir]
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return ["  native run failed:", r.stderr[-2000:]]
    return r.stdout.rstrip("\n").split("\n")


def compare_mode(out_dir, device):
    x = read_col(out_dir, "f32_inputs")
    qx, qs, qb = read_col(out_dir, "quant_x_f32"), read_col(out_dir, "quant_scales"), read_col(out_dir, "quant_x_bf16")
    got_cols, got_tabs, got_quant = torch_columns(x, device), torch_tables(device), torch_quant(qx, qs, qb, device)
    ref_cols = {n: read_col(out_dir, n) for n in got_cols}
    ref_tabs = {n: read_col(out_dir, n) for n in got_tabs}
    ref_quant = {n: read_col(out_dir, n) for n in got_quant}
    cap = torch.backends.cpu.get_cpu_capability() if device == "cpu" else torch.cuda.get_device_name()
    label = ("golden", f"torch {torch.__version__} {device} ({cap})")
    print(f"torch {torch.__version__} on {device} ({cap}) vs goldens:")
    for line in (diff_report(label, ref_cols, got_cols, x) + diff_report(label, ref_tabs, got_tabs)
                 + diff_report(label, ref_quant, got_quant)):
        print(line)
    if device != "cpu":  # the scale as a CPU 0-dim tensor or a Python float takes other kernels
        for kind in ("cpu0dim", "float"):
            print(f"  quantize with the scale as {kind}:")
            for line in diff_report(label, ref_quant, torch_quant(qx, qs, qb, device, kind)):
                print("  " + line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--compare", action="store_true", help="compare this torch against committed goldens")
    ap.add_argument("--native", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.compare:
        compare_mode(args.out, args.device)
        return
    assert torch.backends.cpu.get_cpu_capability() == "DEFAULT", "ATEN_CPU_CAPABILITY=default expected"
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    x = make_f32_inputs(rng)
    qx, qs, qb = make_quant_inputs(rng)
    cols = torch_columns(x)
    tabs = torch_tables()
    quant = torch_quant(qx, qs, qb)

    write_col(args.out, "f32_inputs", x)
    for name, arr in {**cols, **tabs, **quant}.items():
        write_col(args.out, name, arr)
    write_col(args.out, "quant_x_f32", qx)
    write_col(args.out, "quant_scales", qs)
    write_col(args.out, "quant_x_bf16", qb)

    report = [f"Numerics golden cross-check, generated by tools/make_numerics_golden.py",
              f"goldens: torch {torch.__version__}, CPU, ATEN_CPU_CAPABILITY=default; numpy {np.__version__}",
              f"f32 inputs: {x.size}", ""]
    report.append("1. torch with its native CPU capability vs the goldens:")
    report += run_native_subprocess(args.out)
    report.append("")
    if ml_dtypes is not None:
        report.append(f"2. ml_dtypes {ml_dtypes.__version__} (non-saturating OCP casts) vs torch goldens:")
        ml = mldtypes_columns(x)
        report += diff_report(("torch", "ml_dtypes"), cols, ml, x)
        report += diff_report(("torch", "ml_dtypes"), tabs, mldtypes_tables())
        # The C++ tests check f32_to_e4m3fn_nonsat against ml_dtypes' e4m3fn cast.
        write_col(args.out, "f32_to_e4m3fn_mldtypes", ml["f32_to_e4m3fn"])
    else:
        report.append("2. ml_dtypes not installed: cross-check skipped")
    text = "\n".join(report) + "\n"
    with open(os.path.join(args.out, "crosscheck.txt"), "w") as f:
        f.write(text)
    print(text)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {len(os.listdir(args.out))} files, {total} bytes, to {args.out}")


if __name__ == "__main__":
    main()
