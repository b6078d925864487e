// The serving engine's step loop body (single-threaded): requests in, one step() per iteration — schedule,
// run the model runner, advance the sequences, sample, detokenize, apply stop rules — and per-sequence
// events out (new text, finish). The threaded wrapper with the request queue and per-request output
// channels is server::AsyncEngine; this class is what it calls on its one engine thread.
// Spec: nano-vllm nanovllm/engine/llm_engine.py (add_request / step / is_finished).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "vlq/engine/block_manager.h"
#include "vlq/engine/detokenizer.h"
#include "vlq/engine/model_runner.h"
#include "vlq/engine/scheduler.h"
#include "vlq/engine/sequence.h"
#include "vlq/text/tokenizer.h"

namespace vlq::engine {

struct EngineConfig {
  SchedulerConfig scheduler;
  std::int64_t num_blocks = 1024;  // KV blocks
  std::int64_t block_size = 16;    // tokens per block
  bool prefix_caching = true;
  std::int64_t max_model_len = 2048;  // prompt + output tokens at most
};

struct EngineRequest {
  std::vector<std::int32_t> prompt_ids;
  std::shared_ptr<const PromptImages> images;  // null for text-only
  SequenceParams params;
};

// What one step produced for one sequence.
struct SeqEvent {
  SeqId id = 0;
  std::string text;                 // newly released text (may be empty)
  std::int64_t new_tokens = 0;      // tokens sampled this step (0 or 1)
  bool first_token = false;         // this event carries the sequence's first output token
  double ttft_s = 0;                // with first_token: arrival → first token, seconds
  double itl_s = 0;                 // otherwise, with new_tokens: previous token → this one, seconds
  bool finished = false;
  FinishReason reason = FinishReason::kNone;
  std::string error;                // reason kError
  std::int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

struct EngineStats {
  std::int64_t waiting = 0, running = 0;
  BlockManagerStats blocks;
  std::int64_t preemptions = 0;
  std::int64_t live_runner_states = 0;
  ImageCacheStats image_cache;
  std::int64_t steps = 0, prompt_tokens_computed = 0, generated_tokens = 0;
  // Where the step loop's time went since start (seconds, steady clock): scheduling, the runner's step
  // (batch building + forward + sampling), applying tokens (detokenize, stop rules); batched rows summed.
  double schedule_s = 0, runner_s = 0, forward_s = 0, apply_s = 0;  // forward_s: part of runner_s
  std::int64_t batched_seqs = 0, batched_tokens = 0;
};

class LlmEngine {
 public:
  // runner and tokenizer must outlive the engine; the runner's block size must equal config.block_size.
  LlmEngine(ModelRunner& runner, const text::Tokenizer& tokenizer, EngineConfig config);

  // Whether a request with this prompt length and max_tokens fits at all (context and KV cache); throws
  // UsageError naming the limit when not. Pure: callable from any thread.
  void check_fits(std::int64_t prompt_len, std::int64_t max_tokens) const;
  // Queues a request under `id` (unique). Returns false when the waiting queue is full. Throws what
  // check_fits and Sequence throw.
  bool add(SeqId id, EngineRequest request);
  // Cancels a request; returns false when unknown (already finished). Its blocks and runner state are freed.
  bool abort(SeqId id);
  // One iteration. Empty when there is nothing to do.
  std::vector<SeqEvent> step();
  bool has_work() const { return !scheduler_.idle(); }
  EngineStats stats() const;
  const EngineConfig& config() const { return config_; }

 private:
  struct Live {
    std::shared_ptr<Sequence> seq;
    Detokenizer detok;
  };
  void finish(Live& live, SeqEvent& ev, FinishReason reason);
  void apply_token(Live& live, std::int32_t token, SeqEvent& ev);

  ModelRunner& runner_;
  const text::Tokenizer& tokenizer_;
  EngineConfig config_;
  BlockManager blocks_;
  Scheduler scheduler_;
  std::unordered_map<SeqId, Live> live_;
  std::int64_t steps_ = 0, prompt_computed_ = 0, generated_ = 0;
  double schedule_s_ = 0, runner_s_ = 0, forward_s_ = 0, apply_s_ = 0;
  std::int64_t batched_seqs_ = 0, batched_tokens_ = 0;
};

}  // namespace vlq::engine
