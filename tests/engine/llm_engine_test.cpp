// The serving engine with the bundled trained model on the CPU runner: greedy outputs equal engine::generate
// (the `vlq generate` loop) under chunked prefill, prefix-cache reuse, image-cache reuse, preemption and
// concurrent sequences; stop strings, aborts and finished sequences leave no blocks or runner state behind.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>

#include "vlq/engine/generate.h"
#include "vlq/engine/image_cache.h"
#include "vlq/engine/prompt_inputs.h"
#include "vlq/engine/llm_engine.h"
#include "vlq/engine/messages.h"
#include "vlq/engine/prompt.h"
#include "vlq/model/qwen2_5_vl.h"

namespace vlq::engine {
namespace {

namespace fs = std::filesystem;
const fs::path kModelDir = fs::path(VLQ_SOURCE_DIR) / "models/qwen2_5_vl-tiny-trained";
const fs::path kImages = fs::path(VLQ_SOURCE_DIR) / "data/heldout/images";

struct Tiny {
  text::Tokenizer tok = text::Tokenizer::from_model_dir(kModelDir);
  text::ChatTemplate tmpl = text::ChatTemplate::from_model_dir(kModelDir);
  model::Qwen2_5_VL model = model::Qwen2_5_VL::load(kModelDir);
  PromptBuilder pb;
  Tiny() {
    pb.config = &model.config();
    pb.tokenizer = &tok;
    pb.chat_template = &tmpl;
    pb.image_params = image::image_processor_params_from_config(*model.files().preprocessor);
  }
};

Tiny& tiny() {
  static Tiny* t = new Tiny();
  return *t;
}

struct Req {
  Prompt prompt;
  std::shared_ptr<const PromptImages> images;
};

Req make_request(const std::string& text, const std::string& image_name = "") {
  Tiny& t = tiny();
  std::vector<std::string> refs;
  if (!image_name.empty()) refs.push_back((kImages / image_name).string());
  ParsedMessages pm = build_prompt_messages(text, refs);
  std::vector<image::RgbImage> imgs;
  std::vector<ImageDigest> digests;
  for (const auto& src : pm.images) {
    std::ifstream f(src.path, std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    digests.push_back(sha256(bytes));
    imgs.push_back(load_image_source(src));
  }
  Req r;
  r.prompt = t.pb.build(pm.messages, imgs);
  if (!imgs.empty())
    r.images = make_prompt_images(r.prompt.images, r.prompt.ids, t.model.config().tokens.image_token_id,
                                  t.pb.image_params.merge_size, digests);
  return r;
}

std::vector<std::int64_t> eos_ids() {
  const auto& m = tiny().model;
  const formats::GenerationConfig gc = m.files().generation.value_or(formats::GenerationConfig{});
  return !gc.eos_token_ids.empty() ? gc.eos_token_ids : m.config().tokens.eos_token_ids;
}

std::string reference(const Req& r, std::int64_t max_new, bool stop_at_eos = true) {
  GenerateOptions go;
  go.max_new_tokens = max_new;
  if (stop_at_eos) go.eos_ids = eos_ids();
  const GenerateResult g = generate(tiny().model, r.prompt, go);
  return tiny().tok.decode(g.output_ids, true);
}

EngineRequest to_engine(const Req& r, std::int64_t max_new) {
  EngineRequest e;
  e.prompt_ids = r.prompt.ids;
  e.images = r.images;
  e.params.stop.max_tokens = max_new;
  for (auto id : eos_ids()) e.params.stop.eos_ids.push_back(static_cast<std::int32_t>(id));
  return e;
}

struct Harness {
  std::unique_ptr<CpuModelRunner> runner;
  std::unique_ptr<LlmEngine> engine;
  std::map<SeqId, std::string> text;
  std::map<SeqId, SeqEvent> last;
  Harness(std::int64_t blocks, std::int64_t budget, bool prefix = true, std::int64_t block_size = 16,
          std::int64_t max_seqs = 8) {
    CpuRunnerOptions ro;
    ro.block_size = block_size;
    ro.num_blocks = prefix ? blocks : 0;
    runner = std::make_unique<CpuModelRunner>(tiny().model, ro);
    EngineConfig ec;
    ec.num_blocks = blocks;
    ec.block_size = block_size;
    ec.prefix_caching = prefix;
    ec.scheduler.max_num_batched_tokens = budget;
    ec.scheduler.max_num_seqs = max_seqs;
    ec.max_model_len = 2048;
    engine = std::make_unique<LlmEngine>(*runner, tiny().tok, ec);
  }
  void step() {
    for (auto& ev : engine->step()) {
      text[ev.id] += ev.text;
      if (ev.finished) last[ev.id] = ev;
    }
  }
  void run() {
    for (int guard = 0; engine->has_work() && guard < 10000; ++guard) step();
  }
  void expect_clean() {
    EXPECT_FALSE(engine->has_work());
    EXPECT_EQ(engine->stats().blocks.used_blocks, 0);
    EXPECT_EQ(runner->num_live_states(), 0);
  }
};

// PromptInputs::image_rows (what the CUDA runner copies over its own token embedding): for chunks that cut an
// image's <|image_pad|> run anywhere, its entries put exactly embed()'s image rows at the right chunk rows, the
// other rows being the plain token embedding; the image is encoded once (second chunk: from the features).
TEST(PromptInputsTest, ImageRowsAreEmbedsImageRowsForAnyChunking) {
  Tiny& t = tiny();
  const Req r = make_request("What color is the shape?", "color-0003.png");
  ASSERT_TRUE(r.images);
  SequenceParams sp;
  sp.stop.max_tokens = 4;
  const Sequence seq(1, r.prompt.ids, r.images, sp, 4096);
  const ImageSpan& span = r.images->spans.front();
  const std::int64_t P = seq.prompt_len(), H = t.model.config().text.hidden_size;
  ASSERT_GT(span.token_count, 3);
  const auto& emb = t.model.weights().lm.embedding();
  for (std::int64_t cut : {span.token_offset, span.token_offset + 1, span.token_offset + span.token_count / 2,
                           span.token_offset + span.token_count}) {
    SCOPED_TRACE("chunk boundary at " + std::to_string(cut));
    ImageCache cache(64 << 20);
    PromptInputs a = PromptInputs::make(t.model, seq), b = PromptInputs::make(t.model, seq);
    for (auto [start, n] : {std::pair<std::int64_t, std::int64_t>{0, cut}, {cut, P - cut}}) {
      if (n == 0) continue;
      const ops::Matrix e = a.embed(t.model, seq, cache, start, n);
      ops::Matrix d(n, H);  // the device's own token embedding, then the image rows over it
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int32_t id = seq.tokens()[static_cast<std::size_t>(start + i)];
        std::copy(emb.begin() + id * H, emb.begin() + (id + 1) * H, d.row(i));
      }
      std::int64_t image_rows = 0;
      for (const auto& ir : b.image_rows(t.model, seq, cache, start, n)) {
        ASSERT_GE(ir.row, 0);
        ASSERT_LE(ir.row + ir.rows, n);
        std::copy(ir.data, ir.data + ir.rows * H, d.row(ir.row));
        image_rows += ir.rows;
      }
      EXPECT_EQ(image_rows, std::max<std::int64_t>(0, std::min(start + n, span.token_offset + span.token_count) -
                                                         std::max(start, span.token_offset)));
      EXPECT_EQ(d.data, e.data);
    }
    EXPECT_EQ(cache.stats().misses, 1);  // a's embed encoded it; b took it from the cache
  }
}

TEST(LlmEngine, GreedyTextOnlyEqualsGenerateUnderChunkedPrefill) {
  const Req r = make_request("What color is the sky on a clear day? Answer in one word.");
  const std::string want = reference(r, 24);
  Harness h(256, 7);  // 7-token budget: the prompt is prefilled in chunks
  ASSERT_TRUE(h.engine->add(1, to_engine(r, 24)));
  h.run();
  EXPECT_EQ(h.text[1], want);
  EXPECT_EQ(h.last[1].prompt_tokens, static_cast<std::int64_t>(r.prompt.ids.size()));
  EXPECT_GT(h.engine->stats().steps, static_cast<std::int64_t>(r.prompt.ids.size()) / 7);
  h.expect_clean();
}

TEST(LlmEngine, ImageRequestTwiceHitsPrefixAndImageCaches) {
  const Req r = make_request("What color is the shape?", "color-0003.png");
  const std::string want = reference(r, 16);
  EXPECT_EQ(want, "blue");
  Harness h(256, 64);
  ASSERT_TRUE(h.engine->add(1, to_engine(r, 16)));
  h.run();
  ASSERT_TRUE(h.engine->add(2, to_engine(r, 16)));
  h.run();
  EXPECT_EQ(h.text[1], want);
  EXPECT_EQ(h.text[2], want);
  EXPECT_EQ(h.last[1].cached_tokens, 0);
  EXPECT_GT(h.last[2].cached_tokens, 0);  // full prompt blocks reused from the mirror pool
  EXPECT_EQ(h.engine->stats().image_cache.misses, 1);  // the second request's image was in cached blocks
  h.expect_clean();
  // Without prefix caching the same image is encoded once: the second request hits the encoder cache.
  Harness off(256, 64, /*prefix=*/false);
  ASSERT_TRUE(off.engine->add(1, to_engine(r, 16)));
  ASSERT_TRUE(off.engine->add(2, to_engine(r, 16)));
  off.run();
  EXPECT_EQ(off.text[1], want);
  EXPECT_EQ(off.text[2], want);
  EXPECT_EQ(off.last[2].cached_tokens, 0);
  EXPECT_EQ(off.engine->stats().image_cache.hits, 1);
  EXPECT_EQ(off.engine->stats().image_cache.misses, 1);
  off.expect_clean();
}

TEST(LlmEngine, ConcurrentSequencesWithPreemptionEachGetTheirOwnAnswer) {
  const std::vector<std::pair<std::string, std::string>> asks = {
      {"What color is the shape?", "color-0003.png"},
      {"What color is the shape?", "color-0000.png"},
      {"Count to five.", ""},
      {"What shape is it?", "color-0001.png"}};
  std::vector<Req> reqs;
  std::vector<std::string> want;
  for (const auto& [q, img] : asks) {
    reqs.push_back(make_request(q, img));
    want.push_back(reference(reqs.back(), 20, /*stop_at_eos=*/false));
  }
  // Few small blocks: the four sequences (20 tokens each, EOS ignored) cannot all keep their KV, so some
  // are preempted and recomputed.
  std::int64_t need = 0;
  for (const auto& r : reqs) need = std::max<std::int64_t>(need, (r.prompt.ids.size() + 20 + 3) / 4);
  Harness h(need + 2, 32, /*prefix=*/true, /*block_size=*/4);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    EngineRequest e = to_engine(reqs[i], 20);
    e.params.stop.ignore_eos = true;
    ASSERT_TRUE(h.engine->add(static_cast<SeqId>(i), e));
  }
  h.run();
  for (std::size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(h.text[static_cast<SeqId>(i)], want[i]) << "request " << i;
  EXPECT_GT(h.engine->stats().preemptions, 0);
  h.expect_clean();
}

TEST(LlmEngine, StopStringsMaxTokensAndAbort) {
  const Req r = make_request("Count to five.");
  const std::string full = reference(r, 30);
  ASSERT_GE(full.size(), 3u);
  Harness h(256, 64);
  EngineRequest e = to_engine(r, 30);
  const std::string stop = full.substr(1, 2);
  e.params.stop.stop_strings = {stop};
  ASSERT_TRUE(h.engine->add(1, e));
  EngineRequest len = to_engine(r, 2);
  len.params.stop.ignore_eos = true;
  ASSERT_TRUE(h.engine->add(2, len));
  ASSERT_TRUE(h.engine->add(3, to_engine(r, 30)));
  h.step();
  EXPECT_TRUE(h.engine->abort(3));
  EXPECT_FALSE(h.engine->abort(3));
  h.run();
  EXPECT_EQ(h.text[1], full.substr(0, full.find(stop)));
  EXPECT_EQ(h.last[1].reason, FinishReason::kStop);
  EXPECT_EQ(h.last[2].reason, FinishReason::kLength);
  EXPECT_EQ(h.last[2].completion_tokens, 2);
  EXPECT_EQ(h.last.count(3), 0u);
  h.expect_clean();
  EXPECT_THROW(h.engine->check_fits(2000, 100), UsageError);
}

}  // namespace
}  // namespace vlq::engine

