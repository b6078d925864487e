#!/usr/bin/env bash
# Runs on the device machine from the repository root (carried .devsync): unpacks the binaries, prints the
# GPU and loader state. Source it: `. .devsync/device-run.sh` then run .devsync/<binary>.
for f in .devsync/*.xz .devsync/tok/*.xz .devsync/lib/*.xz; do
  [ -f "$f" ] || continue
  python3 -c "import lzma,sys;open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f" && rm -f "$f"
  case "$f" in */tok/*|*/lib/*) ;; *) chmod +x "${f%.xz}" ;; esac
done
export LD_LIBRARY_PATH=$PWD/.devsync/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
for b in .devsync/vlq_cuda_tests .devsync/vlq; do [ -f "$b" ] && ldd "$b" | grep -E "not found" ; done || true
