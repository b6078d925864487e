// CPU model runner: per-sequence Sessions, chunked prefill through lm_forward, a K/V mirror pool for prefix
// reuse, per-image vision with the image-encoder cache (see vlq/engine/model_runner.h).
#include "vlq/engine/model_runner.h"

#include <algorithm>
#include <cstring>

#include "vlq/core/error.h"
#include "vlq/model/language_model.h"
#include "vlq/ops/sampling.h"

namespace vlq::engine {

CpuModelRunner::CpuModelRunner(const model::Qwen2_5_VL& model, CpuRunnerOptions options)
    : model_(model), options_(options), image_cache_(options.image_cache_bytes) {
  if (options_.block_size < 1)
    throw UsageError({"CpuModelRunner", "block_size must be at least 1", ">= 1", std::to_string(options_.block_size), ""});
  const auto& tc = model_.config().text;
  row_floats_ = tc.num_key_value_heads * tc.head_dim;
  if (options_.num_blocks > 0)
    pool_.assign(static_cast<std::size_t>(options_.num_blocks * tc.num_hidden_layers * 2 * options_.block_size *
                                          row_floats_),
                 0.0f);
}

KvLayout CpuModelRunner::kv_layout() const {
  const auto& tc = model_.config().text;
  return {tc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim, model_.fp8_kv_cache() ? 1 : 4};
}

float* CpuModelRunner::pool_block(std::int32_t block, std::int64_t layer, int kv) {
  const std::int64_t layers = model_.config().text.num_hidden_layers;
  const std::int64_t per = options_.block_size * row_floats_;
  return pool_.data() + ((static_cast<std::int64_t>(block) * layers + layer) * 2 + kv) * per;
}

void CpuModelRunner::restore_blocks(const Sequence& seq, SeqState& st) {
  const std::int64_t n_blocks = seq.num_computed_tokens / options_.block_size;
  if (seq.num_computed_tokens % options_.block_size != 0 || pool_.empty() ||
      n_blocks > static_cast<std::int64_t>(seq.block_table.size()))
    throw UsageError({"CpuModelRunner", "cached prefix is not whole mirrored blocks", "a multiple of the block size",
                      std::to_string(seq.num_computed_tokens) + " tokens", "this is a bug in the engine"});
  for (std::int64_t b = 0; b < n_blocks; ++b)
    for (std::size_t l = 0; l < st.session.cache.size(); ++l)
      st.session.cache[l].append(pool_block(seq.block_table[b], static_cast<std::int64_t>(l), 0),
                                 pool_block(seq.block_table[b], static_cast<std::int64_t>(l), 1), options_.block_size);
  st.session.length = seq.num_computed_tokens;
  st.saved_blocks = n_blocks;
}

void CpuModelRunner::save_blocks(const Sequence& seq, SeqState& st) {
  if (pool_.empty()) return;
  const std::int64_t full = std::min<std::int64_t>(st.session.length / options_.block_size,
                                                   static_cast<std::int64_t>(seq.block_table.size()));
  const std::size_t bytes = static_cast<std::size_t>(options_.block_size * row_floats_) * sizeof(float);
  for (std::int64_t b = st.saved_blocks; b < full; ++b) {
    const std::int32_t id = seq.block_table[b];
    if (id < 0 || id >= options_.num_blocks) continue;
    for (std::size_t l = 0; l < st.session.cache.size(); ++l) {
      const auto& c = st.session.cache[l];
      std::memcpy(pool_block(id, static_cast<std::int64_t>(l), 0), c.k_f32(b * options_.block_size), bytes);
      std::memcpy(pool_block(id, static_cast<std::int64_t>(l), 1), c.v_f32(b * options_.block_size), bytes);
    }
  }
  st.saved_blocks = std::max(st.saved_blocks, full);
}

CpuModelRunner::SeqState& CpuModelRunner::state_for(const Sequence& seq) {
  const auto it = states_.find(seq.id());
  if (it != states_.end()) return it->second;
  SeqState st;
  st.inputs = PromptInputs::make(model_, seq);
  const std::int64_t cap = std::min(seq.max_model_len(), std::max<std::int64_t>(seq.num_tokens() + 64, 2 * seq.num_tokens()));
  st.session = model_.new_session(cap);
  st.session.rope_deltas = st.inputs.rope_deltas;
  if (seq.num_computed_tokens > 0) restore_blocks(seq, st);
  return states_.emplace(seq.id(), std::move(st)).first->second;
}

void CpuModelRunner::ensure_capacity(const Sequence& seq, SeqState& st, std::int64_t tokens) const {
  if (tokens <= st.session.capacity()) return;
  const std::int64_t cap = std::min(seq.max_model_len(), std::max(tokens, 2 * st.session.capacity()));
  model::Session grown = model_.new_session(std::max(cap, tokens));
  for (std::size_t l = 0; l < grown.cache.size(); ++l)
    if (st.session.length > 0)
      grown.cache[l].append(st.session.cache[l].k_f32(0), st.session.cache[l].v_f32(0), st.session.length);
  grown.length = st.session.length;
  grown.rope_deltas = st.session.rope_deltas;
  st.session = std::move(grown);
}

std::int32_t CpuModelRunner::run_item(const ScheduledSeq& item) {
  Sequence& seq = *item.seq;
  SeqState& st = state_for(seq);
  const std::int64_t start = seq.num_computed_tokens, n = item.num_new_tokens;
  if (st.session.length != start)
    throw UsageError({"CpuModelRunner", "sequence state out of step with the scheduler",
                      std::to_string(st.session.length) + " cached tokens", std::to_string(start), "this is a bug"});
  ensure_capacity(seq, st, start + n);
  const bool sample = start + n == seq.num_tokens();
  const ops::Matrix e = st.inputs.embed(model_, seq, image_cache_, start, n);
  ops::Matrix logits = model::lm_forward(model_.weights().lm, model_.config().text, e, st.inputs.positions(seq, start, n),
                                         st.session.cache, sample ? n - 1 : n);
  st.session.length = start + n;
  save_blocks(seq, st);
  if (!sample) return -1;
  return ops::sample_token(logits.row(logits.rows - 1), logits.cols, seq.params().sampling, seq.tokens(), seq.rng());
}

StepResult CpuModelRunner::step(const Batch& batch) {
  StepResult r;
  r.tokens.assign(batch.seqs.size(), -1);
  r.errors.resize(batch.seqs.size());
  for (std::size_t i = 0; i < batch.seqs.size(); ++i) {
    try {
      r.tokens[i] = run_item(batch.seqs[i]);
    } catch (const std::exception& e) {
      r.errors[i] = e.what();
      if (r.errors[i].empty()) r.errors[i] = "model runner failed";
      states_.erase(batch.seqs[i].seq->id());
    }
  }
  return r;
}

}  // namespace vlq::engine
