# Writes expected.json next to each reference export (tensor list, scales, config keys) for the C++ tests (dev-time only).
"""Run with /root/venv-ref/bin/python (safetensors + torch). Loads every *.safetensors file of
every folder under tests/data/ref_exports/ with the real `safetensors` library (this is also the
"does it load" check) and writes <folder>/expected.json:

  naming          "legacy" (model.layers.* / visual.*) or "v4.52" (model.language_model.* /
                  model.visual.*), from the tensor names
  files           file names in the folder (expected.json excluded)
  safetensors_metadata  the __metadata__ of each safetensors file
  tensors         [{name, dtype (safetensors spelling), shape, sha256 of the raw little-endian
                  bytes}] sorted by name
  counts          per component (language_model / visual / lm_head) -> {dtype: n}
  scales          {suffix: [names]} for weight_scale, input_scale, k_scale, v_scale
  scale_values    name -> value (float, exact) for every scale with <= 1 element; for larger
                  scales {shape, first: [4 values]}
  fp8_first4      name -> first 4 elements of each F8_E4M3 tensor, decoded to float
  orphan_kv_scales  k/v scale tensors whose parent module has no weight in the file
                  (the ViT attn.k_proj.k_scale / attn.v_proj.v_scale of ModelOpt, vLLM 0.10 KeyError)
  hf_quant_config       hf_quant_config.json content or null
  quantization_config   config.json "quantization_config" or null
  config_top_keys       sorted top-level keys of config.json
  requant_check   (exports only) per F8 weight: elements equal bit for bit to
                  e4m3(clamp(bf16(W_base / weight_scale))), the same for the single-rounding
                  rule e4m3(W_base / weight_scale), and max |W_base - q * weight_scale|
"""

import hashlib
import json
import pathlib
import sys

import torch
from safetensors import safe_open

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common as C  # noqa: E402

