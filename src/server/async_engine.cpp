// Engine thread, bounded inbox and per-request output channels (see vlq/server/async_engine.h).
#include "vlq/server/async_engine.h"

#include <cstdio>
#include <cstdlib>

namespace vlq::server {

std::optional<engine::SeqEvent> RequestStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  engine::SeqEvent ev = std::move(events_.front());
  events_.pop_front();
  return ev;
}

void RequestStream::push(engine::SeqEvent ev) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_one();
}

AsyncEngine::AsyncEngine(engine::LlmEngine& engine, Metrics& metrics, std::int64_t max_queue)
    : engine_(engine), metrics_(metrics), max_queue_(max_queue) {}

AsyncEngine::~AsyncEngine() { stop(); }

void AsyncEngine::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
}

std::shared_ptr<RequestStream> AsyncEngine::submit(engine::EngineRequest request) {
  if (draining_) throw SubmitError(SubmitError::Kind::kDraining, "the server is shutting down");
  engine_.check_fits(static_cast<std::int64_t>(request.prompt_ids.size()), request.params.stop.max_tokens);
  auto stream = std::make_shared<RequestStream>(next_id_++);
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::int64_t queued = static_cast<std::int64_t>(inbox_.size()) + stats_.waiting;
    if (queued >= max_queue_)
      throw SubmitError(SubmitError::Kind::kQueueFull,
                        "the request queue is full (" + std::to_string(max_queue_) + " waiting); retry later");
    inbox_.emplace_back(stream, std::move(request));
    ++in_flight_;
  }
  cv_.notify_one();
  return stream;
}

void AsyncEngine::abort(engine::SeqId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts_.push_back(id);
  }
  cv_.notify_one();
}

void AsyncEngine::finish_stream(engine::SeqId id) {
  streams_.erase(id);
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

void AsyncEngine::admit_inbox(std::deque<std::pair<std::shared_ptr<RequestStream>, engine::EngineRequest>>& in) {
  for (auto& [stream, req] : in) {
    engine::SeqEvent fail;
    fail.id = stream->id();
    fail.finished = true;
    try {
      if (engine_.add(stream->id(), std::move(req))) {
        streams_[stream->id()] = stream;
        continue;
      }
      fail.reason = engine::FinishReason::kAbort;
      fail.error = "the request queue is full";
    } catch (const std::exception& e) {
      fail.reason = engine::FinishReason::kError;
      fail.error = e.what();
    }
    stream->push(std::move(fail));
    std::lock_guard<std::mutex> lock(mu_);
    if (--in_flight_ == 0) idle_cv_.notify_all();
  }
}

void AsyncEngine::deliver(std::vector<engine::SeqEvent>& events) {
  for (auto& ev : events) {
    if (ev.first_token) metrics_.observe_ttft(ev.ttft_s);
    else if (ev.new_tokens > 0) metrics_.observe_itl(ev.itl_s);
    metrics_.add_tokens(0, ev.new_tokens);
    const auto it = streams_.find(ev.id);
    if (it == streams_.end()) continue;
    const bool done = ev.finished;
    if (done) {
      metrics_.add_tokens(ev.prompt_tokens, 0);
      metrics_.observe_e2e(std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second->arrival).count());
    }
    it->second->push(std::move(ev));
    if (done) finish_stream(it->first);
  }
}

void AsyncEngine::fail_all(const std::string& message) {
  std::vector<engine::SeqId> ids;
  for (const auto& [id, s] : streams_) ids.push_back(id);
  for (engine::SeqId id : ids) {
    engine_.abort(id);
    engine::SeqEvent ev;
    ev.id = id;
    ev.finished = true;
    ev.reason = engine::FinishReason::kError;
    ev.error = message;
    streams_[id]->push(std::move(ev));
    finish_stream(id);
  }
}

// VLQ_STEP_LOG=N: every N engine steps, one stderr line on where the step loop's time went (for profiling
// the server; off by default).
void AsyncEngine::log_step_times(const engine::EngineStats& st) {
  static const long every = [] {
    const char* e = std::getenv("VLQ_STEP_LOG");
    return e ? std::atol(e) : 0L;
  }();
  if (every <= 0 || st.steps == 0 || st.steps % every != 0 || st.steps == logged_steps_) return;
  const double n = static_cast<double>(st.steps - logged_.steps);
  std::fprintf(stderr,
               "[vlq] steps %lld: per step %.1f seqs, %.1f tokens; ms per step: schedule %.3f, runner %.3f (forward "
               "%.3f), apply %.3f, deliver %.3f, loop total %.3f\n",
               static_cast<long long>(st.steps), (st.batched_seqs - logged_.batched_seqs) / n,
               (st.batched_tokens - logged_.batched_tokens) / n, 1e3 * (st.schedule_s - logged_.schedule_s) / n,
               1e3 * (st.runner_s - logged_.runner_s) / n, 1e3 * (st.forward_s - logged_.forward_s) / n,
               1e3 * (st.apply_s - logged_.apply_s) / n,
               1e3 * (deliver_s_ - logged_deliver_s_) / n, 1e3 * (loop_s_ - logged_loop_s_) / n);
  logged_ = st;
  logged_steps_ = st.steps;
  logged_deliver_s_ = deliver_s_;
  logged_loop_s_ = loop_s_;
}

void AsyncEngine::loop() {
  for (;;) {
    std::deque<std::pair<std::shared_ptr<RequestStream>, engine::EngineRequest>> in;
    std::vector<engine::SeqId> aborts;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !aborts_.empty() || engine_.has_work(); });
      if (stop_) break;
      in.swap(inbox_);
      aborts.swap(aborts_);
    }
    for (engine::SeqId id : aborts) {
      // A request still in `in` is dropped before it reaches the engine.
      for (auto it = in.begin(); it != in.end(); ++it)
        if (it->first->id() == id) {
          in.erase(it);
          std::lock_guard<std::mutex> lock(mu_);
          if (--in_flight_ == 0) idle_cv_.notify_all();
          break;
        }
      if (engine_.abort(id) && streams_.count(id)) finish_stream(id);
    }
    const auto t0 = std::chrono::steady_clock::now();
    admit_inbox(in);
    std::vector<engine::SeqEvent> events;
    try {
      events = engine_.step();
    } catch (const std::exception& e) {
      fail_all(std::string("engine step failed: ") + e.what());
    }
    const auto t1 = std::chrono::steady_clock::now();
    deliver(events);
    loop_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    deliver_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const engine::EngineStats st = engine_.stats();
    log_step_times(st);
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = st;
  }
  fail_all("the server stopped");
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [stream, req] : inbox_) {
    engine::SeqEvent ev;
    ev.id = stream->id();
    ev.finished = true;
    ev.reason = engine::FinishReason::kError;
    ev.error = "the server stopped";
    stream->push(std::move(ev));
    --in_flight_;
  }
  inbox_.clear();
  idle_cv_.notify_all();
}

bool AsyncEngine::drain(std::chrono::milliseconds timeout) {
  draining_ = true;
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] { return in_flight_ == 0; });
}

void AsyncEngine::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    draining_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineGauges AsyncEngine::gauges() const {
  EngineGauges g;
  std::lock_guard<std::mutex> lock(mu_);
  g.stats = stats_;
  g.in_flight = in_flight_;
  g.queue_len = static_cast<std::int64_t>(inbox_.size()) + stats_.waiting;
  g.max_queue = max_queue_;
  g.draining = draining_;
  return g;
}

}  // namespace vlq::server
