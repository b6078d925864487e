#!/usr/bin/env bash
# Regenerates tests/data/ref_exports/ (tiny Qwen2.5-VL base + real ModelOpt / llm-compressor FP8 exports). Dev-time only.
#
# Virtual environments (never committed; CPU only):
#   /root/venv-mo035 : pip install "nvidia-modelopt==0.35.0" "torch==2.8.0" "transformers==4.55.4" \
#                      accelerate safetensors ml_dtypes pillow
#   /root/tf4523     : pip install --no-deps --target /root/tf4523 "transformers==4.52.3"
#                      (put first on PYTHONPATH inside venv-mo035: the 4.52.3 save_pretrained bug
#                      writes model.language_model.* / model.visual.* names)
#   /root/venv-llmc  : pip install llmcompressor   (-> llmcompressor 0.14.0.1, compressed-tensors 0.19.0,
#                      torch 2.14.0, transformers 5.17.0) ; pip install torchvision is NOT needed
#   /root/venv-ref   : torch, transformers 5.24, safetensors, ml_dtypes, nvidia-modelopt 0.47.0, requests
# Inputs: /usr/lib/python3/dist-packages/skimage/data (apt-get install python3-skimage) and
#         /work/shared/data/qwen-tokenizer/tokenizer.json (only for make_base.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
MO035=${MO035:-/root/venv-mo035/bin/python}
LLMC=${LLMC:-/root/venv-llmc/bin/python}
REF=${REF:-/root/venv-ref/bin/python}
TF4523=${TF4523:-/root/tf4523}

$MO035 tools/ref_exports/make_base.py
$MO035 tools/ref_exports/modelopt_export.py --mode lm --name modelopt-lm-fp8-kv
$MO035 tools/ref_exports/modelopt_export.py --mode vlm --name modelopt-vlm-fp8-kv
# transformers 4.52.3: ModelOpt 0.35 wraps only ONE of the two attention classes (any() over a set),
# so which part gets K/V scales changes from run to run: retry until each variant is obtained.
for part in visual language_model; do
  for try in 1 2 3 4 5 6 7 8 9 10; do
    rc=0
    PYTHONPATH=$TF4523 $MO035 tools/ref_exports/modelopt_export.py --mode vlm \
      --name modelopt-vlm-fp8-kv-tf4523-kv-$part --expect-kv $part || rc=$?
    [ $rc -eq 0 ] && break
    [ $rc -eq 3 ] || exit $rc
  done
done
$REF tools/ref_exports/modelopt_export.py --mode lm --name modelopt047-lm-fp8-kv --mo-compat native
$REF tools/ref_exports/modelopt_export.py --mode vlm --name modelopt047-vlm-fp8-kv-native --mo-compat native
$LLMC tools/ref_exports/llmc_export.py --mode lm-fp8 --name llmc-lm-fp8
$LLMC tools/ref_exports/llmc_export.py --mode vlm-fp8-dynamic --name llmc-vlm-fp8-dynamic
$REF tools/ref_exports/write_expected.py
du -sh tests/data/ref_exports
