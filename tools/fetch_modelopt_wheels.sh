#!/usr/bin/env bash
# Downloads the ModelOpt peer's wheel bundle (tools/modelopt_peer.md) into .whl/ for the GPU machine's python 3.12
# (no registry there): nvidia-modelopt and the dependencies its FP8 flow imports that the machine's image lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --dest .whl --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --implementation cp \
  nvidia-modelopt==0.47.0 pulp==3.3.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection \
  typing-extensions==4.16.0 rich==15.0.0 markdown-it-py mdurl pygments omegaconf==2.4.0 nvidia-ml-py ninja==1.13.2 \
  requests==2.34.2 urllib3 charset-normalizer idna certifi
ls .whl | wc -l; du -sh .whl
