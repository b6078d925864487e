#!/usr/bin/env python3
"""Dev-time interoperability check of vlq's safetensors reader/writer against Python `safetensors`.

1. Python (safetensors.torch / safetensors.numpy / huggingface_hub.save_torch_state_dict) writes a
   single file per writer and a sharded checkpoint with an index, plus manifest.json (names, dtypes,
   shapes, bytes as hex); vlq's reader must read them identically (gtest
   PythonInterop.ReadsFilesWrittenByPythonSafetensors with VLQ_READ_FIXTURE_DIR).
2. vlq's writer writes a single-file and a sharded checkpoint (gtest PythonInterop.WriteFixtureForPython
   with VLQ_WRITE_FIXTURE_DIR); Python `safetensors.safe_open` must load them with the same names,
   dtypes, shapes and bytes; the index must match the shards (weight_map, metadata.total_size).
3. Byte identity: Python `save_file` of the same tensors (same metadata) must produce byte-identical
   files to vlq's writer, shard by shard.

With --update-fixtures the Python-written files of step 1 are copied to tests/data/io/python/, which the
default test suite reads without Python.

Usage (venv with torch, safetensors, huggingface_hub; see docs/HELPERS.md):
  /root/venv-ref/bin/python tools/check_safetensors_python.py [--tests-binary build-io/vlq_tests]
                                                              [--update-fixtures]

Last run (recorded also in docs/robustness.md):
  2026-11-29/30, Debian 12 x86-64, Python 3.11, safetensors 0.8.0, torch 2.15.0, huggingface_hub 2.4.0:
  /root/venv-ref/bin/python tools/check_safetensors_python.py --tests-binary build-io/vlq_tests
  (and once with --update-fixtures, against the tests/io binary alone, to create tests/data/io/python)
  -> PASS: vlq read 3 Python-written checkpoints (torch, numpy, huggingface_hub sharded; 4 files);
     Python loaded 2 vlq-written checkpoints (single with all 16 dtypes + scalar + empty; sharded, 4 shards:
     5 files) with equal names/dtypes/shapes/bytes/metadata, index consistent with shards, and all 5 files
     byte-identical to Python save_file.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import save_torch_state_dict
from safetensors import safe_open
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "io" / "python"

TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "F8_E8M0": torch.float8_e8m0fnu,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_from(dtype: str, shape, data: bytes) -> torch.Tensor:
    dt = TORCH_DTYPES[dtype]
    if len(data) == 0:
        return torch.empty(shape, dtype=dt)
    return torch.frombuffer(bytearray(data), dtype=dt).reshape(shape).clone()


def pattern(n: int, seed: int) -> bytes:
    return bytes(((seed * 131 + i * 7) & 0xFF) for i in range(n))


def python_tensors(seed0: int):
    out = {}
    for i, (name, dt) in enumerate(TORCH_DTYPES.items()):
        size = torch.tensor([], dtype=dt).element_size()
        data = pattern(2 * 3 * size, seed0 + i)
        if name == "BOOL":
            data = bytes(b & 1 for b in data)
        out[f"py.{name}"] = tensor_from(name, (2, 3), data)
    out["py.scalar"] = torch.tensor(1.5, dtype=torch.float32)
    out["py.empty"] = torch.empty((0, 3), dtype=torch.bfloat16)
    return out


def manifest_entry(tensors, metadata):
    return {
        "metadata": metadata or {},
        "tensors": {
            k: {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "hex": tensor_bytes(t).hex()}
            for k, t in tensors.items()
        },
    }


def write_python_fixtures(d: Path):
    d.mkdir(parents=True, exist_ok=True)
    manifest = {"checkpoints": {}}
    t1 = python_tensors(11)
    save_file(t1, str(d / "py_torch.safetensors"), metadata={"format": "pt"})
    manifest["checkpoints"]["py_torch.safetensors"] = manifest_entry(t1, {"format": "pt"})

    t2 = {"a.f32": np.arange(6, dtype=np.float32).reshape(2, 3), "b.i16": np.array([-1, 2, -3], dtype=np.int16),
          "c.bool": np.array([True, False]), "d.u64": np.array(2**64 - 1, dtype=np.uint64)}
    np_save_file(t2, str(d / "py_numpy.safetensors"))
    manifest["checkpoints"]["py_numpy.safetensors"] = manifest_entry({k: torch.from_numpy(v) for k, v in t2.items()}, {})

    t3 = {}
    for i in range(4):
        t3[f"model.layers.{i}.mlp.up_proj.weight"] = tensor_from("BF16", (8, 8), pattern(128, 40 + i))
        t3[f"model.layers.{i}.mlp.up_proj.weight_scale"] = torch.tensor(0.25 * (i + 1))
    (d / "py_sharded").mkdir()
    save_torch_state_dict(t3, str(d / "py_sharded"), max_shard_size=300, metadata={"format": "pt"})
    shards = sorted((d / "py_sharded").glob("*.safetensors"))
    assert len(shards) > 1, "expected a sharded checkpoint"
    manifest["checkpoints"]["py_sharded"] = manifest_entry(t3, {"format": "pt"})
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def run_gtest(binary: Path, test: str, env_var: str, value: Path):
    env = dict(os.environ, **{env_var: str(value)})
    r = subprocess.run([str(binary), f"--gtest_filter={test}"], env=env, capture_output=True, text=True)
    ok = r.returncode == 0 and "[  PASSED  ] 1 test" in r.stdout and "SKIPPED" not in r.stdout
    if not ok:
        sys.stdout.write(r.stdout + r.stderr)
        raise SystemExit(f"FAIL: {test} ({env_var}={value})")


def load_and_compare(ckpt: Path, expect) -> int:
    """Loads a vlq-written checkpoint with Python safetensors; returns the number of files checked."""
    index = ckpt / "model.safetensors.index.json"
    if index.exists():
        idx = json.loads(index.read_text())
        files = sorted(set(idx["weight_map"].values()))
    else:
        idx, files = None, ["model.safetensors"]
    seen, total = {}, 0
    for fname in files:
        with safe_open(str(ckpt / fname), framework="pt") as f:
            assert (f.metadata() or {}) == expect["metadata"], (fname, f.metadata())
            for k in f.keys():
                assert k not in seen, f"{k} in two shards"
                seen[k] = fname
                t = f.get_tensor(k)
                e = expect["tensors"][k]
                assert DTYPE_NAMES[t.dtype] == e["dtype"], (k, t.dtype, e["dtype"])
                assert list(t.shape) == e["shape"], (k, t.shape, e["shape"])
                assert tensor_bytes(t).hex() == e["hex"], k
                total += len(tensor_bytes(t))
    assert set(seen) == set(expect["tensors"]), "tensor sets differ"
    if idx is not None:
        assert idx["weight_map"] == seen, "weight_map does not match the shards"
        assert idx["metadata"]["total_size"] == total, (idx["metadata"], total)
    # Byte identity with Python's serializer, shard by shard.
    for fname in files:
        names = [k for k, v in seen.items() if v == fname]
        tensors = {k: tensor_from(expect["tensors"][k]["dtype"], expect["tensors"][k]["shape"],
                                  bytes.fromhex(expect["tensors"][k]["hex"])) for k in names}
        with tempfile.TemporaryDirectory() as td:
            ref = Path(td) / "ref.safetensors"
            save_file(tensors, str(ref), metadata=expect["metadata"] or None)
            assert ref.read_bytes() == (ckpt / fname).read_bytes(), f"{ckpt / fname} differs from Python save_file"
    return len(files)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    build = os.environ.get("VLQ_BUILD_DIR", "build")
    ap.add_argument("--tests-binary", type=Path, default=REPO / build / "vlq_tests")
    ap.add_argument("--update-fixtures", action="store_true", help="copy the Python-written files to tests/data/io/python")
    args = ap.parse_args()
    import safetensors
    import huggingface_hub
    print(f"safetensors {safetensors.__version__}, torch {torch.__version__}, huggingface_hub {huggingface_hub.__version__}")

    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        py = td / "py"
        manifest = write_python_fixtures(py)
        run_gtest(args.tests_binary, "PythonInterop.ReadsFilesWrittenByPythonSafetensors", "VLQ_READ_FIXTURE_DIR", py)
        print(f"ok: vlq read {len(manifest['checkpoints'])} Python-written checkpoints")

        out = td / "vlq"
        run_gtest(args.tests_binary, "PythonInterop.WriteFixtureForPython", "VLQ_WRITE_FIXTURE_DIR", out)
        vm = json.loads((out / "manifest.json").read_text())
        nfiles = 0
        for path, expect in vm["checkpoints"].items():
            nfiles += load_and_compare(out / path, expect)
        print(f"ok: Python loaded {len(vm['checkpoints'])} vlq-written checkpoints ({nfiles} files), "
              "byte-identical to Python save_file")

        if args.update_fixtures:
            if FIXTURES.exists():
                shutil.rmtree(FIXTURES)
            shutil.copytree(py, FIXTURES)
            print(f"updated {FIXTURES.relative_to(REPO)}")
    print("PASS")


if __name__ == "__main__":
    main()
