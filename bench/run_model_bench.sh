#!/usr/bin/env bash
# Whole-process model benchmarks: runs `vlq generate` or `vlq quantize` under `/usr/bin/time -v` REPEAT times
# and prints, per run, the load average, vlq's own timing lines, wall time and peak RSS, then the median.
# Usage (from anywhere; paths are relative to the repo root):
#   bench/run_model_bench.sh generate MODEL_DIR [vlq generate args...]    e.g. --image X --prompt T --max-new-tokens 32
#   bench/run_model_bench.sh quantize MODEL_DIR OUT_DIR [vlq quantize args...]   (--force is added)
# Env: VLQ_BUILD_DIR (default build-bench), REPEAT (default 3), OMP_NUM_THREADS / OPENBLAS_NUM_THREADS
# (passed through; printed). Results: docs/performance.md ("CPU generation", "vlq quantize").
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VLQ_BUILD_DIR:-build-bench}
REPEAT=${REPEAT:-3}
mode=${1:?usage: $0 generate|quantize MODEL_DIR ...}
shift
case "$mode" in
  generate) model=$1; shift; cmd=("$B/vlq" generate --model "$model" --temperature 0 "$@") ;;
  quantize) cmd=("$B/vlq" quantize "$@" --force) ;;
  *) echo "unknown mode $mode (generate|quantize)" >&2; exit 2 ;;
esac
echo "== $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores; OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset}"
echo "== ${cmd[*]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
walls=() rss=()
for i in $(seq "$REPEAT"); do
  echo "-- run $i: load average $(cut -d' ' -f1-3 /proc/loadavg); free $(free -g | awk '/Mem:/{print $7}') GiB available"
  /usr/bin/time -v -o "$log.time" "${cmd[@]}" >"$log.out" 2>"$log"
  grep -a '^\[vlq\]' "$log" | tr '\r' '\n' | grep -av 'calibrating \[' || true
  grep -a -E '^calibration:|^wrote|quantized' "$log.out" | head -5 || true
  [ "$mode" = generate ] && echo "   output: $(head -c 120 "$log.out" | tr '\n' ' ')"
  w=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$log.time")
  r=$(awk -F': ' '/Maximum resident set size/{print $2}' "$log.time")
  u=$(awk -F': ' '/User time/{print $2}' "$log.time")
  s=$(awk -F': ' '/System time/{print $2}' "$log.time")
  echo "   wall $w, user $u s, sys $s s, peak RSS $((r / 1024)) MiB"
  sec=$(echo "$w" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  walls+=("$sec") rss+=("$r")
  rm -f "$log.time" "$log.out"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
echo "== median of $REPEAT: wall $(med "${walls[@]}") s, peak RSS $(( $(med "${rss[@]}" | cut -d. -f1) / 1024 )) MiB"
