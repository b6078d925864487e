#!/usr/bin/env bash
# Runs on the GPU machine (one `run` call, carry [".devsync"]; see docs/cuda-notes.md "How to rerun"): the CUDA
# tests, then the issue #11/#12 figures on a 7B-shaped random checkpoint made there (released Qwen2.5-VL-7B
# config): vlq quantize → FP8, cuda_model_bench on BF16 and FP8, the transformers BF16 peer, and the serving
# load bench on `vlq serve --device cuda`. Each step has its own time limit and log under $OUT; a failed
# step does not stop the next. STEPS (default "tests ckpt quant bench peer serve") picks steps; also sanitize,
# prof, bf16, gquant (GPU calibration, issue #13) and mopt (the ModelOpt peer; needs .whl carried).
set -u
. .devsync/device-run.sh > "$OUT/device.txt" 2>&1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export VLQ_TOKENIZER_DIR=$PWD/.devsync/tok
D=.devsync
Q=/tmp/q7; F=${FP8_DIR:-/tmp/q7-fp8}
STEPS=${STEPS:-"tests ckpt quant bench peer serve"}
step() {  # step NAME LIMIT_S CMD...
  local name=$1 lim=$2; shift 2
  local t0=$(date +%s%N)
  timeout "$lim" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf "== %-14s rc=%-3s %6d ms\n" "$name" "$rc" "$(( ($(date +%s%N) - t0) / 1000000 ))"
  return $rc
}
has() { [[ " $STEPS " == *" $1 "* ]]; }
cat "$OUT/device.txt" | head -3
if has tests; then
  step tests 240 $D/vlq_cuda_tests ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER}
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran" "$OUT/tests.log" | head -30
  grep -B2 -A8 "Failure" "$OUT/tests.log" | head -60
fi
if has sanitize; then  # compute-sanitizer memcheck + racecheck on the op tests (issue #11)
  step memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 9 $D/vlq_cuda_tests \
    --gtest_filter="${SAN_FILTER:-CudaAttention*:CudaElementwise*:CudaGemm*:CudaGemv*:CudaQuant*:CudaDevice*}"
  grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | head -5
  step racecheck 200 compute-sanitizer --tool racecheck --error-exitcode 9 $D/vlq_cuda_tests \
    --gtest_filter="${RACE_FILTER:-CudaAttention*:CudaElementwise*:CudaGemv*}"
  grep -E "RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED" "$OUT/racecheck.log" | head -5
fi
if has ckpt && [ -f $Q/config.json ]; then echo "ckpt: $Q exists (warm machine), kept"
elif has ckpt; then
  step ckpt 300 python3 tools/make_random_checkpoint.py $Q --config tests/data/hf_config/qwen2_5_vl_7b.v4.config.json
  tail -2 "$OUT/ckpt.log"; du -sh $Q
fi
if has quant && [ -f $F/config.json ]; then echo "quant: $F exists (warm machine), kept"
elif has quant; then
  step quant 300 $D/vlq quantize $Q $F --scope lm --calib-text data/calib/text.jsonl --samples ${CALIB_SAMPLES:-8} --seq-len 128
  tail -5 "$OUT/quant.log"; du -sh $F
fi
if has gquant; then  # issue #13: layer-sequential GPU calibration of the 7B BF16 checkpoint, 512 text + 256 image+caption
  # (GQ_OUT: output folder, default /tmp/q7-gq; GQ_SCOPE lm|vlm; GQ_ARGS: more quantize flags, e.g. "--unaligned fp8")
  [ -f /tmp/calib/text.jsonl ] || python3 tools/make_calib_set.py /tmp/calib --text ${GQ_TEXT:-512} --images ${GQ_IMAGES:-256}
  step gquant 420 $D/vlq quantize $Q ${GQ_OUT:-/tmp/q7-gq} --scope ${GQ_SCOPE:-lm} ${GQ_ARGS:-} --device cuda --calib-text /tmp/calib/text.jsonl \
    --calib-images /tmp/calib/images --samples $(( ${GQ_TEXT:-512} + ${GQ_IMAGES:-256} )) --seq-len 512 --json --force
  grep -E "GPU calibration|note:|calibrating on|error" "$OUT/gquant.log" | head; grep -A12 '"calibration"' "$OUT/gquant.log"
