// StreamDelivery (the delivery thread of vlq serve) without a model: batches handed off faster than they are
// delivered reach every stream in order, each request ends once (final event or abort), step events are
// measured and error events are not.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "vlq/server/request_stream.h"

namespace vlq::server {
namespace {

engine::SeqEvent token_event(engine::SeqId id, int step, bool last) {
  engine::SeqEvent ev;
  ev.id = id;
  ev.text = std::to_string(step);
  ev.new_tokens = 1;
  ev.first_token = step == 0;
  ev.finished = last;
  ev.reason = last ? engine::FinishReason::kLength : engine::FinishReason::kNone;
  return ev;
}

// The number after `name ` in the Prometheus text.
double metric(const std::string& text, const std::string& name) {
  const auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

TEST(StreamDelivery, BatchesReachEachStreamInOrderAndEachRequestEndsOnce) {
  constexpr int kStreams = 64, kSteps = 20, kAborted = 8, kAbortStep = 5;
  Metrics metrics;
  std::atomic<std::int64_t> ended{0};
  StreamDelivery delivery(metrics, [&](std::int64_t n) { ended += n; });
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < kStreams; ++i) streams.push_back(std::make_shared<RequestStream>(i + 1));
  // The first kAborted requests are aborted after kAbortStep steps: one release item, then their later step
  // events (as from a step that ran before the abort was seen) come without a stream. The last one fails.
  for (int step = 0; step < kSteps; ++step) {
    std::vector<Delivery> batch;
    for (int i = 0; i < kStreams; ++i) {
      const bool aborted = i < kAborted && step >= kAbortStep;
      if (i == kStreams - 1) {
        if (step > 0) continue;
        engine::SeqEvent ev;
        ev.id = streams[i]->id();
        ev.finished = true;
        ev.reason = engine::FinishReason::kError;
        ev.error = "the request queue is full";
        batch.push_back(Delivery{streams[i], ev, false});
        continue;
      }
      if (aborted && step == kAbortStep) batch.push_back(Delivery{streams[i], std::nullopt, false});
      batch.push_back(Delivery{aborted ? nullptr : streams[i], token_event(streams[i]->id(), step, step == kSteps - 1), true});
    }
    delivery.hand_off(std::move(batch));
    if (step == kSteps / 2) delivery.start();  // the first half waits in the queue, the rest races the thread
  }
  delivery.stop();
  EXPECT_EQ(ended, kStreams);
  for (int i = 0; i < kStreams; ++i) {
    std::vector<engine::SeqEvent> got;
    while (auto ev = streams[i]->next(std::chrono::milliseconds(0))) got.push_back(std::move(*ev));
    if (i == kStreams - 1) {
      ASSERT_EQ(got.size(), 1u);
      EXPECT_EQ(got[0].reason, engine::FinishReason::kError);
      continue;
    }
    const int want = i < kAborted ? kAbortStep : kSteps;
    ASSERT_EQ(static_cast<int>(got.size()), want) << "stream " << i;
    for (int step = 0; step < want; ++step) {
      EXPECT_EQ(got[step].text, std::to_string(step)) << "stream " << i;
      EXPECT_EQ(got[step].finished, step == kSteps - 1) << "stream " << i;
    }
  }
  // Every step event is measured, with or without its stream; e2e only where a stream finished.
  const std::string text = metrics.render(EngineGauges{});
  const int finished = kStreams - 1 - kAborted;
  EXPECT_EQ(metric(text, "vlq_time_to_first_token_seconds_count"), kStreams - 1);
  EXPECT_EQ(metric(text, "vlq_time_per_output_token_seconds_count"), (kStreams - 1) * (kSteps - 1));
  EXPECT_EQ(metric(text, "vlq_generation_tokens_total"), (kStreams - 1) * kSteps);
  EXPECT_EQ(metric(text, "vlq_e2e_request_latency_seconds_count"), finished);
  delivery.stop();  // idempotent
}

}  // namespace
}  // namespace vlq::server
