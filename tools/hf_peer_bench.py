# Dev-time peer benchmark: Hugging Face transformers BF16 (sdpa) on the same GPU and checkpoint as
# bench/cuda/model_bench.cpp, for the ratios in docs/performance.md (issue #11).
"""Measures, for a Qwen2.5-VL checkpoint folder (BF16; e.g. tools/make_random_checkpoint.py with the 7B config):
- decode batch 1: output tokens/s of greedy generate() after a 128-token prompt (KV cache on, sdpa);
- prefill of P text tokens: ms and TFLOP/s (same FLOP count as cuda_model_bench);
- TTFT of one 1280x720 image + 128 text tokens (processor + prefill + first token);
- batched decode at the given batch sizes (output tokens/s).
Usage: python tools/hf_peer_bench.py MODEL_DIR [--prefill 8192] [--batches 1,8,64] [--steps 64]
Needs torch + transformers (+ pillow); never used by CI or the product.
"""
import argparse
import time

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration


def sync():
    torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prefill", type=int, default=8192)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--steps", type=int, default=64)
    a = ap.parse_args()
    t0 = time.time()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        a.model, torch_dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    sync()
    print(f"transformers load: {time.time() - t0:.1f} s; GPU memory {torch.cuda.memory_allocated() / 1e9:.2f} GB")
    cfg = model.config.text_config if hasattr(model.config, "text_config") else model.config
    V = min(cfg.vocab_size, 150000)
    g = torch.Generator().manual_seed(1)

    with torch.inference_mode():
        for B in [int(x) for x in a.batches.split(",")]:
            ids = torch.randint(100, V, (B, 128), generator=g).cuda()
            model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
            sync()
            t = time.time()
            model.generate(ids, max_new_tokens=a.steps, min_new_tokens=a.steps, do_sample=False)
            sync()
            dt = time.time() - t
            print(f"transformers decode batch {B}: {B * a.steps / dt:.1f} output tok/s (incl. 128-token prefill)")

        P = a.prefill
        ids = torch.randint(100, V, (1, P), generator=g).cuda()
        model(input_ids=ids, logits_to_keep=1)
        sync()
        t = time.time()
        model(input_ids=ids, logits_to_keep=1)
        sync()
        dt = time.time() - t
        H, I, L, hd = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.hidden_size // cfg.num_attention_heads
        qkv = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * hd
        flops = 2 * P * L * (H * qkv + cfg.num_attention_heads * hd * H + 3 * H * I) + 2 * L * cfg.num_attention_heads * hd * P * P
        print(f"transformers prefill {P} tokens: {dt * 1e3:.1f} ms, {flops / dt / 1e12:.0f} TFLOP/s")

        proc = AutoProcessor.from_pretrained(a.model)
        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8))
        text = "word " * 120
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = proc.apply_chat_template(msgs, add_generation_prompt=True)
        for i in range(3):
            sync()
            t = time.time()
            inp = proc(text=[prompt], images=[img], return_tensors="pt").to("cuda")
            model.generate(**inp, max_new_tokens=1, do_sample=False)
            sync()
            if i == 2:
                print(f"transformers TTFT 1280x720 image + ~128 text tokens: {(time.time() - t) * 1e3:.1f} ms "
                      f"({inp['input_ids'].shape[1]} prompt tokens)")


if __name__ == "__main__":
    main()
