// A growing, shrinking thread pool for cpp-httplib connections (see connection_pool.h).
#include "connection_pool.h"

#include <system_error>
#include <thread>

namespace vlq::server {

ConnectionPool::ConnectionPool(std::size_t min_threads, std::size_t max_threads, std::chrono::seconds idle_exit)
    : min_(std::max<std::size_t>(1, min_threads)), max_(std::max(std::max<std::size_t>(1, min_threads), max_threads)),
      idle_exit_(idle_exit) {
  std::lock_guard lk(mu_);
  for (std::size_t i = 0; i < min_; ++i) spawn();
}

ConnectionPool::~ConnectionPool() { shutdown(); }

void ConnectionPool::enqueue(std::function<void()> fn) {
  std::lock_guard lk(mu_);
  jobs_.push_back(std::move(fn));
  // One more thread when every live one is busy with a connection (up to the cap); else wake an idle one.
  if (idle_ < jobs_.size() && live_ < max_ && !stop_) {
    spawn();
  } else {
    cv_.notify_one();
  }
}

// Detached: a thread that ends on idle leaves nothing behind to join; shutdown() waits for live_ == 0 instead.
// A thread that cannot be created (a process or memory limit) leaves the job queued for the threads there are:
// the listener thread that calls enqueue must not see the exception.
void ConnectionPool::spawn() {
  ++live_;
  try {
    std::thread([this] { work(); }).detach();
  } catch (const std::system_error&) {
    --live_;
    cv_.notify_one();  // an idle thread, if any, takes the job
  }
}

void ConnectionPool::work() {
  std::unique_lock lk(mu_);
  for (;;) {
    ++idle_;
    const bool woke = cv_.wait_for(lk, idle_exit_, [&] { return !jobs_.empty() || stop_; });
    --idle_;
    if (jobs_.empty()) {
      if (stop_ || (!woke && live_ > min_)) break;
      continue;
    }
    auto fn = std::move(jobs_.front());
    jobs_.pop_front();
    lk.unlock();
    fn();
    lk.lock();
  }
  --live_;
  done_.notify_all();  // under the lock: once shutdown() sees live_ == 0 this thread touches nothing of the pool
}

void ConnectionPool::shutdown() {
  std::unique_lock lk(mu_);
  stop_ = true;
  cv_.notify_all();
  done_.wait(lk, [&] { return live_ == 0; });
}

std::size_t ConnectionPool::threads() const {
  std::lock_guard lk(mu_);
  return live_;
}

}  // namespace vlq::server
