// Tests for vlq/engine/model_bundle.h: loading the bundled trained model as one bundle, generation defaults
// from generation_config.json and their overrides, prompts that survive a move, image checks, KV-cache flag
// parsing and the partial-KV-scale warning.
#include "vlq/engine/model_bundle.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <thread>

#include "vlq/core/error.h"
#include "vlq/engine/device_model.h"
#include "vlq/engine/generate.h"

namespace {

namespace fs = std::filesystem;
namespace E = vlq::engine;
using ojson = nlohmann::ordered_json;

const fs::path kModel = fs::path(VLQ_SOURCE_DIR) / "models/qwen2_5_vl-tiny-trained";
const fs::path kColorImage = fs::path(VLQ_SOURCE_DIR) / "data/heldout/images/color-0003.png";

const E::ModelBundle& bundle() {
  static const E::ModelBundle b = E::ModelBundle::load(kModel);
  return b;
}

E::ParsedMessages color_question() {
  return E::build_prompt_messages("What color is the shape?", {kColorImage.string()});
}

TEST(ModelBundle, LoadsEveryPartFromOneFolder) {
  const E::ModelBundle& b = bundle();
  EXPECT_EQ(b.dir(), kModel);
  EXPECT_TRUE(b.has_image_processor());
  EXPECT_GT(b.load_seconds(), 0.0);
  const E::PromptBuilder& pb = b.prompt_builder();
  EXPECT_EQ(pb.config, &b.model().config());
  EXPECT_EQ(pb.tokenizer, &b.tokenizer());
  EXPECT_EQ(pb.chat_template, &b.chat_template());
  EXPECT_FALSE(b.kv_cache_warning());  // kv_cache auto
}

TEST(ModelBundle, GenerationDefaultsComeFromGenerationConfig) {
  // generation_config.json: do_sample false, eos [2028, 2026], max_new_tokens 48.
  const E::GenerationDefaults& d = bundle().generation_defaults();
  EXPECT_EQ(d.eos_ids, (std::vector<std::int64_t>{2028, 2026}));
  EXPECT_EQ(d.max_new_tokens, 48);
  EXPECT_FALSE(d.do_sample);
  EXPECT_EQ(d.sampling.temperature, 0.0);
  const E::GenerateOptions go = bundle().generate_options();
  EXPECT_EQ(go.eos_ids, d.eos_ids);
  EXPECT_EQ(go.max_new_tokens, 48);
  EXPECT_EQ(go.sampling.temperature, 0.0);
  EXPECT_EQ(go.logits_last_k, 1);
}

TEST(ModelBundle, OverridesReplaceDefaults) {
  E::GenerationOverrides o;
  o.max_new_tokens = 5;
  o.temperature = 0.7;
  o.top_p = 0.9;
  o.top_k = 3;
  o.repetition_penalty = 1.1;
  o.seed = 42;
  o.logits_last_k = 0;  // clamped to 1
  const E::GenerateOptions go = bundle().generate_options(o);
  EXPECT_EQ(go.max_new_tokens, 5);
  EXPECT_DOUBLE_EQ(go.sampling.temperature, 0.7);
  EXPECT_DOUBLE_EQ(go.sampling.top_p, 0.9);
  EXPECT_EQ(go.sampling.top_k, 3);
  EXPECT_DOUBLE_EQ(go.sampling.repetition_penalty, 1.1);
  EXPECT_EQ(go.seed, 42u);
  EXPECT_EQ(go.logits_last_k, 1);
  o.temperature = 1e-6;  // Qwen's "greedy" temperature
  EXPECT_EQ(bundle().generate_options(o).sampling.temperature, 0.0);
}

TEST(ModelBundle, SamplingDefaultsOnlyWhenDoSample) {
  vlq::formats::ModelConfig cfg;
  cfg.tokens.eos_token_ids = {7};
  vlq::formats::GenerationConfig gc;
  gc.temperature = 0.6;
  gc.top_p = 0.8;
  gc.top_k = 20;
  gc.repetition_penalty = 1.05;
  E::GenerationDefaults d = E::generation_defaults_from(gc, cfg);
  EXPECT_EQ(d.eos_ids, std::vector<std::int64_t>{7});  // none in generation_config: config.json's
  EXPECT_EQ(d.max_new_tokens, 128);
  EXPECT_EQ(d.sampling.temperature, 0.0);
  EXPECT_EQ(d.sampling.top_k, 0);
  EXPECT_DOUBLE_EQ(d.sampling.repetition_penalty, 1.05);  // applies to greedy too
  gc.do_sample = true;
  d = E::generation_defaults_from(gc, cfg);
  EXPECT_DOUBLE_EQ(d.sampling.temperature, 0.6);
  EXPECT_DOUBLE_EQ(d.sampling.top_p, 0.8);
  EXPECT_EQ(d.sampling.top_k, 20);
  d = E::generation_defaults_from(std::nullopt, cfg);
  EXPECT_EQ(d.eos_ids, std::vector<std::int64_t>{7});
}

TEST(ModelBundle, BuildsPromptsWithImagesAndSurvivesAMove) {
  E::ModelBundle moved = E::ModelBundle::load(kModel);
  const E::Prompt before = moved.build_prompt(color_question());
  E::ModelBundle b = std::move(moved);
  const E::Prompt after = b.build_prompt(color_question());
  EXPECT_EQ(before.ids, after.ids);
  EXPECT_GT(after.image_tokens, 0);
  EXPECT_EQ(after.images.grid_thw.size(), 1u);
  EXPECT_EQ(b.prompt_builder().tokenizer, &b.tokenizer());
  // The same prompt as the prompt builder makes by hand.
  const auto imgs = b.load_images(color_question());
  EXPECT_EQ(b.prompt_builder().build(color_question().messages, imgs, true).ids, after.ids);
  EXPECT_EQ(b.build_raw("hello").ids, b.tokenizer().encode("hello", true));
}

TEST(ModelBundle, ConstMethodsFromSeveralThreads) {
  const E::Prompt want = bundle().build_prompt(color_question());
  std::vector<std::vector<std::int32_t>> got(4);
  std::vector<std::thread> ts;
  for (std::size_t i = 0; i < got.size(); ++i)
    ts.emplace_back([&, i] { got[i] = bundle().build_prompt(color_question()).ids; });
  for (auto& t : ts) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want.ids);
}

