#!/usr/bin/env bash
# Runs on the device machine from the repository root (carried .devsync): unpacks the binaries, prints the
# GPU and loader state. Source it: `. .devsync/device-run.sh` then run .devsync/<binary>.
cd .devsync && for f in *.xz; do python3 -c "import lzma,sys;open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; chmod +x "${f%.xz}"; done; cd ..
export LD_LIBRARY_PATH=$PWD/.devsync/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
ldd .devsync/vlq_cuda_tests | grep -E "not found|cuda|cublas" || true
