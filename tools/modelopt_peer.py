# Dev-time peer benchmark (issue #13): NVIDIA ModelOpt's examples/hf_ptq/hf_ptq.py FP8 flow on one GPU, on the same
# Qwen2.5-VL checkpoint and calibration data as `vlq quantize`, for time and memory ratios. See tools/modelopt_peer.md.
"""Quantizes a Qwen2.5-VL checkpoint folder to FP8 the way ModelOpt's hf_ptq.py does (--qformat fp8
--kv_cache_qformat fp8_cast by default), with vlq's calibration data formats, and reports wall times and peaks.

Flow (mirrors hf_ptq.py of nvidia-modelopt 0.47):
  load     Qwen2_5_VLForConditionalGeneration (bf16) on the device; AutoProcessor(padding_side="left"); the
           tokenizer's pad token falls back to EOS, padding on the left.
  data     text: raw text (no chat template), all samples tokenized together with padding=True,
           truncation=True, max_length=--seq-len (what modelopt's get_dataset_dataloader does); batched by
           --batch-size (0 = modelopt's get_max_batch_size probe on the language model, as hf_ptq does).
           images: chat user [image, "Describe this image."] + assistant <caption>, chat template with
           add_generation_prompt=False, through the processor; batch size 1 (what hf_ptq uses for image calib).
  quantize quant_cfg = FP8_DEFAULT_CFG (== recipe preset "fp8") + mtq.update_quant_cfg_with_kv_cache_quant(
           KV preset, default "fp8_cast"); --scope lm (default): the language model is extracted with
           get_language_model_from_vl and every other child (vision tower, lm_head) gets the all-disabled
           config, as hf_ptq's extract_and_prepare_language_model_from_vl does; mtq.quantize(language_model,
           cfg, forward_loop). --scope vlm: the whole model is quantized and the vision-pattern disables
           (*visual*, *vision_tower*, ...) are dropped from the config. The forward loop runs text batches
           through the language model (modelopt's own _forward_loop: use_cache off, OOM splitting) and image
           batches through the full model (the vision tower has to produce the image embeddings).
  export   AutoConfig + processor saved, export_hf_checkpoint(full_model), tokenizer saved (hf_ptq order).
Not done (not part of the quantize cost being compared): hf_ptq's pre/post-PTQ preview generations.

Usage: python tools/modelopt_peer.py MODEL_DIR --calib-text FILE --calib-images DIR --out DIR [--json FILE]
       [--text-samples 512] [--image-samples 256] [--seq-len 512] [--scope lm|vlm] [--kv-cache-qformat fp8_cast]
       [--batch-size 0] [--device cuda|cpu] [--dry-run]
Needs torch, transformers, pillow and nvidia-modelopt (.whl bundle, see tools/modelopt_peer.md); never used by CI.
"""
import argparse
import copy
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import platform
import resource
import sys
import time
import traceback
import types
from pathlib import Path

T0 = time.time()
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp"}
IMAGE_INSTRUCTION = "Describe this image."
VISION_PATTERNS = ("*embed_vision*", "*vision_tower*", "*visual*", "*vision_model*", "*multi_modal_projector*")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:7.1f}s] {msg}", flush=True)


class PeerError(Exception):
    """A failure with a message meant for the user (no traceback needed)."""


# ---------------------------------------------------------------------------------------------------------------
# scipy stub. nvidia-modelopt imports scipy at module level (nas/algorithms.py: interpolate, spatial;
# quantization/calib/histogram.py: stats.entropy) although FP8 max calibration and the HF export never call it.
# scipy (35 MB) is left out of the wheel bundle; when it is not installed, a finder serving stub modules is
# appended to sys.meta_path AFTER torch and transformers are imported (their availability checks are done by
# then). Any use of a stub attribute raises RuntimeError; used in an `except` clause it is a plain exception type.
class _ScipyMissing(Exception):
    def __new__(cls, *a, **k):
        raise RuntimeError(f"scipy is not installed (stub for {cls.__module__}.{cls.__name__}): "
                           "this ModelOpt feature needs the real scipy")


