#!/usr/bin/env bash
# Checkpoint I/O benchmarks of the foundation issue: `vlq inspect` on a 7B-shaped sharded checkpoint
# (headers only) and reading all tensor bytes vs `cat` (page cache warm and cold).
# Usage: bench/run_checkpoint_bench.sh [CKPT_DIR]   (default /tmp/vlq-bench-7b; made if absent, ~16.6 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VLQ_BUILD_DIR:-build}
CK=${1:-/tmp/vlq-bench-7b}
[ -d "$CK" ] || "$B/checkpoint_read_bench" make "$CK" --size 7b --shard-gb 4
shards=("$CK"/*.safetensors)
echo "== vlq inspect (headers only), 10 runs"
"$B/vlq" inspect "$CK" >/dev/null
for i in $(seq 10); do
  s=$(date +%s.%N); "$B/vlq" inspect "$CK" --json >/dev/null; e=$(date +%s.%N)
  echo "inspect run $i: $(echo "$e - $s" | bc) s"
done
echo "== warm page cache"
cat "${shards[@]}" >/dev/null
for i in 1 2 3; do
  s=$(date +%s.%N); cat "${shards[@]}" >/dev/null; e=$(date +%s.%N)
  echo "cat warm: $(du -cb "${shards[@]}" | tail -1 | cut -f1) bytes in $(echo "$e - $s" | bc) s"
done
"$B/checkpoint_read_bench" read "$CK" --repeat 3
echo "== cold page cache (posix_fadvise DONTNEED before each run)"
for i in 1 2; do
  "$B/checkpoint_read_bench" evict "$CK"
  s=$(date +%s.%N); cat "${shards[@]}" >/dev/null; e=$(date +%s.%N)
  echo "cat cold: $(echo "$e - $s" | bc) s"
  "$B/checkpoint_read_bench" read "$CK" --cold
done
