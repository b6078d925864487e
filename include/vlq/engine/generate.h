// The generation loop (CPU reference path or a DeviceModel): prefill the prompt, then decode token by token with
// greedy or seeded sampling until an EOS id or max_new_tokens, streaming each token to a callback.
// Spec: transformers GenerationMixin greedy/sample semantics (stop when the new token is in eos ids).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "vlq/engine/device_model.h"
#include "vlq/engine/prompt.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/ops/sampling.h"
#include "vlq/ops/tensor.h"

namespace vlq::engine {

struct GenerateOptions {
  std::int64_t max_new_tokens = 64;
  ops::SamplingParams sampling;        // temperature 0 → greedy
  std::uint64_t seed = 0;
  std::vector<std::int64_t> eos_ids;   // stop ids (generation_config eos_token_id)
  std::int64_t logits_last_k = 1;      // prompt positions whose logits are returned (for --dump)
};

struct GenerateResult {
  std::vector<std::int32_t> output_ids;  // new tokens, including the EOS that stopped generation
  bool stopped_at_eos = false;
  ops::Matrix prompt_logits;             // [K, V] logits of the last K prompt positions
  double prefill_seconds = 0, decode_seconds = 0;
  std::int64_t prompt_tokens = 0;
};

// Runs generation. on_token (optional) is called with each new id as soon as it is chosen. Throws
// UsageError when the prompt plus max_new_tokens exceed the context (checked before any compute).
GenerateResult generate(const model::Qwen2_5_VL& model, const Prompt& prompt, const GenerateOptions& options,
                        const std::function<void(std::int32_t)>& on_token = {}, model::ForwardObserver* obs = nullptr);
// The same loop on any device (vlq/engine/device_model.h); starts a new sequence on `model`. The
// observer is honoured on the CPU only.
GenerateResult generate(DeviceModel& model, const Prompt& prompt, const GenerateOptions& options,
                        const std::function<void(std::int32_t)>& on_token = {}, model::ForwardObserver* obs = nullptr);

}  // namespace vlq::engine
