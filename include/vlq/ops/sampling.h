// Choosing the next token from logits: greedy argmax and seeded sampling with temperature, top-k, top-p
// and Hugging Face's repetition penalty. Spec: transformers generation/logits_process.py
// (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, applied
// in that order).
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace vlq::ops {

// Index of the largest value (the first on ties, like torch.argmax). n > 0.
std::int64_t argmax(const float* x, std::int64_t n);

struct SamplingParams {
  double temperature = 0.0;       // 0 → greedy
  std::int64_t top_k = 0;         // 0 → off
  double top_p = 1.0;             // 1 → off
  double repetition_penalty = 1.0;// 1 → off; applied to every token id in `history`
};

// Applies the repetition penalty in place (logit > 0 → logit / p, else logit · p) for ids in history.
void apply_repetition_penalty(float* logits, std::int64_t vocab, std::span<const std::int32_t> history, double penalty);

// Picks the next token. Greedy when temperature == 0. logits are modified (penalty, temperature).
std::int32_t sample_token(float* logits, std::int64_t vocab, const SamplingParams& p,
                          std::span<const std::int32_t> history, std::mt19937_64& rng);

}  // namespace vlq::ops
