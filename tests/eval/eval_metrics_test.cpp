// Tests for vlq/engine/eval_metrics.h: log_softmax/KL/top-1/NLL against hand and PyTorch values, extreme
// logits, the accumulator, normalize_answer against Python's tiny_vl_data.normalize_answer, the held-out
// reader and per-task accuracy.
#include "vlq/eval/eval_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "io/io_test_util.h"

namespace {

using vlq::eval::LogitMetrics;
namespace fs = std::filesystem;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

TEST(EvalMetrics, LogSoftmaxSumsToOne) {
  const std::vector<float> x{1.0f, 2.0f, 3.0f, 0.5f};
  const auto lp = vlq::eval::log_softmax(x);
  double s = 0;
  for (double v : lp) s += std::exp(v);
  EXPECT_NEAR(s, 1.0, 1e-15);
  EXPECT_NEAR(lp[2], -0.4607734891568512, 1e-15);  // torch.log_softmax in float64
}

TEST(EvalMetrics, KlOfIdenticalLogitsIsZero) {
  std::vector<float> x(1000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i)) * 20.0f;
  EXPECT_EQ(vlq::eval::kl_divergence(x, x), 0.0);
  // Shift invariance: adding a constant changes nothing (up to rounding of the shifted floats).
  std::vector<float> y = x;
  for (float& v : y) v += 0.5f;
  EXPECT_NEAR(vlq::eval::kl_divergence(x, y), 0.0, 1e-12);
}

TEST(EvalMetrics, KlMatchesHandAndTorch) {
  // p = (1/2, 1/2), q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3).
  const std::vector<float> p{0.0f, 0.0f};
  const std::vector<float> q{0.0f, static_cast<float>(std::log(3.0))};
  EXPECT_NEAR(vlq::eval::kl_divergence(p, q), 0.5 * std::log(2.0) + 0.5 * std::log(2.0 / 3.0), 1e-7);
  // torch.nn.functional.kl_div(log_softmax(b), log_softmax(a), log_target=True, reduction="sum") in float64.
  const std::vector<float> a{1.0f, 2.0f, 3.0f, 0.5f};
  const std::vector<float> b{1.5f, 1.0f, 3.5f, -1.0f};
  EXPECT_NEAR(vlq::eval::kl_divergence(a, b), 0.19668702669250238, 1e-14);
  EXPECT_GT(vlq::eval::kl_divergence(b, a), 0.0);
  EXPECT_NE(vlq::eval::kl_divergence(b, a), vlq::eval::kl_divergence(a, b));  // not symmetric
}

TEST(EvalMetrics, ExtremeLogitsDoNotOverflow) {
  const std::vector<float> big{1e30f, 1e30f, 0.0f, -1e30f};
  const auto lp = vlq::eval::log_softmax(big);
  EXPECT_NEAR(lp[0], -std::log(2.0), 1e-15);
  EXPECT_NEAR(lp[1], -std::log(2.0), 1e-15);
  EXPECT_TRUE(std::isfinite(lp[3]));
  EXPECT_EQ(vlq::eval::kl_divergence(big, big), 0.0);
  EXPECT_NEAR(vlq::eval::token_nll(big, 0), std::log(2.0), 1e-15);
  const std::vector<float> big2{1e30f, -1e30f, 0.0f, -1e30f};
  EXPECT_NEAR(vlq::eval::kl_divergence(big, big2), 0.5 * 2e30, 1e24);  // huge but finite
  // float max and lowest together
  const std::vector<float> fm{std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest()};
  EXPECT_EQ(vlq::eval::log_softmax(fm)[0], 0.0);
  EXPECT_TRUE(std::isfinite(vlq::eval::token_nll(fm, 1)));
  // A peaked row: tiny probabilities keep full relative precision in log space.
  const std::vector<float> peaked{0.0f, -100.0f};
  EXPECT_NEAR(vlq::eval::token_nll(peaked, 1), 100.0, 1e-12);
  EXPECT_NEAR(vlq::eval::token_nll(peaked, 0), std::exp(-100.0), 1e-50);
}

