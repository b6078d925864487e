// Unit tests of the serving engine's nouns without a model: sequence stop rules, the block manager (prefix
// caching, exact matching, LRU reuse), the scheduler (token budget, chunked prefill, preemption, bounded
// queue), stop-string holdback, SHA-256 and the image-encoder cache.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "vlq/core/error.h"
#include "vlq/engine/block_manager.h"
#include "vlq/engine/detokenizer.h"
#include "vlq/engine/image_cache.h"
#include "vlq/engine/scheduler.h"
#include "vlq/engine/sequence.h"

namespace vlq::engine {
namespace {

std::vector<std::int32_t> iota_ids(std::int64_t n, std::int32_t from = 1) {
  std::vector<std::int32_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

std::shared_ptr<Sequence> make_seq(SeqId id, std::vector<std::int32_t> prompt, std::int64_t max_tokens = 8,
                                   std::int64_t max_model_len = 1 << 20) {
  SequenceParams p;
  p.stop.max_tokens = max_tokens;
  p.stop.eos_ids = {999};
  return std::make_shared<Sequence>(id, std::move(prompt), nullptr, p, max_model_len);
}

// ---- sequence stop rules ----------------------------------------------------------------------------

TEST(SequenceStop, EosStopTokenMaxTokensAndContext) {
  SequenceParams p;
  p.stop.eos_ids = {7};
  p.stop.stop_token_ids = {8};
  p.stop.max_tokens = 3;
  Sequence s(1, {1, 2}, nullptr, p, 100);
  EXPECT_EQ(s.append_token(5), FinishReason::kNone);
  EXPECT_EQ(s.append_token(7), FinishReason::kStop);
  Sequence t(2, {1, 2}, nullptr, p, 100);
  EXPECT_EQ(t.append_token(8), FinishReason::kStop);
  Sequence u(3, {1, 2}, nullptr, p, 100);
  EXPECT_EQ(u.append_token(5), FinishReason::kNone);
  EXPECT_EQ(u.append_token(5), FinishReason::kNone);
  EXPECT_EQ(u.append_token(5), FinishReason::kLength);
  EXPECT_EQ(u.num_output_tokens(), 3);
  Sequence v(4, {1, 2}, nullptr, p, 3);  // context of 3: one output token fills it
  EXPECT_EQ(v.append_token(5), FinishReason::kLength);
  p.stop.ignore_eos = true;
  Sequence w(5, {1}, nullptr, p, 100);
  EXPECT_EQ(w.append_token(7), FinishReason::kNone);
  EXPECT_STREQ(finish_reason_name(FinishReason::kLength), "length");
  EXPECT_STREQ(finish_reason_name(FinishReason::kStop), "stop");
}

TEST(SequenceStop, RejectsEmptyPromptAndZeroMaxTokens) {
  SequenceParams p;
  EXPECT_THROW(Sequence(1, {}, nullptr, p, 10), UsageError);
  p.stop.max_tokens = 0;
  EXPECT_THROW(Sequence(1, {1}, nullptr, p, 10), UsageError);
}

TEST(StopStrings, HoldbackIsTheLongestStopPrefixAtTheEnd) {
  EXPECT_EQ(stop_holdback("hello wo", {"world"}), 2u);
  EXPECT_EQ(stop_holdback("hello", {"world"}), 0u);
  EXPECT_EQ(stop_holdback("abc", {"c", "bcx"}), 2u);
  EXPECT_EQ(stop_holdback("x\xc3\xa9", {"\xc3\xa9z"}), 2u);  // holds back the whole "é"
}

// ---- block manager -----------------------------------------------------------------------------------

TEST(BlockManager, AllocatesGrowsAndFreesEveryBlock) {
  BlockManager bm(8, 4);
  auto s = make_seq(1, iota_ids(6));
  ASSERT_TRUE(bm.can_allocate(*s));
  bm.allocate(*s);
  EXPECT_EQ(s->block_table.size(), 2u);
  EXPECT_EQ(s->num_computed_tokens, 0);
  EXPECT_EQ(bm.num_free_blocks(), 6);
  s->num_computed_tokens = 6;
  EXPECT_EQ(bm.commit(*s), 1);  // one full block
  bm.grow(*s, 3);               // positions up to 9 → 3 blocks
  EXPECT_EQ(s->block_table.size(), 3u);
  bm.free(*s);
  EXPECT_TRUE(s->block_table.empty());
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_EQ(bm.stats().used_blocks, 0);
  EXPECT_THROW(BlockManager(0, 4), UsageError);
}

TEST(BlockManager, SharedPrefixIsReusedAndRefCounted) {
  BlockManager bm(16, 4);
  auto a = make_seq(1, iota_ids(10));
  bm.allocate(*a);
  a->num_computed_tokens = 10;
  bm.commit(*a);  // blocks 0, 1 hashed
  auto b = make_seq(2, iota_ids(10));
  bm.allocate(*b);
  EXPECT_EQ(b->num_cached_tokens, 8);
  EXPECT_EQ(b->num_computed_tokens, 8);
  EXPECT_EQ(b->block_table[0], a->block_table[0]);
  EXPECT_EQ(b->block_table[1], a->block_table[1]);
  EXPECT_NE(b->block_table[2], a->block_table[2]);
  bm.free(*a);
  EXPECT_EQ(bm.stats().used_blocks, 3);  // b still holds the shared two + its own
  bm.free(*b);
  EXPECT_EQ(bm.stats().used_blocks, 0);
  // Freed blocks keep their hash: a third sequence still hits.
  auto c = make_seq(3, iota_ids(9));
  bm.allocate(*c);
  EXPECT_EQ(c->num_cached_tokens, 8);
  EXPECT_EQ(bm.stats().prefix_hit_tokens, 16);
}

TEST(BlockManager, AlwaysLeavesTheLastTokenToCompute) {
  BlockManager bm(8, 4);
  auto a = make_seq(1, iota_ids(8));
  bm.allocate(*a);
  a->num_computed_tokens = 8;
  bm.commit(*a);
  auto b = make_seq(2, iota_ids(8));  // exactly two full blocks: only the first may be reused
  bm.allocate(*b);
  EXPECT_EQ(b->num_cached_tokens, 4);
}

TEST(BlockManager, DifferentPrefixOrImageNeverMatches) {
  BlockManager bm(16, 4);
  auto a = make_seq(1, iota_ids(9));
  bm.allocate(*a);
  a->num_computed_tokens = 9;
  bm.commit(*a);
  std::vector<std::int32_t> other = iota_ids(9);
  other[0] = 77;  // first block differs → the second (same tokens) must not match either
  auto b = make_seq(2, other);
  bm.allocate(*b);
  EXPECT_EQ(b->num_cached_tokens, 0);

  auto imgs = [](std::uint8_t tag) {
    auto pi = std::make_shared<PromptImages>();
    ImageSpan s;
    s.token_offset = 2;
    s.token_count = 4;
    s.digest.fill(tag);
    pi->spans.push_back(s);
    return std::shared_ptr<const PromptImages>(pi);
  };
  SequenceParams p;
  Sequence x(3, iota_ids(9, 500), imgs(1), p, 100);
  bm.allocate(x);
  x.num_computed_tokens = 9;
  bm.commit(x);
  Sequence y(4, iota_ids(9, 500), imgs(2), p, 100);  // same ids, other image
  bm.allocate(y);
  EXPECT_EQ(y.num_cached_tokens, 0);
  Sequence z(5, iota_ids(9, 500), imgs(1), p, 100);  // same ids, same image
  bm.allocate(z);
  EXPECT_EQ(z.num_cached_tokens, 8);
}

TEST(BlockManager, CanAllocateCountsCachedFreeBlocks) {
  BlockManager bm(3, 4);
  auto a = make_seq(1, iota_ids(9));  // 3 blocks
  bm.allocate(*a);
  a->num_computed_tokens = 9;
  bm.commit(*a);
  bm.free(*a);
  auto b = make_seq(2, iota_ids(12));  // 3 blocks, 2 of them cached (and free)
  ASSERT_TRUE(bm.can_allocate(*b));
  bm.allocate(*b);
  EXPECT_EQ(b->num_cached_tokens, 8);
  EXPECT_EQ(bm.num_free_blocks(), 0);
  auto c = make_seq(3, iota_ids(1));
  EXPECT_FALSE(bm.can_allocate(*c));
  EXPECT_THROW(bm.allocate(*c), UsageError);
}

TEST(BlockManager, PrefixCachingOffNeverHits) {
  BlockManager bm(8, 4, false);
  auto a = make_seq(1, iota_ids(9));
  bm.allocate(*a);
  a->num_computed_tokens = 9;
  EXPECT_EQ(bm.commit(*a), 0);
  auto b = make_seq(2, iota_ids(9));
  bm.allocate(*b);
  EXPECT_EQ(b->num_cached_tokens, 0);
}

// ---- scheduler ---------------------------------------------------------------------------------------

// Simulates the engine's bookkeeping after a step: advance, commit, sample a dummy token when due.
void advance(BlockManager& bm, const SchedulerOutput& out) {
  for (const auto& s : out.seqs) {
    s.seq->num_computed_tokens += s.num_new_tokens;
    bm.commit(*s.seq);
    if (s.seq->num_computed_tokens == s.seq->num_tokens()) s.seq->append_token(42);
  }
}

TEST(Scheduler, TokenBudgetChunksLongPromptsAndBatchesDecodes) {
  BlockManager bm(64, 4);
  Scheduler sch({/*max_num_seqs=*/4, /*max_num_batched_tokens=*/8, /*max_waiting=*/16}, bm);
  auto a = make_seq(1, iota_ids(3));
  auto b = make_seq(2, iota_ids(20));
  ASSERT_TRUE(sch.add(a));
  ASSERT_TRUE(sch.add(b));
  SchedulerOutput o1 = sch.schedule();
  ASSERT_EQ(o1.seqs.size(), 2u);
  EXPECT_EQ(o1.seqs[0].num_new_tokens, 3);
  EXPECT_EQ(o1.seqs[1].num_new_tokens, 5);  // chunk: the rest of the budget
  EXPECT_EQ(o1.num_batched_tokens, 8);
  advance(bm, o1);
  SchedulerOutput o2 = sch.schedule();
  ASSERT_EQ(o2.seqs.size(), 2u);
  EXPECT_EQ(o2.seqs[0].num_new_tokens, 1);  // a decodes
  EXPECT_EQ(o2.seqs[1].num_new_tokens, 7);  // b's next chunk
  EXPECT_EQ(sch.num_running(), 2);
}

TEST(Scheduler, MaxNumSeqsAndBoundedQueue) {
  BlockManager bm(64, 4);
  Scheduler sch({1, 64, 2}, bm);
  ASSERT_TRUE(sch.add(make_seq(1, iota_ids(3))));
  ASSERT_TRUE(sch.add(make_seq(2, iota_ids(3))));
  EXPECT_FALSE(sch.add(make_seq(3, iota_ids(3))));  // queue of 2 is full
  SchedulerOutput o = sch.schedule();
  EXPECT_EQ(o.seqs.size(), 1u);
  EXPECT_EQ(sch.num_waiting(), 1);
  EXPECT_THROW(sch.add(make_seq(4, iota_ids(400))), UsageError);  // never fits 64 blocks of 4
}

TEST(Scheduler, PreemptsTheNewestWhenBlocksRunOutAndRecomputesIt) {
  BlockManager bm(4, 4, false);
  Scheduler sch({4, 64, 16}, bm);
  auto a = make_seq(1, iota_ids(7), 8);
  auto b = make_seq(2, iota_ids(7), 8);
  sch.add(a);
  sch.add(b);
  SchedulerOutput o = sch.schedule();  // 2 blocks each: all 4 used
  ASSERT_EQ(o.seqs.size(), 2u);
  advance(bm, o);  // both at 8 tokens, 7 computed
  o = sch.schedule();  // both decode position 7: still in block 1
  advance(bm, o);     // 9 tokens each: next decode needs block 2
  o = sch.schedule();
  ASSERT_EQ(o.preempted.size(), 1u);
  EXPECT_EQ(o.preempted[0], b.get());
  ASSERT_EQ(o.seqs.size(), 1u);
  EXPECT_EQ(o.seqs[0].seq, a.get());
  EXPECT_EQ(b->status, SequenceStatus::kWaiting);
  EXPECT_EQ(b->num_computed_tokens, 0);
  EXPECT_TRUE(b->block_table.empty());
  EXPECT_EQ(b->num_tokens(), 9);  // prompt + outputs are kept for recompute
  EXPECT_EQ(sch.num_preemptions(), 1);
  sch.finish(*a);
  o = sch.schedule();  // b comes back and recomputes all its 9 tokens
  ASSERT_EQ(o.seqs.size(), 1u);
  EXPECT_EQ(o.seqs[0].seq, b.get());
  EXPECT_EQ(o.seqs[0].num_new_tokens, 9);
  sch.finish(*b);
  EXPECT_EQ(bm.stats().used_blocks, 0);
  EXPECT_TRUE(sch.idle());
}

TEST(Scheduler, AbortFreesWaitingAndRunning) {
  BlockManager bm(16, 4);
  Scheduler sch({1, 64, 8}, bm);
  sch.add(make_seq(1, iota_ids(5)));
  sch.add(make_seq(2, iota_ids(5)));
  sch.schedule();
  EXPECT_EQ(bm.stats().used_blocks, 2);
  auto r = sch.abort(1);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->finish_reason, FinishReason::kAbort);
  EXPECT_TRUE(sch.abort(2));
  EXPECT_FALSE(sch.abort(3));
  EXPECT_TRUE(sch.idle());
  EXPECT_EQ(bm.stats().used_blocks, 0);
}

// ---- SHA-256 and the image cache ----------------------------------------------------------------------

TEST(ImageCache, Sha256KnownVectors) {
  auto hex = [](std::string s) {
    return digest_hex(sha256(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size())));
  };
  EXPECT_EQ(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex(std::string(1000, 'a')), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(ImageCache, LruEvictionWithinBudget) {
  ImageCache cache(3 * 4 * 4);  // three 4-float entries
  auto feat = [](float v) {
    auto m = std::make_shared<ops::Matrix>(1, 4);
    m->data.assign(4, v);
    return std::shared_ptr<const ops::Matrix>(m);
  };
  ImageDigest d[4];
  for (int i = 0; i < 4; ++i) d[i].fill(static_cast<std::uint8_t>(i));
  for (int i = 0; i < 3; ++i) cache.put(d[i], feat(static_cast<float>(i)));
  ASSERT_TRUE(cache.get(d[0]));  // 0 becomes most recent; 1 is now the LRU
  cache.put(d[3], feat(3));
  EXPECT_FALSE(cache.get(d[1]));
  ASSERT_TRUE(cache.get(d[3]));
  EXPECT_EQ(cache.get(d[0])->data[0], 0.0f);
  const auto s = cache.stats();
  EXPECT_EQ(s.entries, 3);
  EXPECT_EQ(s.hits, 3);
  EXPECT_EQ(s.misses, 1);
  ImageCache off(0);
  off.put(d[0], feat(1));
  EXPECT_FALSE(off.get(d[0]));
}

}  // namespace
}  // namespace vlq::engine
