// Server metrics for `GET /metrics`: request counters by endpoint and status, token counters, histograms of
// time to first token, inter-token latency and end-to-end latency, a generation-throughput gauge (tokens/s
// over the last 10 s), and the engine gauges (queue length, running sequences, KV blocks) given at render
// time. Thread-safe (one mutex; updates are a few per token).
// Spec: Prometheus text exposition format 0.0.4 (# HELP / # TYPE, counters end in _total, histogram
// _bucket{le=...} cumulative with +Inf, _sum, _count).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "vlq/engine/llm_engine.h"

namespace vlq::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending, seconds
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of `name` (HELP/TYPE written by the caller).
  void render(const std::string& name, std::string& out) const;
  std::int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::int64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  std::int64_t count_ = 0;
};

// Gauges read from the engine when rendering.
struct EngineGauges {
  engine::EngineStats stats;
  std::int64_t in_flight = 0;   // accepted requests not yet finished
  std::int64_t queue_len = 0;   // accepted, not yet running (inbox + scheduler waiting)
  std::int64_t max_queue = 0;
  bool draining = false;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& endpoint, int status);
  void count_disconnect();
  void observe_ttft(double s);
  void observe_itl(double s);
  void observe_e2e(double s);
  void add_tokens(std::int64_t prompt, std::int64_t generated);
  // Generated tokens per second over the last 10 s.
  double generation_throughput() const;
  std::string render(const EngineGauges& g) const;

 private:
  using Clock = std::chrono::steady_clock;
  void add_generated_locked(std::int64_t n);
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, std::int64_t> requests_;
  std::int64_t disconnects_ = 0, prompt_tokens_ = 0, generation_tokens_ = 0;
  Histogram ttft_, itl_, e2e_;
  // Generated tokens per whole second of steady-clock time, last 11 seconds.
  mutable std::vector<std::pair<std::int64_t, std::int64_t>> window_;
  Clock::time_point start_ = Clock::now();
};

}  // namespace vlq::server
