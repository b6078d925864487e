// End to end on the bundled trained model and data/calib (real photos, Tux Paint stamps and captions):
// --scope lm with text, --scope lm with images, --scope vlm with images (ModelOpt and compressed-tensors)
// → each export passes `check --target vlq`, runs in the CPU runtime and answers a held-out question like
// the BF16 model; on vllm-latest the ModelOpt FP8 vision tower fails as fp8-checkpoint-formats.md §2.8
// predicts, and `convert --for vllm-latest` turns it into a checkpoint that loads.
#include <gtest/gtest.h>

#include <filesystem>

#include "vlq/engine/generate.h"
#include "vlq/engine/prompt.h"
#include "vlq/formats/check.h"
#include "vlq/formats/convert.h"
#include "vlq/io/safetensors.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/quant/calib_data.h"
#include "vlq/quant/calibrate.h"
#include "vlq/quant/export.h"

namespace fs = std::filesystem;
using namespace vlq;

namespace {

const fs::path kRoot = fs::path(VLQ_SOURCE_DIR);
const fs::path kModel = kRoot / "models/qwen2_5_vl-tiny-trained";

struct Variant {
  const char* name;
  quant::Scope scope;
  bool text, images;
  quant::ExportFormat format;
  formats::Verdict on_vllm_latest;
};
// GoogleTest (and ctest's discovered test names) print the variant's name, not the struct's raw bytes.
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

class QuantizeE2E : public ::testing::TestWithParam<Variant> {
 protected:
  static void SetUpTestSuite() {
    tmp_ = fs::temp_directory_path() / ("vlq_quant_e2e_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  static void TearDownTestSuite() { fs::remove_all(tmp_); }
  static fs::path tmp_;
};
fs::path QuantizeE2E::tmp_;

std::string answer(const model::Qwen2_5_VL& m, const fs::path& dir, const char* image, const char* question) {
  const auto tok = text::Tokenizer::from_model_dir(dir);
  const auto tmpl = text::ChatTemplate::from_model_dir(dir);
  engine::PromptBuilder pb{&m.config(), &tmpl, &tok, image::image_processor_params_from_config(*m.files().preprocessor)};
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", {{{"type", "image"}}, {{"type", "text"}, {"text", question}}}}});
  const image::RgbImage img = image::load_image(kRoot / image);
  const auto p = pb.build(msgs, std::span<const image::RgbImage>(&img, 1));
  engine::GenerateOptions go;
  go.max_new_tokens = 16;
  go.eos_ids = m.files().generation->eos_token_ids;
  auto ids = engine::generate(m, p, go).output_ids;
  if (!ids.empty()) ids.pop_back();  // eos
  return tok.decode(ids, true);
}

TEST_P(QuantizeE2E, ExportChecksRunsAndAnswers) {
  const Variant v = GetParam();
  const fs::path out = tmp_ / v.name;
  quant::QuantizeOptions opt;
  opt.scope = v.scope;
  opt.format = v.format;
  opt.check_targets = {"vlq"};
  opt.fsync = false;
  const io::Checkpoint ck = io::Checkpoint::open(kModel);
  const auto cfg = formats::load_model_config(kModel / "config.json");
  const quant::QuantPlan plan = quant::plan_quantization(ck, cfg, opt);

  const model::Qwen2_5_VL base = model::Qwen2_5_VL::load(kModel);
  const auto tok = text::Tokenizer::from_model_dir(kModel);
  const auto tmpl = text::ChatTemplate::from_model_dir(kModel);
  engine::PromptBuilder pb{&base.config(), &tmpl, &tok,
                           image::image_processor_params_from_config(*base.files().preprocessor)};
  std::vector<quant::CalibSample> text, images;
  if (v.text) text = quant::load_calib_text(kRoot / "data/calib/text.jsonl");
  if (v.images) images = quant::load_calib_images(kRoot / "data/calib/images");
  const auto samples = quant::select_calib_samples(text, images, 16, 0);
  const quant::CalibrationStats stats = quant::calibrate(base, pb, samples);
  EXPECT_EQ(stats.samples, 16);
  EXPECT_EQ(stats.image_tokens > 0, v.images);
  const quant::ExportReport rep = quant::export_quantized(kModel, out, plan, stats, opt);
  EXPECT_EQ(rep.quantized, v.scope == quant::Scope::kVisionLanguage ? 50 : 28);

  EXPECT_EQ(formats::check_checkpoint(out, "vlq").verdict, formats::Verdict::kLoads);
  const auto latest = formats::check_checkpoint(out, "vllm-latest");
  EXPECT_EQ(latest.verdict, v.on_vllm_latest) << formats::report_to_text(latest);
  EXPECT_NE(formats::check_checkpoint(out, "vllm-0.10").verdict, formats::Verdict::kFails);
  if (latest.verdict == formats::Verdict::kFails) {
    formats::ConvertOptions co;
    co.target = "vllm-latest";
    co.fsync = false;
    formats::convert_checkpoint(out, tmp_ / (std::string(v.name) + "-latest"), co);
    EXPECT_EQ(formats::check_checkpoint(tmp_ / (std::string(v.name) + "-latest"), "vllm-latest").verdict,
              formats::Verdict::kLoads);
  }

  // The FP8 checkpoint runs and answers as the BF16 model does on held-out items.
  const model::Qwen2_5_VL q = model::Qwen2_5_VL::load(out);
  EXPECT_TRUE(q.fp8_kv_cache());
  EXPECT_EQ(answer(q, out, "data/heldout/images/color-0000.png", "What color is the shape?"), "red");
  EXPECT_EQ(answer(q, out, "data/heldout/images/stamp_caption-0000.png", "Describe the picture."),
            answer(base, kModel, "data/heldout/images/stamp_caption-0000.png", "Describe the picture."));
}

INSTANTIATE_TEST_SUITE_P(
    Variants, QuantizeE2E,
    ::testing::Values(
        Variant{"lm_text", quant::Scope::kLanguageModel, true, false, quant::ExportFormat::kModelOpt, formats::Verdict::kLoads},
        Variant{"lm_images", quant::Scope::kLanguageModel, false, true, quant::ExportFormat::kModelOpt, formats::Verdict::kLoads},
        Variant{"vlm_images", quant::Scope::kVisionLanguage, false, true, quant::ExportFormat::kModelOpt, formats::Verdict::kFails},
        Variant{"vlm_images_ct", quant::Scope::kVisionLanguage, true, true, quant::ExportFormat::kCompressedTensors,
                formats::Verdict::kLoads}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