TEST(EvalMetrics, MaskedAndBadRows) {
  const std::vector<float> r{0.0f, kNegInf, 1.0f};
  const std::vector<float> q{0.5f, 2.0f, 1.0f};
  EXPECT_TRUE(std::isfinite(vlq::eval::kl_divergence(r, q)));       // p_ref = 0 terms vanish
  EXPECT_TRUE(std::isinf(vlq::eval::kl_divergence(q, r)));          // q gives 0 where p > 0
  EXPECT_TRUE(std::isinf(vlq::eval::token_nll(r, 1)));
  const std::vector<float> nan{0.0f, std::numeric_limits<float>::quiet_NaN()};
  VLQ_EXPECT_ERROR(vlq::eval::log_softmax(nan), vlq::FormatError, "non-finite", "NaN at index 1");
  const std::vector<float> pinf{std::numeric_limits<float>::infinity(), 0.0f};
  VLQ_EXPECT_ERROR(vlq::eval::argmax(pinf), vlq::FormatError, "+inf at index 0");
  const std::vector<float> allneg{kNegInf, kNegInf};
  VLQ_EXPECT_ERROR(vlq::eval::log_softmax(allneg), vlq::FormatError, "every logit is -inf");
  VLQ_EXPECT_ERROR(vlq::eval::log_softmax(std::vector<float>{}), vlq::UsageError, "empty");
  VLQ_EXPECT_ERROR(vlq::eval::kl_divergence(r, std::vector<float>{1.0f}), vlq::UsageError, "differ in length");
  VLQ_EXPECT_ERROR(vlq::eval::token_nll(q, 3), vlq::UsageError, "outside the vocabulary");
  VLQ_EXPECT_ERROR(vlq::eval::token_nll(q, -1), vlq::UsageError, "outside the vocabulary");
}

TEST(EvalMetrics, ArgmaxFirstOnTies) {
  EXPECT_EQ(vlq::eval::argmax(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}), 1);
  EXPECT_EQ(vlq::eval::argmax(std::vector<float>{kNegInf, -5.0f}), 1);
}

TEST(EvalMetrics, AccumulatorAggregates) {
  const std::vector<float> a{1.0f, 2.0f, 3.0f, 0.5f};
  const std::vector<float> b{1.5f, 1.0f, 3.5f, -1.0f};
  const std::vector<float> c{4.0f, 1.0f, 3.5f, -1.0f};
  LogitMetrics m;
  EXPECT_TRUE(std::isnan(m.mean_kl()));
  EXPECT_TRUE(m.to_json()["mean_kl"].is_null());
  const auto t1 = m.add(a, b, 2);   // top-1 2 vs 2
  m.add(a, a, 0);                   // identical
  const auto t3 = m.add(a, c);      // top-1 2 vs 0, no target
  EXPECT_TRUE(t1.top1_agree);
  EXPECT_FALSE(t3.top1_agree);
  EXPECT_EQ(m.tokens, 3);
  EXPECT_EQ(m.top1_agree, 2);
  EXPECT_NEAR(m.top1_agreement(), 2.0 / 3.0, 1e-15);
  EXPECT_NEAR(m.mean_kl(), (t1.kl + t3.kl) / 3.0, 1e-15);
  EXPECT_EQ(m.kl_max, std::max(t1.kl, t3.kl));
  EXPECT_EQ(m.nll_tokens, 2);
  // torch: -log_softmax(a)[2] = 0.46077..., -log_softmax(b)[2] (float64) computed here from the same formula.
  const double nll_a2 = 0.4607734891568512, nll_a0 = 2.4607734891568512;
  EXPECT_NEAR(m.mean_nll_ref(), (nll_a2 + nll_a0) / 2, 1e-14);
  EXPECT_NEAR(m.ppl_ref(), std::exp((nll_a2 + nll_a0) / 2), 1e-12);
  EXPECT_NEAR(m.mean_nll_quant(), (*t1.nll_quant + nll_a0) / 2, 1e-14);
  LogitMetrics n;
  n.add(b, a, 1);
  LogitMetrics merged = m;
  merged.merge(n);
  EXPECT_EQ(merged.tokens, 4);
  EXPECT_EQ(merged.nll_tokens, 3);
  EXPECT_NEAR(merged.kl_sum, m.kl_sum + n.kl_sum, 1e-15);
  const auto j = merged.to_json();
  EXPECT_EQ(j["tokens"], 4);
  EXPECT_NEAR(j["ppl_quant"].get<double>(), merged.ppl_quant(), 1e-12);
  EXPECT_EQ(std::vector<std::string>({"tokens", "mean_kl", "max_kl", "top1_agreement", "nll_tokens", "mean_nll_ref",
                                      "mean_nll_quant", "ppl_ref", "ppl_quant"}),
            [&] { std::vector<std::string> k; for (auto& [key, v] : j.items()) k.push_back(key); return k; }());
  // An infinite KL is reported as the string "inf".
  LogitMetrics inf;
  inf.add(std::vector<float>{0.0f, 0.0f}, std::vector<float>{0.0f, kNegInf});
  EXPECT_EQ(inf.to_json()["max_kl"], "inf");
}

