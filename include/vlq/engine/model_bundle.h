// One model as a user runs it: the weights (model::Qwen2_5_VL), tokenizer, chat template, prompt builder
// (image-processor parameters) and generation defaults (generation_config.json), loaded together from one
// Hugging Face checkpoint folder. The one place that wires these up, for `vlq generate`, `vlq quantize`
// (calibration), `vlq eval`, bench/generate_bench and the server.
//
// Typical use (a server: load once, then any number of threads each with their own model::Session):
//
//   engine::BundleOptions bo;
//   bo.kv_cache = engine::parse_kv_cache_mode(flag_value, "--kv-cache");   // auto | fp8 | f32
//   const engine::ModelBundle bundle = engine::ModelBundle::load(dir, bo);
//   if (auto w = bundle.kv_cache_warning()) log(*w);
//   engine::ParsedMessages req = engine::parse_messages(request_json, mo, "<request>");
//   engine::Prompt prompt = bundle.build_prompt(req);                      // template + images → ids
//   engine::GenerateOptions go = bundle.generate_options(overrides);      // generation_config + request
//   engine::GenerateResult r = engine::generate(bundle.model(), prompt, go, on_token);
//
// Thread safety: thread-compatible and immutable after load(). Every const method may be called from
// several threads at once (the tokenizer's word cache is internally locked; template rendering, prompt
// building and model::Qwen2_5_VL::prefill/decode keep their state in locals or in the caller's Session).
// A ModelBundle is movable (the parts live behind one heap allocation, so prompt_builder()'s pointers stay
// valid across moves) and not copyable.
//
// Spec: transformers GenerationConfig / GenerationMixin defaults (do_sample false → greedy; eos_token_id
// from generation_config.json, else config.json), ../shared/docs/qwen2_5_vl.md §2 (image processor), §5
// (chat template).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/engine/generate.h"
#include "vlq/engine/messages.h"
#include "vlq/engine/prompt.h"
#include "vlq/image/image.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/ops/sampling.h"
#include "vlq/text/chat_template.h"
#include "vlq/text/tokenizer.h"

namespace vlq::engine {

// Parses a KV-cache mode flag: "auto" (FP8 when every layer of the checkpoint has k_scale/v_scale), "fp8",
// "f32" (also "none": no quantized cache). Throws UsageError naming `flag` for anything else.
model::KvCacheMode parse_kv_cache_mode(std::string_view value, const std::string& flag = "--kv-cache");

struct BundleOptions {
  model::KvCacheMode kv_cache = model::KvCacheMode::kAuto;
  // Which transformers image processor to reproduce (docs/image-preprocessing.md): unset = the default,
  // torchvision (what AutoProcessor picks); kPil = Qwen2VLImageProcessorPil / use_fast=False.
  std::optional<image::ResizeBackend> image_backend;
  // Decode only these weights (model::LoadOptions::decode_weights; empty = all). A bundle loaded with a
  // filter builds prompts but its model() must not run (layer-sequential GPU calibration).
  model::WeightFilter decode_weights;
};

// What generation_config.json (transformers GenerationConfig) sets, resolved to vlq's generation options.
struct GenerationDefaults {
  std::vector<std::int64_t> eos_ids;   // generation_config eos_token_id (int or list), else config.json's
  std::int64_t max_new_tokens = 128;   // generation_config max_new_tokens, else 128
  bool do_sample = false;              // generation_config do_sample (default false: greedy)
  // temperature / top_p / top_k: generation_config's when do_sample, else greedy (0 / 1 / 0);
  // repetition_penalty: generation_config's (applies to greedy too), else 1.
  ops::SamplingParams sampling;
};

// Per-request overrides of the defaults (unset = the default). Values are not range-checked here (the CLI
// and the server check their inputs); a temperature below 1e-5 means greedy (Qwen ships 1e-6).
struct GenerationOverrides {
  std::optional<std::int64_t> max_new_tokens;
  std::optional<double> temperature, top_p, repetition_penalty;
  std::optional<std::int64_t> top_k;
  std::uint64_t seed = 0;
  std::int64_t logits_last_k = 1;      // prompt positions whose logits generate() returns
};

class ModelBundle {
 public:
  // Loads DIR: tokenizer.json first (a missing tokenizer is reported before the weight load), the chat
  // template (chat_template.jinja / .json / tokenizer_config.json), then config + weights + the other
  // metadata files (model::Qwen2_5_VL::load). Throws IoError (DIR is no folder; unreadable files),
  // FormatError / ConfigError / TemplateError from the loaders (each naming the file), UsageError (options).
  static ModelBundle load(const std::filesystem::path& dir, const BundleOptions& options = {});
  // Assembles a bundle from parts already in memory (tests, in-memory quantized models). `dir` is only
  // reported (errors, dir()).
  static ModelBundle from_parts(std::filesystem::path dir, model::Qwen2_5_VL model, text::Tokenizer tokenizer,
                                text::ChatTemplate chat_template);

  ModelBundle(ModelBundle&&) noexcept;
  ModelBundle& operator=(ModelBundle&&) noexcept;
  ~ModelBundle();

  const std::filesystem::path& dir() const;
  const model::Qwen2_5_VL& model() const;
  const text::Tokenizer& tokenizer() const;
  const text::ChatTemplate& chat_template() const;
  // Points into this bundle (config, tokenizer, chat template) with the image-processor parameters of
  // preprocessor_config.json (the Qwen2.5-VL defaults when the model has none).
  const PromptBuilder& prompt_builder() const;
  const GenerationDefaults& generation_defaults() const;
  // Whether the folder has preprocessor_config.json (or processor_config.json's image_processor): without
  // it, prompts with images are refused.
  bool has_image_processor() const;
  // Seconds load() took (tokenizer + template + weights); 0 for from_parts.
  double load_seconds() const;

  // A warning line when the FP8 KV cache was asked for (BundleOptions::kv_cache kFp8) but the checkpoint
  // has k_scale/v_scale for only some layers (the others use 1.0, vLLM's default); nullopt otherwise.
  std::optional<std::string> kv_cache_warning() const;

  // Decodes the request's images in order (load_image_source) and checks each against the image
  // processor's size rules, naming the image (path, or its origin such as "<request>: messages[0].content[1]").
  // Throws ConfigError when there are images but the model has no image processor config, FormatError /
  // IoError / UnsupportedError from decoding, FormatError (too small / too large / extreme aspect ratio).
  std::vector<image::RgbImage> load_images(const ParsedMessages& request) const;
  // messages (HF chat format, see messages.h) + their decoded images → Prompt (PromptBuilder::build).
  Prompt build_prompt(const nlohmann::ordered_json& messages, std::span<const image::RgbImage> images,
                      bool add_generation_prompt = true, bool defer_pixels = false) const;
  // load_images + build_prompt. defer_pixels: see PromptBuilder::build (vlq generate --device cuda).
  Prompt build_prompt(const ParsedMessages& request, bool add_generation_prompt = true, bool defer_pixels = false) const;
  // Raw text, no template (PromptBuilder::build_raw).
  Prompt build_raw(const std::string& text) const;

  // generate() options: generation_defaults() with the overrides applied.
  GenerateOptions generate_options(const GenerationOverrides& overrides = {}) const;

 private:
  struct Parts;
  explicit ModelBundle(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> p_;
};

// Resolves generation_config.json (nullopt: absent) against config.json's eos ids; see GenerationDefaults.
GenerationDefaults generation_defaults_from(const std::optional<formats::GenerationConfig>& generation_config,
                                            const formats::ModelConfig& config);

}  // namespace vlq::engine
