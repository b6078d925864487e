// ModelBundle: model + tokenizer + chat template + prompt builder + generation defaults loaded from one
// folder (see vlq/engine/model_bundle.h).
#include "vlq/engine/model_bundle.h"

#include <chrono>

#include <fmt/format.h>

#include "vlq/core/error.h"
#include "vlq/image/image_processor.h"

namespace vlq::engine {

namespace fs = std::filesystem;

model::KvCacheMode parse_kv_cache_mode(std::string_view value, const std::string& flag) {
  if (value == "auto") return model::KvCacheMode::kAuto;
  if (value == "fp8") return model::KvCacheMode::kFp8;
  if (value == "f32" || value == "none") return model::KvCacheMode::kF32;
  throw UsageError({flag, "unknown KV-cache mode", "auto, fp8 or f32", std::string(value), ""});
}

GenerationDefaults generation_defaults_from(const std::optional<formats::GenerationConfig>& generation_config,
                                            const formats::ModelConfig& config) {
  const formats::GenerationConfig gc = generation_config.value_or(formats::GenerationConfig{});
  GenerationDefaults d;
  d.eos_ids = !gc.eos_token_ids.empty() ? gc.eos_token_ids : config.tokens.eos_token_ids;
  d.max_new_tokens = gc.max_new_tokens.value_or(128);
  d.do_sample = gc.do_sample.value_or(false);
  d.sampling.temperature = d.do_sample ? gc.temperature.value_or(1.0) : 0.0;
  d.sampling.top_p = d.do_sample ? gc.top_p.value_or(1.0) : 1.0;
  d.sampling.top_k = d.do_sample ? gc.top_k.value_or(0) : 0;
  d.sampling.repetition_penalty = gc.repetition_penalty.value_or(1.0);
  return d;
}

struct ModelBundle::Parts {
  fs::path dir;
  text::Tokenizer tokenizer;
  text::ChatTemplate chat_template;
  model::Qwen2_5_VL model;
  model::KvCacheMode kv_cache = model::KvCacheMode::kAuto;
  PromptBuilder prompts;  // points at the members above
  GenerationDefaults defaults;
  double load_seconds = 0;

  Parts(fs::path d, text::Tokenizer t, text::ChatTemplate c, model::Qwen2_5_VL m)
      : dir(std::move(d)), tokenizer(std::move(t)), chat_template(std::move(c)), model(std::move(m)) {
    prompts.config = &model.config();
    prompts.tokenizer = &tokenizer;
    prompts.chat_template = &chat_template;
    if (model.files().preprocessor)
      prompts.image_params = image::image_processor_params_from_config(*model.files().preprocessor);
    defaults = generation_defaults_from(model.files().generation, model.config());
  }
};

ModelBundle::ModelBundle(std::unique_ptr<Parts> parts) : p_(std::move(parts)) {}
ModelBundle::ModelBundle(ModelBundle&&) noexcept = default;
ModelBundle& ModelBundle::operator=(ModelBundle&&) noexcept = default;
ModelBundle::~ModelBundle() = default;

ModelBundle ModelBundle::load(const fs::path& dir, const BundleOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!fs::is_directory(dir))
    throw IoError({dir.string(), "model folder not found", "a Hugging Face checkpoint folder", "no such directory", ""});
  // Tokenizer first: a missing tokenizer is reported before the (possibly long) weight load.
  text::Tokenizer tok = text::Tokenizer::from_model_dir(dir);
  text::ChatTemplate tmpl = text::ChatTemplate::from_model_dir(dir);
  model::LoadOptions lo;
  lo.kv_cache = options.kv_cache;
  lo.decode_weights = options.decode_weights;
  model::Qwen2_5_VL m = model::Qwen2_5_VL::load(dir, lo);
  auto parts = std::make_unique<Parts>(dir, std::move(tok), std::move(tmpl), std::move(m));
  parts->kv_cache = options.kv_cache;
  if (options.image_backend) parts->prompts.image_params.backend = *options.image_backend;
  parts->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ModelBundle(std::move(parts));
}

ModelBundle ModelBundle::from_parts(fs::path dir, model::Qwen2_5_VL model, text::Tokenizer tokenizer,
                                    text::ChatTemplate chat_template) {
  return ModelBundle(
      std::make_unique<Parts>(std::move(dir), std::move(tokenizer), std::move(chat_template), std::move(model)));
}

