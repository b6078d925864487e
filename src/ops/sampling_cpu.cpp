// CPU implementation of ops/sampling.h (argmax, repetition penalty, temperature / top-k / top-p sampling).
#include "vlq/ops/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace vlq::ops {

std::int64_t argmax(const float* x, std::int64_t n) {
  std::int64_t best = 0;
  for (std::int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

void apply_repetition_penalty(float* logits, std::int64_t vocab, std::span<const std::int32_t> history, double penalty) {
  if (penalty == 1.0) return;
  std::vector<bool> seen(static_cast<std::size_t>(vocab), false);
  for (std::int32_t id : history)
    if (id >= 0 && id < vocab) seen[id] = true;
  const float p = static_cast<float>(penalty);
  for (std::int64_t i = 0; i < vocab; ++i)
    if (seen[i]) logits[i] = logits[i] > 0 ? logits[i] / p : logits[i] * p;
}

std::int32_t sample_token(float* logits, std::int64_t vocab, const SamplingParams& p,
                          std::span<const std::int32_t> history, std::mt19937_64& rng) {
  apply_repetition_penalty(logits, vocab, history, p.repetition_penalty);
  if (p.temperature <= 0.0) return static_cast<std::int32_t>(argmax(logits, vocab));
  const float t = static_cast<float>(p.temperature);
  for (std::int64_t i = 0; i < vocab; ++i) logits[i] /= t;
  std::vector<std::int32_t> idx(static_cast<std::size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
  std::size_t keep = idx.size();
  if (p.top_k > 0) keep = std::min<std::size_t>(keep, static_cast<std::size_t>(p.top_k));
  const float mx = logits[idx[0]];
  std::vector<double> prob(keep);
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp(static_cast<double>(logits[idx[i]] - mx));
  if (p.top_p < 1.0) {
    // HF TopPLogitsWarper: keep the smallest prefix (in descending order) whose mass reaches top_p (at least one).
    double cum = 0;
    std::size_t k = 0;
    while (k < keep) {
      cum += prob[k] / sum;
      ++k;
      if (cum >= p.top_p) break;
    }
    keep = std::max<std::size_t>(k, 1);
    sum = 0;
    for (std::size_t i = 0; i < keep; ++i) sum += prob[i];
  }
  std::uniform_real_distribution<double> u(0.0, sum);
  double r = u(rng), acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (r < acc) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace vlq::ops
