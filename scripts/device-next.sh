#!/usr/bin/env bash
# The next device calls (eighth session's plan; run on the device machine from the repository root after
# `scripts/devsync` here, carry [".devsync"]), in two parts of < 10 minutes on the same warm machine (the checkpoints
# in /tmp are kept while it stays warm):
#   bash scripts/device-next.sh 1   the CUDA tests (the eighth session's new ones were never GPU-run), the 7B-shaped
#                                   LM-only FP8 checkpoint (as runs 15-16), the batch-1 norm fold A/B
#                                   (VLQ_CUDA_FUSE_NORM_GEMV=1: tests with it, batch-1 decode both ways twice), a
#                                   whole-VLM FP8 export (GPU calibration, --save-calib) and the same statistics exported
#                                   with --unaligned fp8 (FP8 vision MLPs, padded 3420 -> 3424 on upload), TTFT of both;
#   bash scripts/device-next.sh 2   the LM-only figures (prefill 8k, decode 1/8/64/256), vlq serve image set on the
#                                   LM-only and the --unaligned fp8 exports, text set at 512 clients.
# Logs in $OUT (tests*.log, gquant*.log, unaligned.log, bench_*.log, serve_*.log).
set -u
F=/tmp/q7-gq; export GQ_TEXT=32 GQ_IMAGES=16 FP8_DIR=$F
D=.devsync; . $D/device-run.sh >/dev/null 2>&1; export VLQ_TOKENIZER_DIR=$PWD/$D/tok
mkdir -p $OUT; nvidia-smi --query-gpu=name --format=csv,noheader; date
V=/tmp/q7-vlm; U=/tmp/q7-vlmu
if [ "${1:-1}" = 1 ]; then
timeout 150 $D/vlq_cuda_tests > $OUT/tests.log 2>&1; grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Which is" $OUT/tests.log | head -20
# vlq serve --device cuda vs vlq generate --device cuda on the tiny model's image questions (the runner now sends
# only the image rows through the host; one at a time and concurrent)
timeout 120 python3 tools/serve_probe.py $D/vlq --device cuda > $OUT/serve_probe.log 2>&1; tail -1 $OUT/serve_probe.log
[ -f $F/config.json ] || STEPS="ckpt gquant" bash scripts/device-bench.sh 2>&1 | tail -3
# the batch-1 norm-folded GEMVs (opt-in VLQ_CUDA_FUSE_NORM_GEMV=1): model tests with it, then batch 1 both ways
VLQ_CUDA_FUSE_NORM_GEMV=1 timeout 90 $D/vlq_cuda_tests --gtest_filter='CudaModel.*:CudaGemv.*' > $OUT/tests_fold.log 2>&1
grep -E "^\[  (FAILED|PASSED) |Failure" $OUT/tests_fold.log | head -5
for v in 0 1 0 1; do VLQ_CUDA_FUSE_NORM_GEMV=$v timeout 60 $D/cuda_model_bench $F 0 1 2>&1 | grep -E "decode batch 1" | sed "s/^/fold=$v /"; done
if [ ! -f $V/config.json ]; then
  cp $OUT/gquant.log $OUT/gquant_lm.log 2>/dev/null
  GQ_SCOPE=vlm GQ_OUT=$V GQ_ARGS="--save-calib /tmp/calib-vlm.json" STEPS=gquant bash scripts/device-bench.sh 2>&1 | tail -2
  cp $OUT/gquant.log $OUT/gquant_vlm.log 2>/dev/null
fi
[ -f $U/config.json ] || timeout 240 $D/vlq quantize /tmp/q7 $U --scope vlm --unaligned fp8 --load-calib /tmp/calib-vlm.json \
  --json --force > $OUT/unaligned.log 2>&1; echo "unaligned export rc=$?"; grep -c F8_E4M3 $OUT/unaligned.log
for m in $V $U; do
  timeout 90 $D/cuda_model_bench $m 0 "" > $OUT/bench_$(basename $m).log 2>&1
  echo "== $m"; grep -E "TTFT|vision|load" $OUT/bench_$(basename $m).log | head -6
done
else
timeout 100 $D/cuda_model_bench $F 8192 1,8,64,256 > $OUT/bench_lm.log 2>&1; grep -E "prefill|TTFT|decode|copy" $OUT/bench_lm.log | head -12
# vlq serve, image set, on the LM-only export (as runs 15-16) and on the whole-VLM FP8 export with FP8 vision MLPs
# (the vision tower was ~30 % of the GPU time per image request): 64 clients each
for m in $F $U; do
  FP8_DIR=$m SERVE_MAX_SEQS=512 SERVE_C="" SERVE_IMAGE_C="64" STEPS=serve bash scripts/device-bench.sh 2>&1 | grep -E "req/s|output tok" | sed "s|^|$(basename $m) |"
  cp $OUT/serve_image_c64.log $OUT/serve_image_c64_$(basename $m).log 2>/dev/null
done
FP8_DIR=$F SERVE_MAX_SEQS=512 SERVE_C="512" SERVE_IMAGE_C="" STEPS=serve bash scripts/device-bench.sh 2>&1 | grep -E "req/s|output tok"
fi
date