class _ScipyStubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "scipy" or fullname.startswith("scipy."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = types.ModuleType(spec.name)
        m.__path__ = []
        m.__vlq_stub__ = True

        def __getattr__(name, _mod=spec.name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (_ScipyMissing,), {"__module__": _mod})

        m.__getattr__ = __getattr__
        return m

    def exec_module(self, module):
        pass


def ensure_scipy_or_stub():
    if importlib.util.find_spec("scipy") is not None:
        return "installed"
    sys.meta_path.append(_ScipyStubFinder())
    return "stub (not installed)"


# ---------------------------------------------------------------------------------------------------------------
# Calibration data (vlq's formats: include/vlq/quant/calib_data.h)
def read_text_samples(path):
    p = Path(path)
    if not p.is_file():
        raise PeerError(f"--calib-text {path}: not a file")
    raw = p.read_text(encoding="utf-8-sig")
    first = raw.lstrip()[:1]
    jsonl = p.name.lower().endswith(".jsonl") or first == "{"
    out = []
    for i, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if jsonl:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise PeerError(f"{path}:{i}: invalid JSON ({e})")
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise PeerError(f'{path}:{i}: expected an object with a string "text"')
            t = rec["text"].strip()
            if t:
                out.append(t)
        else:
            out.append(line)
    if not out:
        raise PeerError(f"--calib-text {path}: no sample")
    return out


def read_image_samples(path):
    p = Path(path)
    out = []
    if p.is_file():  # JSONL: {"image": path relative to the file's folder, "text": caption}
        for i, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            img = Path(rec["image"])
            img = img if img.is_absolute() else p.parent / img
            if not img.is_file():
                raise PeerError(f"{path}:{i}: image {img} missing")
            if rec["text"].strip():
                out.append((img, rec["text"].strip()))
    elif p.is_dir():
        missing = []
        for img in sorted(x for x in p.iterdir() if x.suffix.lower() in IMAGE_EXTS and not x.name.startswith(".")):
            txt = img.with_suffix(".txt")
            cap = ""
            if txt.is_file():
                cap = next((ln.strip() for ln in txt.read_text(encoding="utf-8-sig").splitlines() if ln.strip()), "")
            if not cap:
                missing.append(img.name)
            else:
                out.append((img, cap))
        if missing:
            raise PeerError(f"--calib-images {path}: {len(missing)} image(s) without a caption: {missing[:10]}")
    else:
        raise PeerError(f"--calib-images {path}: not a folder or JSONL file")
    if not out:
        raise PeerError(f"--calib-images {path}: no image with a caption")
    return out


def take_cycled(pool, n, what):
    if n <= 0:
        return [], False
    if n > len(pool):
        log(f"NOTE: {what}: {n} samples asked, the pool has {len(pool)}: cycling through it "
            f"({n / len(pool):.1f} passes)")
    return [pool[i % len(pool)] for i in range(n)], n > len(pool)


# ---------------------------------------------------------------------------------------------------------------
def gpu_peaks(torch, device):
    if device != "cuda":
        return {}
    return {"gpu_max_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
            "gpu_max_reserved_gb": torch.cuda.max_memory_reserved() / 1e9}


def phase_peak(torch, device, res, name):
    """Records the GPU peaks of the phase that just ended and resets the counters (the overall peak is their max)."""
    if device != "cuda":
        return {}
    pk = gpu_peaks(torch, device)
    res.setdefault("gpu_phase_peaks_gb", {})[name] = pk
    for k, v in pk.items():
        res[k] = max(res.get(k, 0.0), v)
    torch.cuda.reset_peak_memory_stats()
    return {k: round(v, 2) for k, v in pk.items()}


def host_rss_peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: kilobytes


def sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="Qwen2.5-VL checkpoint folder (config.json, safetensors, tokenizer, preprocessor)")
    ap.add_argument("--calib-text", help="JSONL with a \"text\" key per line, or plain text (one sample a line)")
    ap.add_argument("--calib-images", help="folder of *.png/*.jpg with same-stem .txt captions (or a JSONL)")
    ap.add_argument("--text-samples", type=int, default=512)
    ap.add_argument("--image-samples", type=int, default=256)
    ap.add_argument("--seq-len", type=int, default=512, help="text samples are cut to this many tokens")
    ap.add_argument("--scope", choices=["lm", "vlm"], default="lm",
                    help="lm: quantize the language model only (hf_ptq); vlm: keep the vision quantizers enabled")
    ap.add_argument("--kv-cache-qformat", default="fp8_cast",
                    help="KV preset of modelopt_recipes/configs/ptq/presets/kv (hf_ptq's default fp8_cast; "
                         "fp8 = data-driven) or none")
    ap.add_argument("--batch-size", type=int, default=0,
                    help="text calibration batch size; 0 = modelopt get_max_batch_size probe (hf_ptq default; "
                         "1 on CPU)")
    ap.add_argument("--no-cuda-ext", action="store_true",
                    help="never JIT-build ModelOpt's FP8 CUDA fake-quant extension (use its torch fallback)")
    ap.add_argument("--out", help="export folder (required unless --dry-run)")
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: only for a local smoke test")
    ap.add_argument("--dry-run", action="store_true", help="check imports, the model folder and the data; no model")
    return ap.parse_args()


