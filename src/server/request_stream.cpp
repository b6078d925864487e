// Per-request output channels and the delivery thread that fills them (see vlq/server/request_stream.h).
#include "vlq/server/request_stream.h"

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

StreamDelivery::StreamDelivery(Metrics& metrics, std::function<void(std::int64_t)> ended)
    : metrics_(metrics), ended_(std::move(ended)) {}

StreamDelivery::~StreamDelivery() { stop(); }

void StreamDelivery::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void StreamDelivery::hand_off(std::vector<Delivery> batch) {
  if (batch.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(batch));
  }
  cv_.notify_one();
}

void StreamDelivery::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool StreamDelivery::deliver(Delivery& d) {
  if (d.measured && d.event) {
    const engine::SeqEvent& ev = *d.event;
    if (ev.first_token) metrics_.observe_ttft(ev.ttft_s);
    else if (ev.new_tokens > 0) metrics_.observe_itl(ev.itl_s);
    metrics_.add_tokens(0, ev.new_tokens);
    if (ev.finished && d.stream) {
      metrics_.add_tokens(ev.prompt_tokens, 0);
      metrics_.observe_e2e(std::chrono::duration<double>(std::chrono::steady_clock::now() - d.stream->arrival).count());
    }
  }
  if (!d.stream) return false;
  const bool ends = !d.event || d.event->finished;
  if (d.event) d.stream->push(std::move(*d.event));
  return ends;
}

void StreamDelivery::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopped, everything delivered
    std::deque<std::vector<Delivery>> batches;
    batches.swap(queue_);
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t ended = 0;
    for (auto& batch : batches)
      for (Delivery& d : batch) ended += deliver(d) ? 1 : 0;
    busy_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    if (ended > 0) ended_(ended);
    lock.lock();
  }
}

}  // namespace vlq::server
