// The serving engine's step: schedule → run → sample → detokenize → stop (see vlq/engine/llm_engine.h).
#include "vlq/engine/llm_engine.h"

#include <chrono>

#include "vlq/core/error.h"

namespace vlq::engine {

LlmEngine::LlmEngine(ModelRunner& runner, const text::Tokenizer& tokenizer, EngineConfig config)
    : runner_(runner),
      tokenizer_(tokenizer),
      config_(config),
      blocks_(config.num_blocks, config.block_size, config.prefix_caching),
      scheduler_(config.scheduler, blocks_) {
  if (config_.max_model_len < 2)
    throw UsageError({"max_model_len", "context too small", ">= 2 tokens", std::to_string(config_.max_model_len), ""});
}

void LlmEngine::check_fits(std::int64_t prompt_len, std::int64_t max_tokens) const {
  if (prompt_len + max_tokens > config_.max_model_len)
    throw UsageError({"max_tokens",
                      "this model's maximum context length is " + std::to_string(config_.max_model_len) +
                          " tokens; the request asks for " + std::to_string(prompt_len + max_tokens) + " (" +
                          std::to_string(prompt_len) + " in the prompt, " + std::to_string(max_tokens) +
                          " for the completion)",
                      "<= " + std::to_string(config_.max_model_len), std::to_string(prompt_len + max_tokens),
                      "reduce the prompt or max_tokens"});
  const std::int64_t blocks = (prompt_len + max_tokens + config_.block_size - 1) / config_.block_size;
  if (blocks > config_.num_blocks)
    throw UsageError({"max_tokens", "the request does not fit in the KV cache",
                      "<= " + std::to_string(config_.num_blocks * config_.block_size) + " tokens",
                      std::to_string(prompt_len + max_tokens), "lower max_tokens or start the server with more KV blocks"});
}

bool LlmEngine::add(SeqId id, EngineRequest request) {
  check_fits(static_cast<std::int64_t>(request.prompt_ids.size()), request.params.stop.max_tokens);
  auto seq = std::make_shared<Sequence>(id, std::move(request.prompt_ids), std::move(request.images),
                                        std::move(request.params), config_.max_model_len);
  if (live_.count(id))
    throw UsageError({"LlmEngine::add", "duplicate sequence id", "a new id", std::to_string(id), "this is a bug"});
  if (!scheduler_.add(seq)) return false;
  live_.emplace(id, Live{seq, Detokenizer(tokenizer_, seq->params().stop.stop_strings)});
  return true;
}

bool LlmEngine::abort(SeqId id) {
  const auto it = live_.find(id);
  if (it == live_.end()) return false;
  scheduler_.abort(id);
  runner_.release(id);
  live_.erase(it);
  return true;
}

void LlmEngine::finish(Live& live, SeqEvent& ev, FinishReason reason) {
  Sequence& seq = *live.seq;
  seq.finish_reason = reason;
  scheduler_.finish(seq);
  runner_.release(seq.id());
  ev.finished = true;
  ev.reason = reason;
  ev.error = seq.error;
}

void LlmEngine::apply_token(Live& live, std::int32_t token, SeqEvent& ev) {
  using Clock = Sequence::Clock;
  Sequence& seq = *live.seq;
  const auto now = Clock::now();
  FinishReason reason = seq.append_token(token);
  ++generated_;
  ev.new_tokens = 1;
  if (seq.num_output_tokens() == 1) {
    ev.first_token = true;
    seq.first_token_time = now;
    ev.ttft_s = std::chrono::duration<double>(now - seq.arrival_time).count();
  } else {
    ev.itl_s = std::chrono::duration<double>(now - seq.last_token_time).count();
  }
  seq.last_token_time = now;
  DetokenizerOutput d = live.detok.push(token);
  ev.text = std::move(d.text);
  if (d.stopped) reason = FinishReason::kStop;
  if (reason == FinishReason::kNone) return;
  if (!d.stopped) ev.text += live.detok.finish().text;
  finish(live, ev, reason);
}

std::vector<SeqEvent> LlmEngine::step() {
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  std::vector<SeqEvent> events;
  const auto t0 = Clock::now();
  SchedulerOutput plan = scheduler_.schedule();
  for (Sequence* p : plan.preempted) runner_.release(p->id());
  const auto t1 = Clock::now();
  schedule_s_ += secs(t0, t1);
  if (plan.empty()) return events;
  ++steps_;
  batched_seqs_ += static_cast<std::int64_t>(plan.seqs.size());
  batched_tokens_ += plan.num_batched_tokens;
  Batch batch{plan.seqs};
  const StepResult res = runner_.step(batch);
  const auto t2 = Clock::now();
  runner_s_ += secs(t1, t2);
  forward_s_ += res.forward_s;
  for (std::size_t i = 0; i < plan.seqs.size(); ++i) {
    Sequence& seq = *plan.seqs[i].seq;
    Live& live = live_.at(seq.id());
    SeqEvent ev;
    ev.id = seq.id();
    if (!res.errors[i].empty()) {
      seq.error = res.errors[i];
      finish(live, ev, FinishReason::kError);
    } else {
      if (seq.num_computed_tokens < seq.prompt_len())
        prompt_computed_ += std::min(seq.prompt_len(), seq.num_computed_tokens + plan.seqs[i].num_new_tokens) -
                            seq.num_computed_tokens;
      seq.num_computed_tokens += plan.seqs[i].num_new_tokens;
      blocks_.commit(seq);
      if (res.tokens[i] >= 0) apply_token(live, res.tokens[i], ev);
    }
    if (ev.new_tokens == 0 && !ev.finished && ev.text.empty()) continue;
    ev.prompt_tokens = seq.prompt_len();
    ev.completion_tokens = seq.num_output_tokens();
    ev.cached_tokens = seq.num_cached_tokens;
    const bool done = ev.finished;
    events.push_back(std::move(ev));
    if (done) live_.erase(seq.id());
  }
  apply_s_ += secs(t2, Clock::now());
  return events;
}

EngineStats LlmEngine::stats() const {
  EngineStats s;
  s.waiting = scheduler_.num_waiting();
  s.running = scheduler_.num_running();
  s.blocks = blocks_.stats();
  s.preemptions = scheduler_.num_preemptions();
  s.live_runner_states = runner_.num_live_states();
  s.image_cache = runner_.image_cache_stats();
  s.steps = steps_;
  s.prompt_tokens_computed = prompt_computed_;
  s.generated_tokens = generated_;
  s.schedule_s = schedule_s_;
  s.runner_s = runner_s_;
  s.forward_s = forward_s_;
  s.apply_s = apply_s_;
  s.batched_seqs = batched_seqs_;
  s.batched_tokens = batched_tokens_;
  return s;
}

}  // namespace vlq::engine