def main(a, res):
    res["phase"] = "imports"
    log(f"python {platform.python_version()} on {platform.node()}; argv: {' '.join(sys.argv[1:])}")
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoConfig, AutoProcessor
    res["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                       "transformers": transformers.__version__}
    res["scipy"] = ensure_scipy_or_stub()
    try:
        import modelopt
        import modelopt.torch.opt as mto
        import modelopt.torch.quantization as mtq
        from modelopt.torch.export import export_hf_checkpoint
        from modelopt.torch.export.model_utils import get_language_model_from_vl
        from modelopt.torch.utils import dataset_utils as mdu
    except Exception as e:
        raise PeerError(f"importing modelopt failed: {type(e).__name__}: {e} (install the .whl bundle, see "
                        "tools/modelopt_peer.md)") from e
    try:
        from modelopt.recipe.presets import KV_QUANT_CFG_CHOICES, QUANT_CFG_CHOICES
    except Exception:  # older wheels: config dicts in mtq
        KV_QUANT_CFG_CHOICES, QUANT_CFG_CHOICES = None, None
    res["versions"]["modelopt"] = modelopt.__version__
    from importlib import metadata as _md
    for dist in ("accelerate", "safetensors", "numpy", "tokenizers", "torchvision", "pydantic", "pulp"):
        try:
            res["versions"][dist] = _md.version(dist)
        except _md.PackageNotFoundError:
            res["versions"][dist] = None
    if a.no_cuda_ext:
        from modelopt.torch.quantization import extensions as mext
        for fn in ("get_cuda_ext", "get_cuda_ext_fp8", "get_cuda_ext_mx"):
            if hasattr(mext, fn):
                getattr(mext, fn).extension = None
        log("--no-cuda-ext: ModelOpt CUDA extensions disabled (torch fallback for FP8 fake quant)")
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, modelopt {modelopt.__version__}, "
        f"scipy: {res['scipy']}")
    dev = a.device
    if dev == "cuda":
        if not torch.cuda.is_available():
            raise PeerError("--device cuda but torch.cuda.is_available() is False")
        res["gpu"] = torch.cuda.get_device_name(0)
        log(f"GPU: {res['gpu']}")

    # quantization config (hf_ptq: QUANT_CFG_CHOICES["fp8"] + update_quant_cfg_with_kv_cache_quant)
    quant_cfg = copy.deepcopy(mtq.FP8_DEFAULT_CFG)
    if QUANT_CFG_CHOICES is not None and "fp8" in QUANT_CFG_CHOICES and QUANT_CFG_CHOICES["fp8"] != quant_cfg:
        log("NOTE: mtq.FP8_DEFAULT_CFG differs from the recipe preset 'fp8' that hf_ptq uses; using the preset")
        quant_cfg = copy.deepcopy(QUANT_CFG_CHOICES["fp8"])
    kvq = a.kv_cache_qformat
    if kvq != "none":
        if KV_QUANT_CFG_CHOICES is not None:
            if kvq not in KV_QUANT_CFG_CHOICES:
                raise PeerError(f"--kv-cache-qformat {kvq}: not one of {sorted(KV_QUANT_CFG_CHOICES)} or none")
            kv_cfg = KV_QUANT_CFG_CHOICES[kvq]["quant_cfg"]
        else:
            name = {"fp8": "FP8_KV_CFG", "fp8_cast": "FP8_KV_CFG"}.get(kvq, kvq)
            kv_cfg = getattr(mtq, name)["quant_cfg"]
        quant_cfg = mtq.update_quant_cfg_with_kv_cache_quant(quant_cfg, kv_cfg)
    if a.scope == "vlm":
        def _is_vision_disable(e):
            return isinstance(e, dict) and e.get("quantizer_name") in VISION_PATTERNS and e.get("enable") is False
        qc = quant_cfg["quant_cfg"]
        if isinstance(qc, list):
            quant_cfg["quant_cfg"] = [e for e in qc if not _is_vision_disable(e)]
        else:  # older dict form
            for k in VISION_PATTERNS:
                qc.pop(k, None)
    res["quant_cfg"] = {"base": "FP8_DEFAULT_CFG", "kv_cache_qformat": kvq, "scope": a.scope,
                        "algorithm": str(quant_cfg.get("algorithm"))}
    log(f"quant config: FP8_DEFAULT_CFG + KV {kvq}, algorithm {quant_cfg.get('algorithm')}, scope {a.scope}")

    # data
    res["phase"] = "data"
    texts = read_text_samples(a.calib_text) if a.calib_text and a.text_samples > 0 else []
    images = read_image_samples(a.calib_images) if a.calib_images and a.image_samples > 0 else []
    text_sel, text_cycled = take_cycled(texts, a.text_samples if texts else 0, f"text ({a.calib_text})")
    img_sel, img_cycled = take_cycled(images, a.image_samples if images else 0, f"images ({a.calib_images})")
    if not text_sel and not img_sel:
        raise PeerError("no calibration sample: give --calib-text and/or --calib-images")
    res["samples"] = {"text": len(text_sel), "image": len(img_sel), "text_pool": len(texts),
                      "image_pool": len(images), "text_cycled": text_cycled, "image_cycled": img_cycled}
    log(f"samples: {len(text_sel)} text (pool {len(texts)}), {len(img_sel)} image (pool {len(images)})")
    mdir = Path(a.model)
    if not (mdir / "config.json").is_file():
        raise PeerError(f"{mdir}: no config.json")
    if not a.dry_run and not a.out:
        raise PeerError("--out is required")

    # load
    res["phase"] = "load"
    t = time.time()
    processor = AutoProcessor.from_pretrained(str(mdir), padding_side="left")
    tokenizer = processor.tokenizer
    default_padding_side, default_pad_token = tokenizer.padding_side, tokenizer.pad_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = None
    if not a.dry_run:
        try:
            from transformers import Qwen2_5_VLForConditionalGeneration as VLCls
        except ImportError:
            from transformers import AutoModelForImageTextToText as VLCls
        kw = {"device_map": dev}
        try:
            model = VLCls.from_pretrained(str(mdir), dtype=torch.bfloat16, **kw)
        except TypeError:
            model = VLCls.from_pretrained(str(mdir), torch_dtype=torch.bfloat16, **kw)
        model.eval()
        sync(torch, dev)
    res["load_s"] = time.time() - t
    nparams = sum(p.numel() for p in model.parameters()) if model is not None else 0
    log(f"load: {res['load_s']:.1f} s ({type(model).__name__ if model is not None else 'processor only'}, "
        f"{nparams / 1e9:.2f} B params) {phase_peak(torch, dev, res, 'load')}")

    # tokenize / process (counted in calibration time on the ModelOpt side: hf_ptq builds its dataloader then)
    res["phase"] = "data_prep"
    t = time.time()
    text_enc = None
    if text_sel:
        text_enc = tokenizer(text_sel, return_tensors="pt", padding=True, truncation=True, max_length=a.seq_len)
    img_batches = []
    for img_path, cap in img_sel:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": IMAGE_INSTRUCTION}]},
                {"role": "assistant", "content": [{"type": "text", "text": cap}]}]
        prompt = processor.apply_chat_template(msgs, add_generation_prompt=False, tokenize=False)
        with Image.open(img_path) as im:
            rgb = im.convert("RGB")
        img_batches.append(dict(processor(text=[prompt], images=[rgb], return_tensors="pt")))
    res["data_prep_s"] = time.time() - t
    tok = {"text_real": int(text_enc["attention_mask"].sum()) if text_enc is not None else 0,
           "text_padded": int(text_enc["input_ids"].numel()) if text_enc is not None else 0,
           "text_padded_len": int(text_enc["input_ids"].shape[1]) if text_enc is not None else 0,
           "image_samples_total": int(sum(b["input_ids"].numel() for b in img_batches))}
    res["tokens"] = tok
    log(f"data prep: {res['data_prep_s']:.1f} s; text tokens {tok['text_real']} real / {tok['text_padded']} padded "
        f"(all padded to {tok['text_padded_len']}); image-sample tokens {tok['image_samples_total']}")
    if img_batches:
        log(f"first image sample: {img_batches[0]['input_ids'].shape[1]} tokens, "
            f"keys {sorted(img_batches[0])}; prompt ends {prompt[-80:]!r}")
    if a.dry_run:
        res["phase"] = "done"
        res["ok"] = True
        log("dry run: imports, model folder, processor and data OK")
        return

    # language model extraction + disabling the rest (hf_ptq extract_and_prepare_language_model_from_vl)
    res["phase"] = "calibrate"
    t_cal = time.time()
    mto.enable_huggingface_checkpointing()
    lineage = get_language_model_from_vl(model)
    if lineage is None:
        raise PeerError(f"get_language_model_from_vl found no language model in {type(model).__name__}")
    language_model = lineage[-1]
    disabled_cfg = {"quant_cfg": [{"quantizer_name": "*", "enable": False}], "algorithm": "max"}
    if a.scope == "lm":
        memo = set(lineage)
        for anc in lineage[:-1]:
            for name, child in anc.named_children():
                if child not in memo:
                    mtq.quantize(child, disabled_cfg, forward_loop=None)
                    memo.add(child)
                    log(f"disabled quantization of {type(anc).__name__}.{name} ({type(child).__name__})")
        target = language_model
    else:
        target = model
    # batch size (hf_ptq: get_max_batch_size(language_model, calib_seq, 1.1) for text; 1 for image calibration)
    bs = a.batch_size
    t = time.time()
    if text_enc is not None and bs <= 0:
        if dev == "cuda":
            bs = mdu.get_max_batch_size(language_model, max_sample_length=a.seq_len, sample_memory_usage_ratio=1.1)
        else:
            bs = 1
    bs = max(1, min(bs, len(text_sel))) if text_sel else 1
    res["batch_probe_s"] = time.time() - t
    res["text_batch_size"] = bs
    log(f"text batch size {bs} (probe {res['batch_probe_s']:.1f} s); image batch size 1 "
        f"{phase_peak(torch, dev, res, 'setup_and_batch_probe')}")
    text_batches = []
    if text_enc is not None:
        ids, am = text_enc["input_ids"].to(dev), text_enc["attention_mask"].to(dev)
        text_batches = [{"input_ids": ids[i:i + bs], "attention_mask": am[i:i + bs]} for i in range(0, ids.shape[0], bs)]
    img_batches = [{k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in b.items()} for b in img_batches]

    fwd_stats = {"text_s": 0.0, "image_s": 0.0, "calls": 0}

    def forward_loop(_m):
        fwd_stats["calls"] += 1
        t1 = time.time()
        if text_batches:
            mdu._forward_loop(language_model, text_batches)  # use_cache off, no_grad, OOM split (hf_ptq)
        sync(torch, dev)
        t2 = time.time()
        if img_batches:
            with mdu._disable_use_cache(model), torch.no_grad():
                for b in img_batches:
                    model(**b)
        sync(torch, dev)
        fwd_stats["text_s"] += t2 - t1
        fwd_stats["image_s"] += time.time() - t2
        log(f"forward loop: text {t2 - t1:.1f} s ({len(text_batches)} batches), images {time.time() - t2:.1f} s "
            f"({len(img_batches)} samples)")

    mtq.quantize(target, quant_cfg, forward_loop=forward_loop)
    sync(torch, dev)
    res["calibrate_s"] = time.time() - t_cal
    res["forward_loop"] = fwd_stats
    enabled = {"weight": 0, "input": 0, "kv_bmm": 0, "other": 0}
    for n, m in model.named_modules():
        if type(m).__name__ == "TensorQuantizer" and getattr(m, "is_enabled", False):
            k = ("weight" if n.endswith("weight_quantizer") else "input" if n.endswith("input_quantizer")
                 else "kv_bmm" if n.endswith(("k_bmm_quantizer", "v_bmm_quantizer")) else "other")
            enabled[k] += 1
    res["enabled_quantizers"] = enabled
    log(f"calibration (mtq.quantize incl. batch probe): {res['calibrate_s']:.1f} s; enabled quantizers {enabled} "
        f"{phase_peak(torch, dev, res, 'quantize')}")

    # export (hf_ptq export_quantized for a VLM)
    res["phase"] = "export"
    t = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        AutoConfig.from_pretrained(str(mdir)).save_pretrained(str(out))
        try:
            AutoProcessor.from_pretrained(str(mdir)).save_pretrained(str(out))
        except Exception as e:
            log(f"warning: could not save the processor config: {e}")
        export_hf_checkpoint(model, export_dir=str(out))
        tokenizer.padding_side = default_padding_side
        if default_pad_token is not None:
            tokenizer.pad_token = default_pad_token
        tokenizer.save_pretrained(str(out))
    sync(torch, dev)
    res["export_s"] = time.time() - t
    files = sorted(p.name for p in out.iterdir())
    res["export_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"export peak {phase_peak(torch, dev, res, 'export')}")
    log(f"export: {res['export_s']:.1f} s -> {out} ({res['export_bytes'] / 1e9:.2f} GB; {files})")
    try:
        qc = json.loads((out / "config.json").read_text()).get("quantization_config")
        hq = out / "hf_quant_config.json"
        res["export_quantization_config"] = qc if qc is not None else (json.loads(hq.read_text()) if hq.is_file() else None)
    except Exception as e:
        log(f"warning: could not read the exported quantization config: {e}")
    res["phase"] = "done"
    res["ok"] = True


def finish(a, res):
    res["total_s"] = time.time() - T0
    res["host_rss_peak_gb"] = host_rss_peak_gb()
    try:
        torch = sys.modules.get("torch")
        if a.device == "cuda" and torch is not None and torch.cuda.is_initialized():
            for k, v in gpu_peaks(torch, "cuda").items():  # the phase in progress at a failure
                res[k] = max(res.get(k, 0.0), v)
    except Exception:  # noqa: BLE001
        pass
    keys = ["load_s", "data_prep_s", "batch_probe_s", "calibrate_s", "export_s", "total_s",
            "gpu_max_allocated_gb", "gpu_max_reserved_gb", "host_rss_peak_gb"]
    log("RESULT " + " ".join(f"{k}={res[k]:.2f}" for k in keys if isinstance(res.get(k), float)))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
        log(f"wrote {a.json}")


if __name__ == "__main__":
    args = parse_args()
    result = {"tool": "tools/modelopt_peer.py", "ok": False, "argv": sys.argv[1:], "device": args.device,
              "dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    rc = 0
    try:
        main(args, result)
    except PeerError as e:
        result["error"] = str(e)
        log(f"FAILED in phase {result.get('phase')}: {e}")
        rc = 2
    except BaseException as e:  # noqa: BLE001 - report everything, including KeyboardInterrupt and OOM
        result["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        log(f"FAILED in phase {result.get('phase')}: {type(e).__name__}: {e}")
        rc = 1
    try:
        finish(args, result)
    except Exception as e:  # noqa: BLE001
        log(f"could not write the result: {e}")
        rc = rc or 1
    sys.exit(rc)
