// The threaded front of the serving engine: one engine thread runs engine::LlmEngine::step in a loop and
// hands each step's events to the delivery thread (StreamDelivery), which pushes them into the requests'
// output channels (RequestStream) while the next step runs; HTTP worker threads submit requests into a
// bounded inbox, read their own channel and post aborts (client went away). Workers never touch the engine
// state and never wait on a step; the engine thread never waits on a socket or on delivery. drain() stops
// accepting work and waits until every in-flight request's last event was delivered.
// Spec: vLLM's AsyncLLM / nano-vllm LLMEngine split (front end vs. step loop); docs/serving.md "Threads".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "vlq/engine/llm_engine.h"
#include "vlq/server/metrics.h"
#include "vlq/server/request_stream.h"

namespace vlq::server {

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
  using Inbox = std::deque<std::pair<std::shared_ptr<RequestStream>, engine::EngineRequest>>;
  void loop();
  // The engine thread's part of each iteration; what requests get is appended to `out`, handed off once.
  void take_aborts(const std::vector<engine::SeqId>& aborts, Inbox& in, std::vector<Delivery>& out);
  void admit_inbox(Inbox& in, std::vector<Delivery>& out);
  void route(std::vector<engine::SeqEvent>& events, std::vector<Delivery>& out);
  void fail_all(const std::string& message, std::vector<Delivery>& out);
  std::shared_ptr<RequestStream> end_stream(engine::SeqId id);  // removed from streams_
  void requests_ended(std::int64_t n);                          // delivery thread: in_flight_ -= n
  void log_step_times(const engine::EngineStats& st);

  engine::LlmEngine& engine_;
  std::int64_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the engine thread
  std::condition_variable idle_cv_;  // in_flight_ reached 0
  Inbox inbox_;
  std::vector<engine::SeqId> aborts_;
  // Requests in the engine (admitted, not yet ended): engine thread only. The delivery thread gets the
  // streams it pushes to inside the batches, never this map.
  std::unordered_map<engine::SeqId, std::shared_ptr<RequestStream>> streams_;
  // Accepted requests whose last event (or abort) is not yet delivered: + in submit, - on the delivery thread.
  std::atomic<std::int64_t> in_flight_{0}, next_id_{1};
  std::atomic<bool> draining_{false}, stop_{false};
  engine::EngineStats stats_;  // last snapshot (under mu_)
  // Step-loop timing for VLQ_STEP_LOG (engine thread only); deliver_s_ is the hand-off on the loop.
  double loop_s_ = 0, deliver_s_ = 0, logged_loop_s_ = 0, logged_deliver_s_ = 0, logged_delivery_busy_s_ = 0;
  engine::EngineStats logged_;
  std::int64_t logged_steps_ = 0;
  StreamDelivery delivery_;  // started and stopped with thread_; stopped after it
  std::thread thread_;
};

}  // namespace vlq::server
