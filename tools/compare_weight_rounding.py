#!/usr/bin/env python3
# Dev-time check behind docs/quantization-results.md "Weight rounding": for two FP8 exports of the same BF16
# model (vlq quantize default single rounding vs --layout exact), counts the differing E4M3 codes, the relative
# squared weight error of each, and checks the codes against PyTorch's (W.float() / s) and (W_bf16 / s) casts.
#   python tools/compare_weight_rounding.py BF16_DIR SINGLE_DIR DOUBLE_DIR     (needs torch + safetensors)
import sys

import torch
from safetensors.torch import load_file


def main(base_dir, single_dir, double_dir):
    base = load_file(f'{base_dir}/model.safetensors')
    S, D = load_file(f'{single_dir}/model.safetensors'), load_file(f'{double_dir}/model.safetensors')
    n = diff = 0
    es = ed = ref = 0.0
    for k, v in S.items():
        if v.dtype != torch.float8_e4m3fn:
            continue
        m = k[:-len('.weight')]
        s = S[m + '.weight_scale'].float()
        assert torch.equal(s, D[m + '.weight_scale'].float()), m
        w = base[k].float()
        assert torch.equal((w / s).to(torch.float8_e4m3fn).view(torch.uint8), v.view(torch.uint8)), k
        assert torch.equal((base[k] / s).to(torch.float8_e4m3fn).view(torch.uint8), D[k].view(torch.uint8)), k
        n += v.numel()
        diff += (v.view(torch.uint8) != D[k].view(torch.uint8)).sum().item()
        es += ((w - v.float() * s) ** 2).sum().item()
        ed += ((w - D[k].float() * s) ** 2).sum().item()
        ref += (w ** 2).sum().item()
    print(f'{n} codes, {diff} differ ({100 * diff / n:.2f} %); relative squared weight error '
          f'single {es / ref:.4e}, double {ed / ref:.4e} (single/double {es / ed:.3f})')


if __name__ == '__main__':
    main(*sys.argv[1:4])
