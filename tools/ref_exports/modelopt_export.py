# Makes the ModelOpt FP8 reference exports of the tiny Qwen2.5-VL (dev-time only; mimics examples/llm_ptq/hf_ptq.py).
"""Usage (see run_all.sh):

  /root/venv-mo035/bin/python tools/ref_exports/modelopt_export.py --mode lm  --name modelopt-lm-fp8-kv
  /root/venv-mo035/bin/python tools/ref_exports/modelopt_export.py --mode vlm --name modelopt-vlm-fp8-kv

--mode lm  : what hf_ptq.py (ModelOpt 0.35.0) does for Qwen2.5-VL with `--qformat fp8
             --kv_cache_qformat fp8 --export_fmt hf`: every child of model.model except
             `language_model` gets mtq.quantize with the all-disabled config, then
             model.model.language_model is quantized with FP8_DEFAULT_CFG updated with
             FP8_KV_CFG["quant_cfg"] (example_utils.apply_kv_cache_quant), calibrated on text,
             and export_hf_checkpoint(full_model) writes the whole model.
--mode vlm : mtq.quantize(full model, FP8_DEFAULT_CFG + FP8_KV_CFG) calibrated on image+caption
             samples (input_ids, pixel_values, image_grid_thw), then export_hf_checkpoint.

With ModelOpt >= 0.4x the default configs changed (quant_cfg became a list; `*visual*` etc. are
disabled by default; FP8_KV_CFG no longer carries "default"); --mo-compat 035 rewrites them to
the 0.35 behaviour (see provenance.json of the export for what was done).

CPU only: ModelOpt 0.35's FP8 fake quantization (scaled_e4m3_impl) needs its CUDA extension.
Calibration ("max") does not fake-quantize (quantizers collect amax with quantization
disabled), so amax values and hence all exported tensors are unaffected; only the forward
passes after calibration (the export's dummy forward used to detect fused layers) need a fake
quantizer. We substitute a torch implementation with the kernel's semantics (x*448/amax,
saturate to +-448, round to E4M3, divide back; |x| < 2^-24 -> 0).
"""

import argparse
import copy
import json
import pathlib
import random
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common as C  # noqa: E402


def cpu_scaled_e4m3_impl(inputs, amax, disable_fused_kernel=True):
    zero_mask = inputs.abs() < 1.0 / (1 << 24)
    if amax is None:
        out = inputs.float().clamp(-448.0, 448.0).to(torch.float8_e4m3fn).to(inputs.dtype)
    else:
        scale = 448.0 / amax.float()
        x = (inputs.float() * scale).clamp(-448.0, 448.0)
        out = (x.to(torch.float8_e4m3fn).float() / scale).to(inputs.dtype)
    out = out.clone()
    out[zero_mask] = 0.0
    return out


def patch_cpu_fp8():
    import modelopt.torch.quantization.tensor_quant as tq

    tq.scaled_e4m3_impl = cpu_scaled_e4m3_impl


def is_list_cfg(cfg):
    return isinstance(cfg["quant_cfg"], list)


