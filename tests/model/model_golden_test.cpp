// Golden tests of the CPU runtime against Hugging Face transformers (float32, eager attention, PIL image
// processor): input_ids, pixel_values (exact), every named intermediate and the logits (≤ 1e-4 relative
// to the tensor's scale), and greedy generate tokens (exact). Goldens: tools/make_model_golden.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "vlq/engine/generate.h"
#include "vlq/engine/prompt.h"
#include "vlq/io/safetensors.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/model/vision_tower.h"

namespace fs = std::filesystem;
using namespace vlq;

namespace {

const fs::path kRoot = fs::path(VLQ_SOURCE_DIR);
const fs::path kGolden = kRoot / "tests/data/golden/model";

struct Dump : model::ForwardObserver {
  std::map<std::string, std::vector<float>> t;
  bool wants_tensors() const override { return true; }
  void on_tensor(const std::string& name, const float* d, std::int64_t r, std::int64_t c) override {
    t[name].assign(d, d + r * c);
  }
};

std::vector<float> f32(const io::SafetensorsFile& f, const std::string& name) {
  const auto* info = f.find(name);
  EXPECT_NE(info, nullptr) << name;
  if (!info) return {};
  const auto bytes = f.data(*info);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}
std::vector<std::int64_t> i64(const io::SafetensorsFile& f, const std::string& name) {
  const auto* info = f.find(name);
  if (!info) return {};
  const auto bytes = f.data(*info);
  std::vector<std::int64_t> v(bytes.size() / 8);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

// max|a−b| ≤ tol · max(1, max|golden|)
double expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                    double tol = 1e-4) {
  EXPECT_EQ(got.size(), want.size()) << what;
  if (got.size() != want.size()) return 1.0;
  double mx = 1.0, err = 0.0;
  for (float w : want) mx = std::max(mx, static_cast<double>(std::fabs(w)));
  for (std::size_t i = 0; i < got.size(); ++i) err = std::max(err, static_cast<double>(std::fabs(got[i] - want[i])));
  EXPECT_LE(err, tol * mx) << what << ": max abs err " << err << " vs scale " << mx;
  return err / mx;
}

struct Loaded {
  model::Qwen2_5_VL model;
  text::Tokenizer tok;
  text::ChatTemplate tmpl;
  engine::PromptBuilder builder() const {
    engine::PromptBuilder b;
    b.config = &model.config();
    b.tokenizer = &tok;
    b.chat_template = &tmpl;
    b.image_params = image::image_processor_params_from_config(*model.files().preprocessor);
    b.image_params.backend = image::ResizeBackend::kPil;  // the goldens come from Qwen2VLImageProcessorPil
    return b;
  }
};

Loaded load(const fs::path& dir) {
  return Loaded{model::Qwen2_5_VL::load(dir), text::Tokenizer::from_model_dir(dir),
                text::ChatTemplate::from_model_dir(dir)};
}

void run_case(const Loaded& L, const nlohmann::json& messages, const nlohmann::json& image_paths,
              const fs::path& golden_file, bool full_intermediates) {
  const auto g = io::SafetensorsFile::open(golden_file);
  std::vector<image::RgbImage> imgs;
  for (const auto& p : image_paths) imgs.push_back(image::load_image(kRoot / p.get<std::string>()));
  const engine::Prompt prompt = L.builder().build(nlohmann::ordered_json::parse(messages.dump()), imgs);
  // input_ids exact
  const auto want_ids = i64(g, "input_ids");
  ASSERT_EQ(prompt.ids.size(), want_ids.size());
  for (std::size_t i = 0; i < want_ids.size(); ++i) ASSERT_EQ(prompt.ids[i], want_ids[i]) << "input_ids[" << i << "]";
  // pixel_values exact (PIL parity)
  if (g.find("pixel_values")) {
    const auto pv = f32(g, "pixel_values");
    ASSERT_EQ(prompt.images.pixel_values.size(), pv.size());
    EXPECT_EQ(std::memcmp(prompt.images.pixel_values.data(), pv.data(), pv.size() * 4), 0) << "pixel_values";
    const auto grid = i64(g, "image_grid_thw");
    for (std::size_t i = 0; i < prompt.images.grid_thw.size(); ++i)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(prompt.images.grid_thw[i][k], grid[i * 3 + k]);
  }
  // forward with dumps
  Dump dump;
  const std::int64_t K = g.find("logits")->shape[0];
  model::Session s = L.model.new_session(static_cast<std::int64_t>(prompt.ids.size()) + 64);
  const ops::Matrix logits =
      L.model.prefill(s, prompt.ids, prompt.images.n_patches ? &prompt.images : nullptr, K, &dump);
  EXPECT_EQ(s.rope_deltas, i64(g, "rope_deltas").at(0));
  for (const auto& info : g.tensors()) {
    const std::string& n = info.name;
    if (n.rfind("vision.", 0) == 0 || n.rfind("lm.", 0) == 0) {
      ASSERT_TRUE(dump.t.count(n)) << "runtime did not produce " << n;
      expect_close(dump.t[n], f32(g, n), n);
    }
  }
  if (full_intermediates) EXPECT_TRUE(g.find("lm.layer.0") != nullptr);
  const double rel = expect_close(logits.data, f32(g, "logits"), "logits");
  std::cout << "[golden] " << golden_file.parent_path().filename().string() << "/" << golden_file.filename().string()
            << ": logits max |vlq - HF| / max(1, max |HF|) = " << rel << "\n";
  // greedy generation = transformers generate
  const auto want_gen = i64(g, "generated_ids");
  engine::GenerateOptions go;
  go.max_new_tokens = static_cast<std::int64_t>(want_gen.size());
  go.eos_ids = L.model.files().generation->eos_token_ids;
  const auto r = engine::generate(L.model, prompt, go);
  ASSERT_EQ(r.output_ids.size(), want_gen.size());
  for (std::size_t i = 0; i < want_gen.size(); ++i) EXPECT_EQ(r.output_ids[i], want_gen[i]) << "generated[" << i << "]";
}

class ModelGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelGolden, MatchesTransformers) {
  const fs::path dir = kGolden / GetParam();
  nlohmann::json c;
  std::ifstream(dir / "case.json") >> c;
  const Loaded L = load(kRoot / c["model_dir"].get<std::string>());
  run_case(L, c["messages"], c["image_paths"], dir / "golden.safetensors", true);
}

