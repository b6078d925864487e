// Engine thread, bounded inbox, hand-off to the delivery thread, drain (see vlq/server/async_engine.h).
#include "vlq/server/async_engine.h"

#include <cstdio>
#include <cstdlib>

namespace vlq::server {

AsyncEngine::AsyncEngine(engine::LlmEngine& engine, Metrics& metrics, std::int64_t max_queue)
    : engine_(engine), max_queue_(max_queue), delivery_(metrics, [this](std::int64_t n) { requests_ended(n); }) {}

AsyncEngine::~AsyncEngine() { stop(); }

void AsyncEngine::start() {
  if (thread_.joinable()) return;
  delivery_.start();
  thread_ = std::thread([this] { loop(); });
}

std::shared_ptr<RequestStream> AsyncEngine::submit(engine::EngineRequest request) {
  if (draining_) throw SubmitError(SubmitError::Kind::kDraining, "the server is shutting down");
  engine_.check_fits(static_cast<std::int64_t>(request.prompt_ids.size()), request.params.stop.max_tokens);
  auto stream = std::make_shared<RequestStream>(next_id_++);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Checked again under the lock: after stop() the loop has made its last sweep of the inbox.
    if (stop_ || draining_) throw SubmitError(SubmitError::Kind::kDraining, "the server is shutting down");
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

std::shared_ptr<RequestStream> AsyncEngine::end_stream(engine::SeqId id) {
  const auto it = streams_.find(id);
  std::shared_ptr<RequestStream> stream = std::move(it->second);
  streams_.erase(it);
  return stream;
}

void AsyncEngine::requests_ended(std::int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if ((in_flight_ -= n) == 0) idle_cv_.notify_all();
}

namespace {

// An error event that ends a request (not a step's output: no metrics).
Delivery failure(std::shared_ptr<RequestStream> stream, engine::FinishReason reason, std::string message) {
  engine::SeqEvent ev;
  ev.id = stream->id();
  ev.finished = true;
  ev.reason = reason;
  ev.error = std::move(message);
  return Delivery{std::move(stream), std::move(ev), false};
}

}  // namespace

void AsyncEngine::take_aborts(const std::vector<engine::SeqId>& aborts, Inbox& in, std::vector<Delivery>& out) {
  for (engine::SeqId id : aborts) {
    // A request still in `in` is dropped before it reaches the engine.
    for (auto it = in.begin(); it != in.end(); ++it)
      if (it->first->id() == id) {
        out.push_back(Delivery{std::move(it->first), std::nullopt, false});
        in.erase(it);
        break;
      }
    if (engine_.abort(id) && streams_.count(id)) out.push_back(Delivery{end_stream(id), std::nullopt, false});
  }
}

void AsyncEngine::admit_inbox(Inbox& in, std::vector<Delivery>& out) {
  for (auto& [stream, req] : in) {
    try {
      if (engine_.add(stream->id(), std::move(req))) {
        streams_[stream->id()] = stream;
        continue;
      }
      out.push_back(failure(stream, engine::FinishReason::kAbort, "the request queue is full"));
    } catch (const std::exception& e) {
      out.push_back(failure(stream, engine::FinishReason::kError, e.what()));
    }
  }
}

// Pairs each step event with its stream; a finished one's stream leaves streams_ here, so nothing on this
// thread can end it a second time.
void AsyncEngine::route(std::vector<engine::SeqEvent>& events, std::vector<Delivery>& out) {
  for (auto& ev : events) {
    const auto it = streams_.find(ev.id);
    std::shared_ptr<RequestStream> stream;
    if (it != streams_.end()) stream = ev.finished ? end_stream(ev.id) : it->second;
    out.push_back(Delivery{std::move(stream), std::move(ev), true});
  }
}

void AsyncEngine::fail_all(const std::string& message, std::vector<Delivery>& out) {
  std::vector<engine::SeqId> ids;
  for (const auto& [id, s] : streams_) ids.push_back(id);
  for (engine::SeqId id : ids) {
    engine_.abort(id);
    out.push_back(failure(end_stream(id), engine::FinishReason::kError, message));
  }
}

// VLQ_STEP_LOG=N: every N engine steps, one stderr line on where the step loop's time went (for profiling
// the server; off by default). "deliver" is the hand-off on the loop (pairing events with streams, queueing
// the batch); "delivery thread" is the time that thread spent pushing them, overlapped with the next steps.
void AsyncEngine::log_step_times(const engine::EngineStats& st) {
  static const long every = [] {
    const char* e = std::getenv("VLQ_STEP_LOG");
    return e ? std::atol(e) : 0L;
  }();
  if (every <= 0 || st.steps == 0 || st.steps % every != 0 || st.steps == logged_steps_) return;
  const double n = static_cast<double>(st.steps - logged_.steps);
  const double busy = delivery_.busy_seconds();
  std::fprintf(stderr,
               "[vlq] steps %lld: per step %.1f seqs, %.1f tokens; ms per step: schedule %.3f, runner %.3f (forward "
               "%.3f), apply %.3f, deliver %.3f, loop total %.3f; delivery thread %.3f\n",
               static_cast<long long>(st.steps), (st.batched_seqs - logged_.batched_seqs) / n,
               (st.batched_tokens - logged_.batched_tokens) / n, 1e3 * (st.schedule_s - logged_.schedule_s) / n,
               1e3 * (st.runner_s - logged_.runner_s) / n, 1e3 * (st.forward_s - logged_.forward_s) / n,
               1e3 * (st.apply_s - logged_.apply_s) / n,
               1e3 * (deliver_s_ - logged_deliver_s_) / n, 1e3 * (loop_s_ - logged_loop_s_) / n,
               1e3 * (busy - logged_delivery_busy_s_) / n);
  logged_ = st;
  logged_steps_ = st.steps;
  logged_deliver_s_ = deliver_s_;
  logged_loop_s_ = loop_s_;
  logged_delivery_busy_s_ = busy;
}

void AsyncEngine::loop() {
  for (;;) {
    Inbox in;
    std::vector<engine::SeqId> aborts;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !aborts_.empty() || engine_.has_work(); });
      if (stop_) break;
      in.swap(inbox_);
      aborts.swap(aborts_);
    }
    std::vector<Delivery> out;
    take_aborts(aborts, in, out);
    const auto t0 = std::chrono::steady_clock::now();
    admit_inbox(in, out);
    std::vector<engine::SeqEvent> events;
    try {
      events = engine_.step();
    } catch (const std::exception& e) {
      fail_all(std::string("engine step failed: ") + e.what(), out);
    }
    const auto t1 = std::chrono::steady_clock::now();
    route(events, out);
    delivery_.hand_off(std::move(out));
    const auto t2 = std::chrono::steady_clock::now();
    loop_s_ += std::chrono::duration<double>(t2 - t0).count();
    deliver_s_ += std::chrono::duration<double>(t2 - t1).count();
    const engine::EngineStats st = engine_.stats();
    log_step_times(st);
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = st;
  }
  std::vector<Delivery> out;
  fail_all("the server stopped", out);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [stream, req] : inbox_) out.push_back(failure(stream, engine::FinishReason::kError, "the server stopped"));
    inbox_.clear();
  }
  delivery_.hand_off(std::move(out));
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
  delivery_.stop();  // delivers the loop's last batches (the "server stopped" errors) first
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
