// The HTTP server's connection threads: a pool that grows on demand up to a cap and shrinks when idle, so a few
// slow or idle clients (slow-loris bodies, long SSE streams) cannot starve /health or new requests the way a
// fixed pool of `max_num_seqs + a few` threads did. cpp-httplib runs one connection per task (thread per
// connection, HTTP/1.1 keep-alive inside it); this is its TaskQueue.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

namespace vlq::server {

class ConnectionPool : public httplib::TaskQueue {
 public:
  // min_threads stay up; up to max_threads run connections at once (more wait, in arrival order); a thread idle
  // for idle_exit beyond min_threads ends.
  ConnectionPool(std::size_t min_threads, std::size_t max_threads, std::chrono::seconds idle_exit = std::chrono::seconds(30));
  ~ConnectionPool() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;  // runs what is queued, then joins every thread
  std::size_t threads() const;

 private:
  void spawn();  // with mu_ held
  void work();
  const std::size_t min_, max_;
  const std::chrono::seconds idle_exit_;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_;
  std::deque<std::function<void()>> jobs_;
  std::size_t live_ = 0, idle_ = 0;
  bool stop_ = false;
};

}  // namespace vlq::server