INSTANTIATE_TEST_SUITE_P(Cases, ModelGolden, ::testing::Values("gqa2_win56", "gqa6_win112_odd", "mha_text_only"),
                         [](const auto& info) { return info.param; });

TEST(ModelGoldenTrained, HeldoutItemsMatchTransformers) {
  const fs::path dir = kGolden / "trained_heldout";
  nlohmann::json c;
  std::ifstream(dir / "case.json") >> c;
  const Loaded L = load(kRoot / c["model_dir"].get<std::string>());
  for (const auto& item : c["items"]) {
    SCOPED_TRACE(item["id"].get<std::string>());
    run_case(L, item["messages"], item["image_paths"], dir / item["golden_file"].get<std::string>(), false);
  }
}

TEST(ModelWindowIndex, DocVectors168) {
  const auto wi = model::vision_window_index({{1, 12, 12}}, 112, 14, 2);
  const std::vector<std::int64_t> want_cu{0, 64, 96, 128, 144};
  const std::vector<std::int64_t> want_idx{0,  1,  2,  3,  6,  7,  8,  9,  12, 13, 14, 15, 18, 19, 20, 21, 4,  5,
                                           10, 11, 16, 17, 22, 23, 24, 25, 26, 27, 30, 31, 32, 33, 28, 29, 34, 35};
  EXPECT_EQ(wi.cu_window_seqlens, want_cu);
  EXPECT_EQ(wi.window_index, want_idx);
  const auto wi2 = model::vision_window_index({{1, 16, 16}}, 112, 14, 2);
  EXPECT_EQ(wi2.cu_window_seqlens, (std::vector<std::int64_t>{0, 64, 128, 192, 256}));
  const auto wi3 = model::vision_window_index({{1, 34, 46}}, 112, 14, 2);  // 640x480 → 5×6 windows
  EXPECT_EQ(wi3.cu_window_seqlens.size(), 31u);
}

}  // namespace
