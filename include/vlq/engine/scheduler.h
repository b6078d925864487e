// Continuous batching for the serving engine: which sequences run in the next step and how many of their
// tokens. Every step has a token budget shared by decode tokens and prefill chunks (chunked prefill): the
// running sequences go first, in admission order, each taking min(pending tokens, budget left); then waiting
// sequences are admitted first-come first-served while blocks, slots (max_num_seqs) and budget allow. When a
// running sequence needs a KV block and none is free, the most recently admitted running sequence is
// preempted (its blocks freed, its tokens — prompt and output so far — recomputed when it is admitted again,
// nano-vllm's / vLLM's recompute preemption); no admissions happen in a step that preempted.
// Spec: nano-vllm nanovllm/engine/scheduler.py; vLLM v1 scheduler (token budget, chunked prefill).
// Not thread-safe: the engine thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "vlq/engine/block_manager.h"
#include "vlq/engine/sequence.h"

namespace vlq::engine {

struct SchedulerConfig {
  std::int64_t max_num_seqs = 8;              // running sequences at most
  std::int64_t max_num_batched_tokens = 512;  // tokens per step (prefill chunks + decodes), >= 1
  std::int64_t max_waiting = 256;             // waiting sequences at most (the bounded queue)
};

struct ScheduledSeq {
  Sequence* seq = nullptr;
  std::int64_t num_new_tokens = 0;  // tokens [num_computed_tokens, +num_new_tokens) computed this step
};

struct SchedulerOutput {
  std::vector<ScheduledSeq> seqs;       // in admission order
  std::vector<Sequence*> preempted;     // lost their KV this step (the runner must drop its state)
  std::int64_t num_batched_tokens = 0;  // Σ num_new_tokens
  bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  // Throws UsageError for a config value below 1.
  Scheduler(SchedulerConfig config, BlockManager& blocks);

  // Blocks one sequence can need at most: prompt + max_tokens, capped at max_model_len.
  std::int64_t max_blocks_needed(const Sequence& seq) const;
  // Queues a sequence (status kWaiting). Returns false when max_waiting are already waiting. Throws
  // UsageError when the sequence could never fit in the whole KV cache (max_blocks_needed > num_blocks).
  bool add(std::shared_ptr<Sequence> seq);

  // Plans the next step (see the file comment). Grows block tables for the scheduled tokens.
  SchedulerOutput schedule();

  // Removes a finished running sequence and frees its blocks (status kFinished).
  void finish(Sequence& seq);
  // Removes a waiting or running sequence, frees its blocks, marks it kFinished/kAbort. Returns it, or null
  // when unknown (already finished).
  std::shared_ptr<Sequence> abort(SeqId id);

  std::int64_t num_waiting() const { return static_cast<std::int64_t>(waiting_.size()); }
  std::int64_t num_running() const { return static_cast<std::int64_t>(running_.size()); }
  bool idle() const { return waiting_.empty() && running_.empty(); }
  std::int64_t num_preemptions() const { return preemptions_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  void preempt(std::size_t running_index, SchedulerOutput& out);

  SchedulerConfig config_;
  BlockManager& blocks_;
  std::deque<std::shared_ptr<Sequence>> waiting_;
  std::vector<std::shared_ptr<Sequence>> running_;  // admission order
  std::int64_t preemptions_ = 0;
};

}  // namespace vlq::engine