const fs::path& ModelBundle::dir() const { return p_->dir; }
const model::Qwen2_5_VL& ModelBundle::model() const { return p_->model; }
const text::Tokenizer& ModelBundle::tokenizer() const { return p_->tokenizer; }
const text::ChatTemplate& ModelBundle::chat_template() const { return p_->chat_template; }
const PromptBuilder& ModelBundle::prompt_builder() const { return p_->prompts; }
const GenerationDefaults& ModelBundle::generation_defaults() const { return p_->defaults; }
bool ModelBundle::has_image_processor() const { return p_->model.files().preprocessor.has_value(); }
double ModelBundle::load_seconds() const { return p_->load_seconds; }

std::optional<std::string> ModelBundle::kv_cache_warning() const {
  const auto& w = p_->model.weights();
  const auto layers = static_cast<std::int64_t>(w.lm.layers.size());
  if (p_->kv_cache != model::KvCacheMode::kFp8 || w.report.kv_scale_layers >= layers) return std::nullopt;
  return fmt::format(
      "--kv-cache fp8 but the checkpoint has k_scale/v_scale for {} of {} layers; the others use scale 1.0 "
      "(vLLM's default), which may clip or lose precision. Calibrated scales come from `vlq quantize --kv-cache fp8`.",
      w.report.kv_scale_layers, layers);
}

std::vector<image::RgbImage> ModelBundle::load_images(const ParsedMessages& request) const {
  std::vector<image::RgbImage> imgs;
  if (!request.images.empty() && !has_image_processor())
    throw ConfigError({(p_->dir / "preprocessor_config.json").string(), "image given but the model has no image processor config",
                       "preprocessor_config.json", "none", "copy preprocessor_config.json from the base model"});
  const image::ImageProcessorParams& ip = p_->prompts.image_params;
  for (const auto& src : request.images) {
    imgs.push_back(load_image_source(src));
    // Size checks now, naming the image (the processor's own errors only know its size).
    try {
      (void)image::smart_resize(imgs.back().height, imgs.back().width, ip.patch_size * ip.merge_size, ip.min_pixels,
                                ip.max_pixels, ip.reject_smaller_than_factor);
    } catch (const Error& e) {
      auto info = e.info();
      const std::string what = src.kind != ImageSource::Kind::kPath ? src.origin
                               : src.origin.empty()                 ? src.path.string()
                                                                    : src.origin + ": " + src.path.string();
      info.where = what + ": " + info.where;
      throw FormatError(info);
    }
  }
  return imgs;
}

Prompt ModelBundle::build_prompt(const nlohmann::ordered_json& messages, std::span<const image::RgbImage> images,
                                 bool add_generation_prompt, bool defer_pixels) const {
  return p_->prompts.build(messages, images, add_generation_prompt, defer_pixels);
}

Prompt ModelBundle::build_prompt(const ParsedMessages& request, bool add_generation_prompt, bool defer_pixels) const {
  const std::vector<image::RgbImage> imgs = load_images(request);
  return build_prompt(request.messages, imgs, add_generation_prompt, defer_pixels);
}

Prompt ModelBundle::build_raw(const std::string& text) const { return p_->prompts.build_raw(text); }

GenerateOptions ModelBundle::generate_options(const GenerationOverrides& o) const {
  const GenerationDefaults& d = p_->defaults;
  GenerateOptions go;
  go.eos_ids = d.eos_ids;
  go.max_new_tokens = o.max_new_tokens.value_or(d.max_new_tokens);
  go.sampling = d.sampling;
  double temp = o.temperature.value_or(d.sampling.temperature);
  if (temp < 1e-5) temp = 0.0;  // Qwen ships temperature 1e-6: the same as greedy
  go.sampling.temperature = temp;
  if (o.top_p) go.sampling.top_p = *o.top_p;
  if (o.top_k) go.sampling.top_k = *o.top_k;
  if (o.repetition_penalty) go.sampling.repetition_penalty = *o.repetition_penalty;
  go.seed = o.seed;
  go.logits_last_k = std::max<std::int64_t>(1, o.logits_last_k);
  return go;
}

}  // namespace vlq::engine