// Cases computed with tools/train/tiny_vl_data.py normalize_answer (Python 3.11).
TEST(EvalMetrics, NormalizeAnswerMatchesPython) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Red", "red"},
      {"  Top   Left. ", "top left"},
      {"A red car.", "a red car"},
      {"a..", "a."},
      {"Hello .", "hello"},
      {"\tTWO\nWORDS\r\n", "two words"},
      {".", ""},
      {" . ", ""},
      {"", ""},
      {"x\u00a0 y", "x y"},
      {"\u2003Caf\u00c9\u3000", "caf\u00e9"},
      {"\u039f\u0394\u039f\u03a3 \u0391\u03a3.", "\u03bf\u03b4\u03bf\u03c2 \u03b1\u03c2"},
      {"\u0130stanbul", "i\u0307stanbul"},
      {"\u03a3", "\u03c3"},
      {"a\u03a3b", "a\u03c3b"},
      {"\u0391\u03a3'", "\u03b1\u03c2'"},
      {"\x1c" "A\x1f", "a"},
      {"Stra\u00dfe", "stra\u00dfe"},
      {"\u1e9e", "\u00df"},
      {"end.\u2028", "end"},
      {"\u01c5", "\u01c6"},
      {"\uff21\uff22\uff23", "\uff41\uff42\uff43"},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(vlq::eval::normalize_answer(in), out) << in;
  EXPECT_TRUE(vlq::eval::answer_matches(" Bottom  right.", "bottom right"));
  EXPECT_FALSE(vlq::eval::answer_matches("bottom-right", "bottom right"));
  EXPECT_EQ(vlq::eval::normalize_answer("A\xff"), "a\xEF\xBF\xBD");  // invalid UTF-8 -> U+FFFD
}

TEST(EvalMetrics, LoadsTheHeldOutSet) {
  const fs::path dir = fs::path(VLQ_SOURCE_DIR) / "data/heldout";
  const auto items = vlq::eval::load_eval_items(dir / "heldout.jsonl");
  EXPECT_EQ(items.size(), 720u);
  const auto& first = items.front();
  EXPECT_EQ(first.id, "color-0000");
  EXPECT_EQ(first.task, "color");
  EXPECT_EQ(first.image, dir / "images/color-0000.png");
  EXPECT_EQ(first.answer, "red");
  ASSERT_TRUE(first.choices.has_value());
  EXPECT_EQ(first.choices->size(), 6u);
  ASSERT_EQ(first.chat.images.size(), 1u);
  EXPECT_EQ(first.chat.images[0].path, first.image);
  EXPECT_EQ(first.source, (dir / "heldout.jsonl").string() + ":1");
  // Per-task accuracy when every prediction is the gold answer, and when it is always "red".
  vlq::eval::AccuracyTable gold, red;
  std::size_t captions = 0;
  for (const auto& it : items) {
    gold.add(it.task, vlq::eval::answer_matches("  " + it.answer + "\n", it.answer));
    red.add(it.task, vlq::eval::answer_matches("Red", it.answer));
    if (it.task == "stamp_caption") {
      EXPECT_FALSE(it.choices.has_value());
      ++captions;
    }
  }
  EXPECT_EQ(captions, 100u);
  EXPECT_EQ(gold.overall().correct, 720);
  EXPECT_EQ(gold.per_task().size(), 7u);
  EXPECT_EQ(gold.per_task()[0].task, "color");
  EXPECT_DOUBLE_EQ(gold.macro_accuracy(), 1.0);
  EXPECT_GT(red.per_task()[0].accuracy(), 0.0);
  EXPECT_LT(red.per_task()[0].accuracy(), 1.0);
  EXPECT_EQ(red.per_task()[1].correct, 0);  // shape
}

