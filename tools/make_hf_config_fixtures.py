#!/usr/bin/env python3
# Dev-time generator of the config.json fixtures in tests/data/hf_config/ for the vlq::model config parser:
# the Qwen2.5-VL-3B and -7B hub configs in the flat transformers 4.x form (values from
# /work/shared/docs/qwen2_5_vl.md §1.1-1.2), the same configs re-saved by the installed transformers
# (5.x nested form), and <name>.expected.json with the values transformers itself reads from each file
# (the oracle the C++ test compares against).
#
#   /root/venv-ref/bin/python tools/make_hf_config_fixtures.py
import json
import os
import tempfile

import transformers
from transformers import Qwen2_5_VLConfig

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "hf_config")

COMMON = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
    "video_token_id": 151656, "hidden_act": "silu", "initializer_range": 0.02,
    "max_position_embeddings": 128000, "model_type": "qwen2_5_vl", "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2", "use_cache": True, "use_sliding_window": False,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}
VISION = {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "num_heads": 16, "in_chans": 3,
          "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
          "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2}
SIZES = {
    "qwen2_5_vl_3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                          num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_window_layers=70,
                          v_inter=3420, v_out=2048),
    "qwen2_5_vl_7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                          num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False, max_window_layers=28,
                          v_inter=3420, v_out=3584),
}


def flat_config(s):
    c = dict(COMMON)
    for k in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size", "tie_word_embeddings", "max_window_layers"]:
        c[k] = s[k]
    c["vision_config"] = dict(VISION, intermediate_size=s["v_inter"], out_hidden_size=s["v_out"])
    return dict(sorted(c.items()))


def oracle(cfg):
    """What transformers reads from the file (the C++ parser must agree)."""
    t, v = cfg.text_config, cfg.vision_config
    rp = t.rope_parameters
    eos = t.eos_token_id
    return {
        "text": {"hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
                 "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
                 "num_key_value_heads": t.num_key_value_heads,
                 "head_dim": getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads,
                 "vocab_size": t.vocab_size, "max_position_embeddings": t.max_position_embeddings,
                 "rms_norm_eps": t.rms_norm_eps, "rope_theta": rp["rope_theta"],
                 "mrope_section": list(rp["mrope_section"]), "tie_word_embeddings": bool(cfg.tie_word_embeddings),
                 "dtype": str(t.dtype).replace("torch.", "") if t.dtype is not None else None},
        "vision": {"depth": v.depth, "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                   "num_heads": v.num_heads, "out_hidden_size": v.out_hidden_size, "patch_size": v.patch_size,
                   "spatial_merge_size": v.spatial_merge_size, "temporal_patch_size": v.temporal_patch_size,
                   "window_size": v.window_size, "fullatt_block_indexes": list(v.fullatt_block_indexes),
                   "tokens_per_second": v.tokens_per_second, "in_channels": v.in_channels},
        "tokens": {"image_token_id": cfg.image_token_id, "video_token_id": cfg.video_token_id,
                   "vision_start_token_id": cfg.vision_start_token_id,
                   "vision_end_token_id": cfg.vision_end_token_id, "bos_token_id": t.bos_token_id,
                   "eos_token_ids": eos if isinstance(eos, list) else [eos]},
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, s in SIZES.items():
        flat = flat_config(s)
        p4 = os.path.join(OUT, f"{name}.v4.config.json")
        with open(p4, "w") as f:
            json.dump(flat, f, indent=2)
            f.write("\n")
        cfg = Qwen2_5_VLConfig.from_pretrained(p4)
        with tempfile.TemporaryDirectory() as d:
            cfg.save_pretrained(d)
            v5 = json.load(open(os.path.join(d, "config.json")))
        p5 = os.path.join(OUT, f"{name}.v5.config.json")
        with open(p5, "w") as f:
            json.dump(v5, f, indent=2)
            f.write("\n")
        cfg5 = Qwen2_5_VLConfig.from_pretrained(p5)
        o4, o5 = oracle(cfg), oracle(cfg5)
        assert o4 == o5, (o4, o5)
        o4["produced_by"] = f"tools/make_hf_config_fixtures.py, transformers {transformers.__version__}"
        with open(os.path.join(OUT, f"{name}.expected.json"), "w") as f:
            json.dump(o4, f, indent=2)
            f.write("\n")
        print(name, "ok")


if __name__ == "__main__":
    main()
