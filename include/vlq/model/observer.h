// Hooks into the CPU forward pass: calibration (inputs of every Linear, K after RoPE and V of every
// attention layer) and debugging dumps of named intermediates (vision.patch_embed, vision.block.{i},
// vision.merger, lm.embeds, lm.layer.{l}, lm.norm — the names of tests/data/golden/model/README.md).
#pragma once

#include <cstdint>
#include <string>

namespace vlq::model {

class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // x: [rows, cols] f32, the input of Linear `module` (canonical name) as the GEMM sees it (before any
  // activation quantization).
  virtual void on_linear_input(const std::string& module, const float* x, std::int64_t rows, std::int64_t cols) {}
  // k, v: [rows, width] f32 (width = kv_heads · head_dim) of attention `attention_module` (canonical,
  // e.g. "model.language_model.layers.0.self_attn", "model.visual.blocks.0.attn"); K after RoPE, i.e. the
  // values an FP8 KV cache would store.
  virtual void on_kv(const std::string& attention_module, const float* k, const float* v, std::int64_t rows,
                     std::int64_t width) {}
  // A named intermediate [rows, cols] f32. Only called when wants_tensors() is true.
  virtual void on_tensor(const std::string& name, const float* data, std::int64_t rows, std::int64_t cols) {}
  virtual bool wants_tensors() const { return false; }
};

}  // namespace vlq::model