TEST(EvalMetrics, HeldOutReaderErrors) {
  vlq::testing::TempDir dir;
  fs::create_directories(dir / "images");
  fs::copy_file(fs::path(VLQ_SOURCE_DIR) / "data/heldout/images/color-0000.png", dir / "images/a.png");
  const std::string f = (dir / "h.jsonl").string();
  // (locals: VLQ_EXPECT_ERROR keeps string_views, so the expected parts must outlive the macro's loop)
  const std::string f1 = f + ":1", f2 = f + ":2", f3 = f + ":3";
  const std::string good =
      R"({"id": "a", "task": "color", "image": "images/a.png", "question": "Q?", "messages": [{"role": "user", "content": [{"type": "image", "image": "images/a.png"}, {"type": "text", "text": "Q?"}]}], "answer": "red", "choices": ["red", "blue"], "rule": "exact_normalized"})";
  vlq::testing::write_bytes(dir / "h.jsonl", good + "\n\n" + good + "\n");
  VLQ_EXPECT_ERROR(vlq::eval::load_eval_items(dir / "h.jsonl"), vlq::FormatError, f3, "duplicate item id");
  vlq::testing::write_bytes(dir / "h.jsonl", good + "\n{\"id\": \"b\",\n");
  VLQ_EXPECT_ERROR(vlq::eval::load_eval_items(dir / "h.jsonl"), vlq::FormatError, f2);
  std::string bad = good;
  bad.replace(bad.find("\"answer\": \"red\""), 15, "\"answer\": 3");
  vlq::testing::write_bytes(dir / "h.jsonl", bad + "\n");
  VLQ_EXPECT_ERROR(vlq::eval::load_eval_items(dir / "h.jsonl"), vlq::FormatError, f1, "\"answer\" must be a string");
  bad = good;
  bad.replace(bad.find("exact_normalized"), 16, "bleu");
  vlq::testing::write_bytes(dir / "h.jsonl", bad + "\n");
  VLQ_EXPECT_ERROR(vlq::eval::load_eval_items(dir / "h.jsonl"), vlq::UnsupportedError, "'bleu'");
  bad = good;
  bad.replace(bad.find("\"image\": \"images/a.png\""), 23, "\"image\": \"images/b.png\"");
  vlq::testing::write_bytes(dir / "h.jsonl", bad + "\n");
  VLQ_EXPECT_ERROR(vlq::eval::load_eval_items(dir / "h.jsonl"), vlq::IoError, f1, "images/b.png");
  vlq::testing::write_bytes(dir / "h.jsonl", "\n");
  VLQ_EXPECT_ERROR(vlq::eval::load_eval_items(dir / "h.jsonl"), vlq::ConfigError, "no items");
  vlq::testing::write_bytes(dir / "h.jsonl", good + "\n");
  const auto ok = vlq::eval::load_eval_items(dir / "h.jsonl");
  EXPECT_EQ(ok.at(0).choices, (std::vector<std::string>{"red", "blue"}));
}

TEST(EvalMetrics, AccuracyTableJson) {
  vlq::eval::AccuracyTable t;
  EXPECT_TRUE(std::isnan(t.macro_accuracy()));
  t.add("b", true);
  t.add("a", false);
  t.add("b", false);
  t.add("b", true);
  EXPECT_EQ(t.per_task()[0].task, "b");
  EXPECT_NEAR(t.per_task()[0].accuracy(), 2.0 / 3.0, 1e-15);
  EXPECT_EQ(t.overall().correct, 2);
  EXPECT_EQ(t.overall().total, 4);
  EXPECT_NEAR(t.macro_accuracy(), (2.0 / 3.0 + 0.0) / 2, 1e-15);
  const auto j = t.to_json();
  EXPECT_EQ(j["tasks"]["a"]["total"], 1);
  EXPECT_EQ(j["overall"]["accuracy"], 0.5);
}

}  // namespace
