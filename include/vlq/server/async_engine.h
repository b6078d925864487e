// The threaded front of the serving engine: one engine thread runs engine::LlmEngine::step in a loop; HTTP
// worker threads submit requests into a bounded inbox and read their own output channel (RequestStream),
// and post aborts (client went away). Workers never touch the engine state and never wait on a step; the
// engine thread never waits on a socket. drain() stops accepting work and waits for in-flight requests.
// Spec: vLLM's AsyncLLM / nano-vllm LLMEngine split (front end vs. step loop); docs/serving.md "Threads".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "vlq/engine/llm_engine.h"
#include "vlq/server/metrics.h"

namespace vlq::server {

// One request's output channel: events pushed by the engine thread, popped by one HTTP worker.
class RequestStream {
 public:
  explicit RequestStream(engine::SeqId id) : id_(id) {}
  engine::SeqId id() const { return id_; }
  // Waits up to `timeout` for the next event; nullopt on timeout.
  std::optional<engine::SeqEvent> next(std::chrono::milliseconds timeout);
  void push(engine::SeqEvent ev);
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();

 private:
  engine::SeqId id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<engine::SeqEvent> events_;
};

// Why submit refused a request.
class SubmitError : public std::runtime_error {
 public:
  enum class Kind { kQueueFull, kDraining };
  SubmitError(Kind k, const std::string& m) : std::runtime_error(m), kind(k) {}
  Kind kind;
};

class AsyncEngine {
 public:
  // `engine` and `metrics` must outlive this object. max_queue: accepted requests that may wait (not yet
  // running) before submit refuses with kQueueFull.
  AsyncEngine(engine::LlmEngine& engine, Metrics& metrics, std::int64_t max_queue);
  ~AsyncEngine();
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  void start();
  // Thread-safe. Throws SubmitError (queue full / draining) and what LlmEngine::check_fits throws.
  std::shared_ptr<RequestStream> submit(engine::EngineRequest request);
  // Thread-safe; the engine thread frees the sequence's blocks at its next iteration.
  void abort(engine::SeqId id);
  // Refuses new requests from now on and waits (up to `timeout`) until none is in flight; then aborts the
  // rest. Returns whether everything finished in time.
  bool drain(std::chrono::milliseconds timeout);
  // Stops the engine thread (aborting what is left). Idempotent.
  void stop();

  bool draining() const { return draining_; }
  EngineGauges gauges() const;
  const engine::LlmEngine& engine() const { return engine_; }

 private:
  void loop();
  void admit_inbox(std::deque<std::pair<std::shared_ptr<RequestStream>, engine::EngineRequest>>& in);
  void deliver(std::vector<engine::SeqEvent>& events);
  void fail_all(const std::string& message);
  void finish_stream(engine::SeqId id);
  void log_step_times(const engine::EngineStats& st);

  engine::LlmEngine& engine_;
  Metrics& metrics_;
  std::int64_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the engine thread
  std::condition_variable idle_cv_;  // in_flight_ reached 0
  std::deque<std::pair<std::shared_ptr<RequestStream>, engine::EngineRequest>> inbox_;
  std::vector<engine::SeqId> aborts_;
  std::unordered_map<engine::SeqId, std::shared_ptr<RequestStream>> streams_;  // engine thread only
  std::atomic<std::int64_t> in_flight_{0}, next_id_{1};
  std::atomic<bool> draining_{false}, stop_{false};
  engine::EngineStats stats_;  // last snapshot (under mu_)
  // Step-loop timing for VLQ_STEP_LOG (engine thread only).
  double loop_s_ = 0, deliver_s_ = 0, logged_loop_s_ = 0, logged_deliver_s_ = 0;
  engine::EngineStats logged_;
  std::int64_t logged_steps_ = 0;
  std::thread thread_;
};

}  // namespace vlq::server
