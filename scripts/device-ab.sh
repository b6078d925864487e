#!/usr/bin/env bash
# One device call for the A/B switches not yet measured on a GPU (run on the device machine from the repository
# root after `scripts/devsync` here and carry [".devsync"]): the CUDA tests with the defaults and with every
# opt-in switch set, `vlq generate --device cuda` vs `cpu`, the flash-attention bench (both warp shapes), and
# cuda_model_bench with the defaults and each switch, so winners can be flipped to default from one run's logs
# (written to $OUT: tests*.log, attn.log, bench.log). Makes the 7B-shaped FP8 checkpoint first when absent.
# Switches: VLQ_CUDA_GATE_UP_BF16, VLQ_FLASH_WIDE_WARPS, VLQ_VIT_FULL_ROWS=128, VLQ_FLASH_D80, VLQ_FLASH_ROWS=64
# (short prefills), VLQ_DECODE_EARLY. ~6 min on an H100 when the checkpoint has to be made.
F=${FP8_DIR:-/tmp/q7-gq}; export GQ_TEXT=32 GQ_IMAGES=16 FP8_DIR=$F
D=.devsync; . $D/device-run.sh >/dev/null 2>&1; export VLQ_TOKENIZER_DIR=$PWD/$D/tok
nvidia-smi --query-gpu=name --format=csv,noheader; date
timeout 60 $D/cuda_attention_bench > $OUT/attn.log 2>&1; VLQ_FLASH_WIDE_WARPS=1 VLQ_FLASH_D80=1 timeout 60 $D/cuda_attention_bench >> $OUT/attn.log 2>&1; cat $OUT/attn.log
timeout 120 $D/vlq_cuda_tests > $OUT/tests.log 2>&1; grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Which is" $OUT/tests.log | head -20
VLQ_FLASH_WIDE_WARPS=1 VLQ_VIT_FULL_ROWS=128 VLQ_FLASH_D80=1 VLQ_CUDA_GATE_UP_BF16=1 timeout 90 $D/vlq_cuda_tests --gtest_filter='CudaModel.*:CudaElementwise.*:*ttention*' > $OUT/tests_new.log 2>&1; grep -E "^\[  (FAILED|PASSED) |Failure" $OUT/tests_new.log | head
for dev in cuda cpu; do timeout 60 $D/vlq generate --model models/qwen2_5_vl-tiny-trained --image data/heldout/images/color-0003.png --prompt "What color is the shape?" --device $dev --max-new-tokens 12 --temperature 0 2>&1 | tail -2; done
[ -f $F/config.json ] || STEPS="ckpt gquant" bash scripts/device-bench.sh 2>&1 | tail -2
B=$OUT/bench.log; bn() { echo "=== $*" >> $B; env "$@" >> $B 2>&1; grep -E "prefill|TTFT|decode" $B | tail -4; }
bn timeout 75 $D/cuda_model_bench $F 8192 1
bn VLQ_CUDA_GATE_UP_BF16=1 timeout 60 $D/cuda_model_bench $F 8192 ""
bn VLQ_FLASH_WIDE_WARPS=1 VLQ_VIT_FULL_ROWS=128 VLQ_FLASH_D80=1 timeout 60 $D/cuda_model_bench $F 8192 ""
bn VLQ_FLASH_ROWS=64 timeout 60 $D/cuda_model_bench $F 0 ""
VLQ_DECODE_EARLY=1 timeout 60 $D/vlq_cuda_tests --gtest_filter='CudaModel.*' > $OUT/tests_early.log 2>&1; grep -E "^\[  (FAILED|PASSED) |Failure" $OUT/tests_early.log | head -5
date
