// Prometheus counters, histograms and gauges of `vlq serve` (see vlq/server/metrics.h).
#include "vlq/server/metrics.h"

#include <fmt/format.h>

namespace vlq::server {

namespace {

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}

void head(std::string& out, const std::string& name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void gauge(std::string& out, const std::string& name, const char* help, double v) {
  head(out, name, "gauge", help);
  out += fmt::format("{} {}\n", name, v);
}

void counter(std::string& out, const std::string& name, const char* help, double v) {
  head(out, name, "counter", help);
  out += fmt::format("{} {}\n", name, v);
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(const std::string& name, std::string& out) const {
  std::int64_t cum = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

Metrics::Metrics() : ttft_(latency_buckets()), itl_(latency_buckets()), e2e_(latency_buckets()) {}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::count_disconnect() {
  std::lock_guard<std::mutex> lock(mu_);
  ++disconnects_;
}

void Metrics::observe_ttft(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(s);
}

void Metrics::observe_itl(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  itl_.observe(s);
}

void Metrics::observe_e2e(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  e2e_.observe(s);
}

void Metrics::add_generated_locked(std::int64_t n) {
  const std::int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start_).count();
  if (window_.empty() || window_.back().first != sec) window_.emplace_back(sec, 0);
  window_.back().second += n;
  while (!window_.empty() && window_.front().first < sec - 10) window_.erase(window_.begin());
}

void Metrics::add_tokens(std::int64_t prompt, std::int64_t generated) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += prompt;
  generation_tokens_ += generated;
  if (generated > 0) add_generated_locked(generated);
}

double Metrics::generation_throughput() const {
  std::lock_guard<std::mutex> lock(mu_);
  const double now = std::chrono::duration<double>(Clock::now() - start_).count();
  const double span = std::min(10.0, now);
  std::int64_t n = 0;
  for (const auto& [sec, count] : window_)
    if (sec >= static_cast<std::int64_t>(now) - 10) n += count;
  return span > 0 ? static_cast<double>(n) / span : 0.0;
}

std::string Metrics::render(const EngineGauges& g) const {
  const double tput = generation_throughput();
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  head(out, "vlq_requests_total", "counter", "HTTP requests answered, by endpoint and status code");
  for (const auto& [key, n] : requests_)
    out += fmt::format("vlq_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  counter(out, "vlq_client_disconnects_total", "Requests whose client went away before the end", disconnects_);
  counter(out, "vlq_prompt_tokens_total", "Prompt tokens of finished requests", prompt_tokens_);
  counter(out, "vlq_generation_tokens_total", "Generated tokens", generation_tokens_);
  gauge(out, "vlq_generation_throughput_tokens_per_second", "Generated tokens per second over the last 10 s", tput);
  gauge(out, "vlq_requests_in_flight", "Accepted requests not yet finished", g.in_flight);
  gauge(out, "vlq_queue_length", "Accepted requests waiting to run", g.queue_len);
  gauge(out, "vlq_queue_capacity", "Most requests that may wait", g.max_queue);
  gauge(out, "vlq_running_sequences", "Sequences in the running batch", g.stats.running);
  gauge(out, "vlq_kv_blocks_used", "KV-cache blocks held by sequences", g.stats.blocks.used_blocks);
  gauge(out, "vlq_kv_blocks_total", "KV-cache blocks", g.stats.blocks.num_blocks);
  gauge(out, "vlq_kv_blocks_cached", "KV-cache blocks registered for prefix reuse", g.stats.blocks.cached_blocks);
  gauge(out, "vlq_runner_live_sequences", "Sequences with model-runner state", g.stats.live_runner_states);
  gauge(out, "vlq_draining", "1 while the server finishes in-flight requests before exiting", g.draining ? 1 : 0);
  counter(out, "vlq_prefix_cache_queried_tokens_total", "Tokens looked up in the prefix cache", g.stats.blocks.prefix_queries_tokens);
  counter(out, "vlq_prefix_cache_hit_tokens_total", "Tokens served from the prefix cache", g.stats.blocks.prefix_hit_tokens);
  counter(out, "vlq_preemptions_total", "Sequences preempted for lack of KV blocks", g.stats.preemptions);
  counter(out, "vlq_image_cache_hits_total", "Image-encoder cache hits", g.stats.image_cache.hits);
  counter(out, "vlq_image_cache_misses_total", "Image-encoder cache misses", g.stats.image_cache.misses);
  gauge(out, "vlq_image_cache_bytes", "Bytes of cached image features", g.stats.image_cache.bytes);
  counter(out, "vlq_engine_steps_total", "Engine iterations that ran the model", g.stats.steps);
  head(out, "vlq_time_to_first_token_seconds", "histogram", "Arrival to first generated token");
  ttft_.render("vlq_time_to_first_token_seconds", out);
  head(out, "vlq_time_per_output_token_seconds", "histogram", "Time between consecutive generated tokens");
  itl_.render("vlq_time_per_output_token_seconds", out);
  head(out, "vlq_e2e_request_latency_seconds", "histogram", "Arrival to last token");
  e2e_.render("vlq_e2e_request_latency_seconds", out);
  return out;
}

}  // namespace vlq::server