def make_035_cfgs(mtq, log):
    """Return (FP8_DEFAULT_CFG + FP8_KV_CFG, disabled_cfg) with 0.35 semantics for this version."""
    fp8 = copy.deepcopy(mtq.FP8_DEFAULT_CFG)
    kv = copy.deepcopy(mtq.FP8_KV_CFG)
    if not is_list_cfg(fp8):
        # ModelOpt 0.35 (dict style): example_utils.apply_kv_cache_quant
        fp8["quant_cfg"].update(kv["quant_cfg"])
        if not fp8.get("algorithm"):
            fp8["algorithm"] = "max"
        disabled = {"quant_cfg": {"default": {"enable": False}}, "algorithm": "max"}
        return fp8, disabled
    # ModelOpt >= 0.4x (list style): drop the vision/projector disables that 0.35 did not have
    dropped = []
    keep = []
    for e in fp8["quant_cfg"]:
        name = e.get("quantizer_name")
        if name in ("*embed_vision*", "*vision_tower*", "*visual*", "*vision_model*", "*multi_modal_projector*"):
            dropped.append(e)
            continue
        keep.append(e)
    fp8["quant_cfg"] = keep + list(kv["quant_cfg"])
    log["compat_035"] = {
        "dropped_from_FP8_DEFAULT_CFG": dropped,
        "appended_FP8_KV_CFG_entries": kv["quant_cfg"],
    }
    disabled = {"quant_cfg": [{"quantizer_name": "*", "enable": False}], "algorithm": "max"}
    return fp8, disabled


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["lm", "vlm"], required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--base", default=str(C.BASE_DIR))
    ap.add_argument(
        "--mo-compat",
        choices=["035", "native"],
        default="035",
        help="035: reproduce ModelOpt 0.35 configs on newer versions; native: installed defaults",
    )
    ap.add_argument("--attn", default=None, help="attn_implementation passed to from_pretrained")
    ap.add_argument(
        "--expect-kv",
        choices=["visual", "language_model"],
        default=None,
        help="exit 3 unless K/V quantizers were calibrated in this part (transformers 4.52.x runs: "
        "ModelOpt 0.35 instruments only one of the two attention classes, chosen by set order)",
    )
    args = ap.parse_args()

    C.cpu_threads()
    random.seed(1234)  # hf_ptq RAND_SEED
    np.random.seed(1234)
    torch.manual_seed(C.SEED)

    import modelopt
    import modelopt.torch.opt as mto
    import modelopt.torch.quantization as mtq
    from modelopt.torch.export import export_hf_checkpoint
    from modelopt.torch.utils.dataset_utils import create_forward_loop
    from transformers import Qwen2_5_VLForConditionalGeneration

    mto.enable_huggingface_checkpointing()
    patch_cpu_fp8()
    log = {}

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        args.base,
        torch_dtype="auto",
        device_map="cpu",
        **({"attn_implementation": args.attn} if args.attn else {}),
    ).eval()
    full_model = model

    if args.mo_compat == "035":
        quant_cfg, disabled_cfg = make_035_cfgs(mtq, log)
    else:
        quant_cfg = copy.deepcopy(mtq.FP8_DEFAULT_CFG)
        kv = copy.deepcopy(mtq.FP8_KV_CFG)
        if is_list_cfg(quant_cfg):
            quant_cfg["quant_cfg"] = list(quant_cfg["quant_cfg"]) + list(kv["quant_cfg"])
            disabled_cfg = {"quant_cfg": [{"quantizer_name": "*", "enable": False}], "algorithm": "max"}
        else:
            quant_cfg["quant_cfg"].update(kv["quant_cfg"])
            disabled_cfg = {"quant_cfg": {"default": {"enable": False}}, "algorithm": "max"}

    if args.mode == "lm":
        disabled_children = []
        if not is_list_cfg(mtq.FP8_DEFAULT_CFG):
            # hf_ptq.py of 0.35: "We only quantize the language model for VLMs"
            parent_model = model
            if isinstance(type(model).__dict__.get("language_model"), property):
                parent_model = model.model  # gemma3, qwen2.5 VL case
            for name, child in parent_model.named_children():
                if name != "language_model":
                    mtq.quantize(child, disabled_cfg, forward_loop=None)
                    disabled_children.append(name)
            model = model.language_model
        else:
            # newer hf_ptq.py: extract_and_prepare_language_model_from_vl
            from modelopt.torch.export.model_utils import get_language_model_from_vl

            lineage = get_language_model_from_vl(model)
            language_model = lineage.pop(-1)
            memo = set(lineage) | {language_model}
            for anc in lineage:
                for name, child in anc.named_children():
                    if child not in memo:
                        mtq.quantize(child, disabled_cfg, forward_loop=None)
                        memo.add(child)
                        disabled_children.append(name)
            model = language_model
        log["disabled_children"] = disabled_children
        batches = [
            {"input_ids": ids, "attention_mask": torch.ones_like(ids)} for ids in C.text_batches()
        ]
        calib = "text: %d samples (calib.json text_samples), model.language_model.forward" % len(batches)
    else:
        batches = C.image_batches(torch.bfloat16)
        calib = "image+caption: %d samples (calib.json image_samples), full model forward" % len(batches)

    forward_loop = create_forward_loop(dataloader=batches)
    t0 = time.time()
    model = mtq.quantize(model, quant_cfg, forward_loop=forward_loop)
    log["quantize_seconds"] = round(time.time() - t0, 2)

    kv_parts = sorted(
        {
            n.split(".")[1]
            for n, m in full_model.named_modules()
            if n.endswith(("k_bmm_quantizer", "v_bmm_quantizer"))
            and getattr(m, "is_enabled", False)
            and getattr(m, "amax", None) is not None
        }
    )
    log["kv_calibrated_in"] = kv_parts
    print("K/V quantizers calibrated in:", kv_parts)
    if args.expect_kv and kv_parts != [args.expect_kv]:
        print(f"expected K/V only in {args.expect_kv}; retry")
        sys.exit(3)

    out = C.fresh_dir(C.OUT_ROOT / args.name)
    with torch.inference_mode():
        export_hf_checkpoint(full_model, export_dir=str(out))
    # hf_ptq.py saves the processor next to the export; our base has only preprocessor_config.json
    shutil.copy(pathlib.Path(args.base) / "preprocessor_config.json", out / "preprocessor_config.json")

    summary = []
    for n, m in full_model.named_modules():
        for qn in ("input_quantizer", "weight_quantizer", "k_bmm_quantizer", "v_bmm_quantizer"):
            q = getattr(m, qn, None)
            if q is not None and getattr(q, "is_enabled", False):
                amax = getattr(q, "amax", None)
                summary.append(
                    [f"{n}.{qn}", None if amax is None else float(amax.float().max())]
                )
    log["enabled_quantizers_with_amax"] = summary
    C.write_provenance(
        out,
        dict(
            tool="tools/ref_exports/modelopt_export.py",
            command=" ".join(["python", "tools/ref_exports/modelopt_export.py"] + sys.argv[1:]),
            versions=C.versions("nvidia-modelopt", "torch", "transformers", "safetensors", "accelerate"),
            modelopt_version_attr=modelopt.__version__,
            mode=args.mode,
            attn_implementation=args.attn or "default (sdpa)",
            mo_compat=args.mo_compat,
            calibration=calib,
            quant_cfg=json.loads(json.dumps(quant_cfg, default=str)),
            cpu_fake_quant_substitute="tensor_quant.scaled_e4m3_impl -> torch E4M3 cast (see docstring)",
            log=log,
        ),
    )
    print("exported", out)


if __name__ == "__main__":
    main()