fi
if has gq72; then  # issue #13: a 72B-shaped checkpoint cut to 4 decoder layers (disk): layer-sequential GPU memory does
  # not grow with depth, so its peak is the 80-layer model's; time per layer extrapolates
  [ -f /tmp/q72s/config.json ] || step ckpt72 300 python3 tools/make_random_checkpoint.py /tmp/q72s --config tests/data/hf_config/qwen2_5_vl_72b-4layers.v4.config.json
  step gq72 300 $D/vlq quantize /tmp/q72s /tmp/q72s-fp8 --scope lm --device cuda --calib-text /tmp/calib/text.jsonl \
    --calib-images /tmp/calib/images --samples $(( ${GQ_TEXT:-512} + ${GQ_IMAGES:-256} )) --seq-len 512 --json --force
  grep -E "GPU calibration|note:|error" "$OUT/gq72.log" | head; grep -A12 '"calibration"' "$OUT/gq72.log"
  rm -rf /tmp/q72s-fp8 /tmp/q72s
fi
if has mopt; then  # the ModelOpt hf_ptq-style peer on the same checkpoint and data (wheels in .whl, tools/modelopt_peer.md)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/pip.log" 2>&1
  step mopt 540 env PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH python3 tools/modelopt_peer.py $Q --calib-text /tmp/calib/text.jsonl \
    --calib-images /tmp/calib/images --text-samples ${GQ_TEXT:-512} --image-samples ${GQ_IMAGES:-256} --out /tmp/q7-modelopt \
    --json "$OUT/modelopt.json"
  tail -15 "$OUT/mopt.log"
fi
if has bench; then
  step bench_fp8 240 $D/cuda_model_bench $F ${PREFILL:-8192} 1,8,64,256 && cat "$OUT/bench_fp8.log" || tail -20 "$OUT/bench_fp8.log"
  has bf16 && { step bench_bf16 200 $D/cuda_model_bench $Q ${PREFILL:-8192} 1,64 && cat "$OUT/bench_bf16.log" || tail -20 "$OUT/bench_bf16.log"; }
fi
if has prof; then  # per-kernel GPU time (ncu, clocks left alone) inside one of the bench's NVTX ranges (PROF_RANGE:
  # prefill, ttft or decode_bN): a PROF_PREFILL-token prefill and PROF_STEPS decode steps at each of PROF_BATCHES
  step prof 300 ncu --clock-control none --nvtx --nvtx-include ${PROF_RANGE:-decode_b256}/ --metrics gpu__time_duration.sum \
    --print-summary per-kernel $D/cuda_model_bench $F ${PROF_PREFILL:-0} ${PROF_BATCHES:-256} 128 ${PROF_STEPS:-2}
  grep -E "^  [a-zA-Z_].*\(|gpu__time_duration.sum|NVTX|nvtx|Range" "$OUT/prof.log" | head -150 > "$OUT/prof_summary.txt"; head -60 "$OUT/prof_summary.txt"
fi
if has peer; then
  step peer 300 python3 tools/hf_peer_bench.py $Q --prefill ${PREFILL:-8192} --batches 1,8,64 --steps 32
  grep -v Warning "$OUT/peer.log" | tail -12
fi
if has serve; then
  # Text 128/128 and one 640x480 image + ~128 text tokens / 128 output tokens (issue #12's two prompt sets),
  # closed loop at each concurrency; KV pool from free GPU memory (vlq serve's default on CUDA).
  python3 tools/make_bench_images.py /tmp/img640 --n 8
  export VLQ_STEP_LOG=${VLQ_STEP_LOG:-100}
  SF="--device cuda --max-num-seqs ${SERVE_MAX_SEQS:-256} --max-model-len 2048 --max-queue 4096 --max-num-batched-tokens 8192"
  for c in ${SERVE_C-1 256}; do
    n=$(( c * 2 )); [ $c -eq 1 ] && n=8
    step serve_text_c$c 150 $D/serve_load_bench --vlq $D/vlq --model $F --prompt-set text --prompt-words 50 \
      --output-tokens 128 --concurrency $c --requests $n -- $SF
    tail -3 "$OUT/serve_text_c$c.log"
  done
  for c in ${SERVE_IMAGE_C-1 64}; do
    n=$(( c * 2 )); [ $c -eq 1 ] && n=8
    step serve_image_c$c 150 $D/serve_load_bench --vlq $D/vlq --model $F --prompt-set image --images /tmp/img640 \
      --prompt-words 55 --output-tokens 128 --concurrency $c --requests $n -- $SF
    tail -3 "$OUT/serve_image_c$c.log"
  done
  cp /tmp/vlq_serve_load_*.log "$OUT/" 2>/dev/null
fi
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
