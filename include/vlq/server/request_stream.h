// The output side of a request: RequestStream, the channel one HTTP worker reads, and StreamDelivery, the
// delivery thread that fills those channels. The engine thread hands each step's events to StreamDelivery as
// one batch (a move under a lock) and goes on with the next step; the delivery thread records the metrics,
// pushes each event into its stream and reports which requests ended. Batches are delivered in the order
// they were handed off, so each stream sees its events in engine order, its final event last.
// Spec: docs/serving.md "Threads and cancellation".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "vlq/engine/llm_engine.h"
#include "vlq/server/metrics.h"

namespace vlq::server {

// One request's output channel: events pushed by the delivery thread, popped by one HTTP worker.
class RequestStream {
 public:
  explicit RequestStream(engine::SeqId id) : id_(id) {}
  engine::SeqId id() const { return id_; }
  // Waits up to `timeout` for the next event; nullopt on timeout.
  std::optional<engine::SeqEvent> next(std::chrono::milliseconds timeout);
  void push(engine::SeqEvent ev);
  const std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();

 private:
  engine::SeqId id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<engine::SeqEvent> events_;
};

// One item of a batch. The request ends with this item when it has a stream and either no event (it was
// aborted: nothing to push) or a finished one.
struct Delivery {
  std::shared_ptr<RequestStream> stream;  // null: a step event of a request no longer served (metrics only)
  std::optional<engine::SeqEvent> event;  // none: the request ended without an event (aborted)
  bool measured = false;                  // an engine step's event: TTFT / ITL / tokens / e2e are recorded
};

class StreamDelivery {
 public:
  // `metrics` must outlive this object. `ended(n)` runs on the delivery thread once the last items of n
  // requests were pushed (after everything handed off before them).
  StreamDelivery(Metrics& metrics, std::function<void(std::int64_t)> ended);
  ~StreamDelivery();
  StreamDelivery(const StreamDelivery&) = delete;
  StreamDelivery& operator=(const StreamDelivery&) = delete;

  void start();
  // Queues one batch behind the earlier ones. Called by one thread (the engine thread).
  void hand_off(std::vector<Delivery> batch);
  // Delivers everything handed off so far, then joins the thread. Idempotent.
  void stop();
  // Seconds the delivery thread spent delivering since start (for VLQ_STEP_LOG).
  double busy_seconds() const { return static_cast<double>(busy_ns_.load()) * 1e-9; }

 private:
  void run();
  bool deliver(Delivery& d);  // whether the request ended

  Metrics& metrics_;
  std::function<void(std::int64_t)> ended_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<Delivery>> queue_;  // under mu_
  bool stop_ = false;                        // under mu_
  std::atomic<std::int64_t> busy_ns_{0};
  std::thread thread_;
};

}  // namespace vlq::server