namespace vlq::engine {
namespace {

// FP8 E4M3 KV cache: the mirror pool holds the dequantized values and restoring re-quantizes them exactly, so
// a prefix-cache hit gives the same greedy answer as generate() with the same FP8 cache.
TEST(LlmEngine, Fp8KvCachePrefixReuseEqualsGenerate) {
  model::LoadOptions lo;
  lo.kv_cache = model::KvCacheMode::kFp8;
  const model::Qwen2_5_VL fp8 = model::Qwen2_5_VL::load(kModelDir, lo);
  ASSERT_TRUE(fp8.fp8_kv_cache());
  const Req r = make_request("What color is the shape?", "color-0002.png");
  GenerateOptions go;
  go.max_new_tokens = 12;
  go.eos_ids = eos_ids();
  const std::string want = tiny().tok.decode(generate(fp8, r.prompt, go).output_ids, true);
  CpuRunnerOptions ro;
  ro.num_blocks = 64;
  CpuModelRunner runner(fp8, ro);
  EXPECT_EQ(runner.kv_layout().elem_bytes, 1);
  EngineConfig ec;
  ec.num_blocks = 64;
  ec.scheduler.max_num_batched_tokens = 10;
  LlmEngine engine(runner, tiny().tok, ec);
  std::map<SeqId, std::string> text;
  std::map<SeqId, std::int64_t> cached;
  for (SeqId id : {1, 2}) {
    ASSERT_TRUE(engine.add(id, to_engine(r, 12)));
    while (engine.has_work())
      for (auto& ev : engine.step()) {
        text[ev.id] += ev.text;
        if (ev.finished) cached[ev.id] = ev.cached_tokens;
      }
  }
  EXPECT_EQ(text[1], want);
  EXPECT_EQ(text[2], want);
  EXPECT_GT(cached[2], 0);
  EXPECT_EQ(engine.stats().blocks.used_blocks, 0);
}

}  // namespace
}  // namespace vlq::engine
