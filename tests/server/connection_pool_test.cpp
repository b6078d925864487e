// The connection thread pool of `vlq serve`: grows while every thread is busy (up to its cap), queues beyond
// the cap in arrival order, lets threads beyond the kept ones end when idle, and runs what is queued at shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/connection_pool.h"

namespace vlq::server {
namespace {

using namespace std::chrono_literals;

// A gate the jobs wait on, so that they stay "connected" until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void wait() {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return open; });
  }
  void release() {
    std::lock_guard lk(mu);
    open = true;
    cv.notify_all();
  }
};

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds limit = 3000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return f();
}

TEST(ConnectionPool, GrowsToItsCapQueuesBeyondAndShrinksWhenIdle) {
  ConnectionPool pool(2, 6, std::chrono::seconds(1));
  EXPECT_EQ(pool.threads(), 2u);
  Gate gate;
  std::atomic<int> running{0}, done{0};
  for (int i = 0; i < 10; ++i)
    pool.enqueue([&] {
      ++running;
      gate.wait();
      ++done;
    });
  // Six run at once (the cap), four wait.
  EXPECT_TRUE(eventually([&] { return running.load() == 6; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(running.load(), 6);
  EXPECT_EQ(pool.threads(), 6u);
  gate.release();
  EXPECT_TRUE(eventually([&] { return done.load() == 10; }));
  // Idle threads beyond the kept two end after ~1 s.
  EXPECT_TRUE(eventually([&] { return pool.threads() == 2u; }, 4000ms)) << pool.threads();
  // And it grows again.
  Gate again;
  std::atomic<int> second{0};
  for (int i = 0; i < 4; ++i)
    pool.enqueue([&] {
      ++second;
      again.wait();
    });
  EXPECT_TRUE(eventually([&] { return second.load() == 4; }));
  again.release();
  pool.shutdown();
  EXPECT_EQ(pool.threads(), 0u);
}

TEST(ConnectionPool, ShutdownRunsWhatIsQueued) {
  std::atomic<int> ran{0};
  {
    ConnectionPool pool(1, 1);
    Gate gate;
    pool.enqueue([&] {
      gate.wait();
      ++ran;
    });
    for (int i = 0; i < 5; ++i) pool.enqueue([&] { ++ran; });
    std::thread opener([&] {
      std::this_thread::sleep_for(50ms);
      gate.release();
    });
    pool.shutdown();
    opener.join();
    EXPECT_EQ(ran.load(), 6);
  }  // the destructor after shutdown() is a no-op
}

}  // namespace
}  // namespace vlq::server
