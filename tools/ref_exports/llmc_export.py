# Makes the llm-compressor (compressed-tensors) FP8 reference exports of the tiny Qwen2.5-VL (dev-time only).
"""Usage (see run_all.sh):

  /root/venv-llmc/bin/python tools/ref_exports/llmc_export.py --mode lm-fp8 --name llmc-lm-fp8
  /root/venv-llmc/bin/python tools/ref_exports/llmc_export.py --mode vlm-fp8-dynamic --name llmc-vlm-fp8-dynamic

lm-fp8          : QuantizationModifier(targets="Linear", scheme="FP8",
                  ignore=["lm_head", "re:visual.*", "re:model.visual.*"],
                  kv_cache_scheme={num_bits: 8, type: float, strategy: tensor, dynamic: false,
                  symmetric: true}); static per-tensor weights and activations, calibrated on the
                  text samples; model.save_pretrained(out, save_compressed=True).
vlm-fp8-dynamic : QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"])
                  (vision tower quantized too), no calibration (as the LLMC qwen_2_5_vl example).
"""

import argparse
import json
import pathlib
import shutil
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common as C  # noqa: E402

KV_SCHEME = dict(num_bits=8, type="float", strategy="tensor", dynamic=False, symmetric=True)
IGNORE_LM = ["lm_head", "re:visual.*", "re:model.visual.*"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["lm-fp8", "vlm-fp8-dynamic"], required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--base", default=str(C.BASE_DIR))
    ap.add_argument("--pipeline", default="independent")
    args = ap.parse_args()

    C.cpu_threads()
    torch.manual_seed(C.SEED)

    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.base, dtype="auto").eval()

    if args.mode == "lm-fp8":
        recipe_kwargs = dict(targets="Linear", scheme="FP8", ignore=IGNORE_LM, kv_cache_scheme=KV_SCHEME)
        recipe = QuantizationModifier(**recipe_kwargs)
        rows = [{"input_ids": ids[0].tolist(), "attention_mask": [1] * ids.shape[1]} for ids in C.text_batches()]
        from datasets import Dataset

        ds = Dataset.from_list(rows)
        # oneshot insists on a processor when a dataset is given; the rows are already token ids,
        # so the real Qwen2.5 tokenizer is passed only to satisfy that check.
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained("/work/shared/data/qwen-tokenizer")
        oneshot(
            model=model,
            processor=tok,
            recipe=recipe,
            dataset=ds,
            num_calibration_samples=len(rows),
            max_seq_length=256,
            shuffle_calibration_samples=False,
            pipeline=args.pipeline,
        )
        calib = f"text: {len(rows)} samples (calib.json text_samples), pipeline={args.pipeline}"
    else:
        recipe_kwargs = dict(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"])
        recipe = QuantizationModifier(**recipe_kwargs)
        oneshot(model=model, recipe=recipe)
        calib = "none (FP8_DYNAMIC: weights per-channel from the weights themselves, activations dynamic)"

    out = C.fresh_dir(C.OUT_ROOT / args.name)
    model.save_pretrained(out, save_compressed=True)
    for f in ("preprocessor_config.json", "generation_config.json"):
        if not (out / f).exists():
            shutil.copy(pathlib.Path(args.base) / f, out / f)
    C.write_provenance(
        out,
        dict(
            tool="tools/ref_exports/llmc_export.py",
            command=" ".join(["python", "tools/ref_exports/llmc_export.py"] + sys.argv[1:]),
            versions=C.versions(
                "llmcompressor", "compressed-tensors", "torch", "transformers", "safetensors", "accelerate"
            ),
            mode=args.mode,
            recipe=json.loads(json.dumps(recipe_kwargs, default=str)),
            calibration=calib,
        ),
    )
    print("exported", out)


if __name__ == "__main__":
    main()
