// Continuous batching with chunked prefill and recompute preemption (see vlq/engine/scheduler.h).
#include "vlq/engine/scheduler.h"

#include <algorithm>
#include <string>

#include "vlq/core/error.h"

namespace vlq::engine {

Scheduler::Scheduler(SchedulerConfig config, BlockManager& blocks) : config_(config), blocks_(blocks) {
  auto check = [](std::int64_t v, const char* name) {
    if (v < 1) throw UsageError({name, "scheduler limit must be at least 1", ">= 1", std::to_string(v), ""});
  };
  check(config_.max_num_seqs, "max_num_seqs");
  check(config_.max_num_batched_tokens, "max_num_batched_tokens");
  check(config_.max_waiting, "max_waiting");
}

std::int64_t Scheduler::max_blocks_needed(const Sequence& seq) const {
  const std::int64_t most = std::min(seq.prompt_len() + seq.params().stop.max_tokens, seq.max_model_len());
  return blocks_.blocks_for(std::max(most, seq.num_tokens()));
}

bool Scheduler::add(std::shared_ptr<Sequence> seq) {
  const std::int64_t need = max_blocks_needed(*seq);
  if (need > blocks_.num_blocks())
    throw UsageError({"request", "the request does not fit in the KV cache",
                      "at most " + std::to_string(blocks_.num_blocks() * blocks_.block_size()) + " tokens (" +
                          std::to_string(blocks_.num_blocks()) + " blocks)",
                      std::to_string(need) + " blocks (prompt + max_tokens)",
                      "lower max_tokens or shorten the prompt"});
  if (num_waiting() >= config_.max_waiting) return false;
  seq->status = SequenceStatus::kWaiting;
  waiting_.push_back(std::move(seq));
  return true;
}

void Scheduler::preempt(std::size_t i, SchedulerOutput& out) {
  std::shared_ptr<Sequence> victim = running_[i];
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
  blocks_.free(*victim);
  victim->num_computed_tokens = 0;
  victim->num_cached_tokens = 0;
  victim->status = SequenceStatus::kWaiting;
  ++victim->num_preemptions;
  ++preemptions_;
  out.preempted.push_back(victim.get());
  waiting_.push_front(std::move(victim));
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  std::int64_t budget = config_.max_num_batched_tokens;
  for (std::size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence& seq = *running_[i];
    const std::int64_t n = std::min(seq.num_pending_tokens(), budget);
    bool self_preempted = false;
    while (!blocks_.can_grow(seq, n)) {
      const std::size_t last = running_.size() - 1;
      if (last == i) {
        preempt(i, out);
        self_preempted = true;
        break;
      }
      preempt(last, out);
    }
    if (self_preempted) break;  // it was the last running sequence
    blocks_.grow(seq, n);
    out.seqs.push_back({&seq, n});
    budget -= n;
    ++i;
  }
  if (out.preempted.empty()) {
    while (!waiting_.empty() && num_running() < config_.max_num_seqs && budget > 0) {
      Sequence& seq = *waiting_.front();
      if (!blocks_.can_allocate(seq)) break;
      blocks_.allocate(seq);
      const std::int64_t n = std::min(seq.num_pending_tokens(), budget);
      seq.status = SequenceStatus::kRunning;
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
      out.seqs.push_back({&seq, n});
      budget -= n;
    }
  }
  for (const auto& s : out.seqs) out.num_batched_tokens += s.num_new_tokens;
  return out;
}

void Scheduler::finish(Sequence& seq) {
  const auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &seq; });
  if (it != running_.end()) running_.erase(it);
  blocks_.free(seq);
  seq.status = SequenceStatus::kFinished;
}

std::shared_ptr<Sequence> Scheduler::abort(SeqId id) {
  std::shared_ptr<Sequence> found;
  const auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& p) { return p->id() == id; });
  if (w != waiting_.end()) {
    found = *w;
    waiting_.erase(w);
  } else {
    const auto r = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p->id() == id; });
    if (r == running_.end()) return nullptr;
    found = *r;
    running_.erase(r);
  }
  blocks_.free(*found);
  found->status = SequenceStatus::kFinished;
  found->finish_reason = FinishReason::kAbort;
  return found;
}

}  // namespace vlq::engine