TEST(ModelBundle, ImagesNeedAnImageProcessor) {
  const fs::path d = fs::temp_directory_path() / ("vlq_bundle_noproc_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  for (const auto& e : fs::directory_iterator(kModel))
    if (e.path().filename() != "preprocessor_config.json") fs::create_symlink(e.path(), d / e.path().filename());
  const E::ModelBundle b = E::ModelBundle::load(d);
  EXPECT_FALSE(b.has_image_processor());
  try {
    (void)b.build_prompt(color_question());
    ADD_FAILURE() << "no ConfigError";
  } catch (const vlq::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no image processor config"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW((void)b.build_prompt(E::build_prompt_messages("hi", {})));
  fs::remove_all(d);
}

TEST(ModelBundle, MissingFolderAndBadKvFlag) {
  EXPECT_THROW(E::ModelBundle::load(kModel / "nope"), vlq::IoError);
  EXPECT_EQ(E::parse_kv_cache_mode("auto"), vlq::model::KvCacheMode::kAuto);
  EXPECT_EQ(E::parse_kv_cache_mode("fp8"), vlq::model::KvCacheMode::kFp8);
  EXPECT_EQ(E::parse_kv_cache_mode("f32"), vlq::model::KvCacheMode::kF32);
  EXPECT_EQ(E::parse_kv_cache_mode("none"), vlq::model::KvCacheMode::kF32);
  try {
    E::parse_kv_cache_mode("fp16", "--kv");
    ADD_FAILURE() << "no UsageError";
  } catch (const vlq::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--kv"), std::string::npos);
  }
}

TEST(ModelBundle, WarnsWhenFp8KvCacheLacksScales) {
  E::BundleOptions o;
  o.kv_cache = vlq::model::KvCacheMode::kFp8;
  const E::ModelBundle b = E::ModelBundle::load(kModel, o);  // BF16: no k/v scales at all
  ASSERT_TRUE(b.kv_cache_warning());
  EXPECT_NE(b.kv_cache_warning()->find("for 0 of"), std::string::npos) << *b.kv_cache_warning();
  EXPECT_TRUE(b.model().fp8_kv_cache());
}

TEST(ModelBundle, FromPartsWrapsAnInMemoryModel) {
  const E::ModelBundle& src = bundle();
  E::ModelBundle b = E::ModelBundle::from_parts(
      "in-memory", src.model(), vlq::text::Tokenizer::from_model_dir(kModel), vlq::text::ChatTemplate::from_model_dir(kModel));
  EXPECT_EQ(b.dir(), fs::path("in-memory"));
  EXPECT_EQ(b.load_seconds(), 0.0);
  EXPECT_EQ(b.build_prompt(color_question()).ids, src.build_prompt(color_question()).ids);
  EXPECT_EQ(b.generation_defaults().eos_ids, src.generation_defaults().eos_ids);
}

}  // namespace

// A prompt built with defer_pixels keeps the images instead of pixel rows (same ids, grid and patch count),
// and engine::generate on the CPU preprocesses them itself: the same tokens and logits as the normal prompt.
TEST(ModelBundle, DeferredPixelsGenerateTheSame) {
  const E::Prompt normal = bundle().build_prompt(color_question());
  const E::Prompt deferred = bundle().build_prompt(color_question(), true, true);
  ASSERT_TRUE(deferred.deferred_pixels());
  EXPECT_FALSE(normal.deferred_pixels());
  EXPECT_EQ(deferred.ids, normal.ids);
  EXPECT_EQ(deferred.images.grid_thw, normal.images.grid_thw);
  EXPECT_EQ(deferred.images.n_patches, normal.images.n_patches);
  EXPECT_TRUE(deferred.images.pixel_values.empty());
  EXPECT_EQ(deferred.image_tokens, normal.image_tokens);
  E::GenerationOverrides ov;
  ov.max_new_tokens = 4;
  ov.temperature = 0;
  const E::GenerateOptions go = bundle().generate_options(ov);
  const auto cpu = E::DeviceModel::create(bundle().model(), E::Device::kCpu);
  EXPECT_FALSE(cpu->preprocesses_images());
  const E::GenerateResult a = E::generate(*cpu, normal, go, nullptr);
  const E::GenerateResult b = E::generate(*cpu, deferred, go, nullptr);
  EXPECT_EQ(b.output_ids, a.output_ids);
  EXPECT_EQ(b.prompt_logits.data, a.prompt_logits.data);
  EXPECT_THROW((void)cpu->prefill_raw(deferred.ids, vlq::image::plan_images(deferred.raw_images), 1),
               vlq::UnsupportedError);
}