ST_DTYPE = {
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def component(name):
    if name.startswith(("visual.", "model.visual.")):
        return "visual"
    if name.startswith("lm_head."):
        return "lm_head"
    if name.startswith(("model.language_model.", "model.")):
        return "language_model"
    return "other"


def raw_bytes(t):
    t = t.contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def describe(folder):
    folder = pathlib.Path(folder)
    tensors = {}
    meta = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            meta[f.name] = h.metadata()
            for k in h.keys():
                assert k not in tensors, f"duplicate tensor {k}"
                tensors[k] = h.get_tensor(k)
    names = sorted(tensors)
    if any(n.startswith(("model.language_model.", "model.visual.")) for n in names):
        naming = "v4.52"
    elif any(n.startswith(("visual.", "model.layers.")) for n in names):
        naming = "legacy"
    else:
        naming = "unknown"
    rows, counts, scales, scale_values, fp8_first4 = [], {}, {}, {}, {}
    for n in names:
        t = tensors[n]
        dt = ST_DTYPE[t.dtype]
        rows.append(
            dict(name=n, dtype=dt, shape=list(t.shape), sha256=hashlib.sha256(raw_bytes(t)).hexdigest())
        )
        c = counts.setdefault(component(n), {})
        c[dt] = c.get(dt, 0) + 1
        for suf in ("weight_scale", "input_scale", "k_scale", "v_scale"):
            if n.endswith("." + suf):
                scales.setdefault(suf, []).append(n)
                if t.numel() <= 1:
                    scale_values[n] = float(t.float().reshape(-1)[0]) if t.numel() else None
                else:
                    scale_values[n] = dict(
                        shape=list(t.shape), first=[float(x) for x in t.float().reshape(-1)[:4]]
                    )
        if t.dtype == torch.float8_e4m3fn:
            fp8_first4[n] = [float(x) for x in t.float().reshape(-1)[:4]]
    have_weight = {n[: -len(".weight")] for n in names if n.endswith(".weight")}
    orphans = []
    for n in names:
        if n.endswith((".k_scale", ".v_scale")):
            parent = n.rsplit(".", 1)[0]
            # ModelOpt files K/V scales under <attn>.k_proj / <attn>.v_proj; compressed-tensors
            # directly under <attn>. Orphan = a pseudo-child module that does not exist.
            if parent.endswith((".k_proj", ".v_proj")) and parent not in have_weight:
                orphans.append(n)
    cfg = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    hq = folder / "hf_quant_config.json"
    files = sorted(p.name for p in folder.iterdir() if p.name != "expected.json")
    return dict(
        folder=folder.name,
        naming=naming,
        files=files,
        safetensors_metadata=meta,
        num_tensors=len(names),
        counts=counts,
        scales={k: v for k, v in sorted(scales.items())},
        scale_values=scale_values,
        orphan_kv_scales=orphans,
        hf_quant_config=json.loads(hq.read_text()) if hq.exists() else None,
        quantization_config=cfg.get("quantization_config"),
        config_top_keys=sorted(cfg),
        fp8_first4=fp8_first4,
        tensors=rows,
    )


def legacy_name(n):
    if n.startswith("model.language_model."):
        return "model." + n[len("model.language_model.") :]
    if n.startswith("model.visual."):
        return n[len("model.") :]
    return n


def requant_check(folder, base_tensors):
    """For every F8_E4M3 weight: recompute it from the BF16 base weight with the rule
    q = e4m3_rne(clamp(bf16_rne(f32(W) / f32(weight_scale)), +-448)) -- the division result is
    rounded to BF16 first, because PyTorch keeps `bf16_tensor / f32_0dim_or_bf16_scale` in BF16
    (ModelOpt: to_quantized_weight; compressed-tensors: scale is BF16) -- and report how many
    elements match bit for bit; bit_exact_f32_direct counts matches of the single-rounding rule
    e4m3_rne(clamp(f32(W)/f32(scale))) for comparison; plus max |W - q*scale|."""
    out = {}
    with safe_open(str(folder / "model.safetensors"), framework="pt") as h:
        keys = set(h.keys())
        for n in sorted(keys):
            if not n.endswith(".weight"):
                continue
            q = h.get_tensor(n)
            if q.dtype != torch.float8_e4m3fn:
                continue
            sname = n[: -len("weight")] + "weight_scale"
            w = base_tensors[legacy_name(n)].float()  # BF16 -> f32 is exact
            sc = h.get_tensor(sname).float()
            scb = sc.reshape(-1, 1) if sc.numel() > 1 else sc.reshape(())
            x = w / scb.float()  # float32 division
            via_bf16 = x.to(torch.bfloat16).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
            direct = x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
            same = (via_bf16.view(torch.uint8) == q.view(torch.uint8)).sum().item()
            same_direct = (direct.view(torch.uint8) == q.view(torch.uint8)).sum().item()
            err = (w - q.float() * scb.float()).abs().max().item()
            out[n] = dict(
                bit_exact=same, bit_exact_f32_direct=same_direct, numel=q.numel(), max_abs_dequant_err=err
            )
    return out


def main():
    root = C.OUT_ROOT
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.safetensors"))):
        d = describe(folder)
        if folder.name != "base-bf16":
            with safe_open(str(C.BASE_DIR / "model.safetensors"), framework="pt") as h:
                base = {k: h.get_tensor(k) for k in h.keys()}
            rc = requant_check(folder, base)
            d["requant_check"] = dict(
                rule="q = e4m3_rne(clamp(bf16_rne(f32(W_base_bf16) / f32(weight_scale)), +-448))",
                all_bit_exact=all(v["bit_exact"] == v["numel"] for v in rc.values()),
                per_tensor=rc,
            )
        (folder / "expected.json").write_text(json.dumps(d, indent=1) + "\n")
        print(
            f"{folder.name}: {d['num_tensors']} tensors, naming={d['naming']}, counts={d['counts']}, "
            f"orphan_kv={len(d['orphan_kv_scales'])}"
        )


if __name__ == "__main__":
    main()
