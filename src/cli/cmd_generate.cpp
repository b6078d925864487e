// `vlq generate`: runs a Qwen2.5-VL checkpoint (BF16, FP8 or mixed) on the CPU reference path: image(s) +
// text or an OpenAI-style messages file in, streamed text out; optional safetensors dump of inputs/logits.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <array>
#include <map>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/common_options.h"
#include "vlq/core/error.h"
#include "vlq/engine/generate.h"
#include "vlq/engine/messages.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/image/image_processor.h"
#include "vlq/io/safetensors_writer.h"
#include "vlq/model/qwen2_5_vl.h"

namespace {

namespace fs = std::filesystem;
using namespace vlq;

struct GenerateArgs {
  std::string model, prompt, messages, system, dump, kv_cache = "auto", device = "auto", image_backend = "torchvision";
  int tensor_parallel = 1;
  std::vector<std::string> images;
  std::int64_t max_new_tokens = -1, dump_last = 1, top_k = -1;
  double temperature = -1, top_p = -1, repetition_penalty = -1;
  std::uint64_t seed = 0;
  bool quiet = false, raw = false, dump_intermediates = false;
};

// Collects the named intermediates of the prefill (vision.patch_embed, vision.block.{i}, vision.merger,
// lm.embeds, lm.layer.{l}, lm.norm) for --dump-intermediates.
struct IntermediateDump : model::ForwardObserver {
  std::map<std::string, std::pair<std::vector<float>, std::array<std::int64_t, 2>>> tensors;
  bool active = true;
  bool wants_tensors() const override { return active; }
  void on_tensor(const std::string& name, const float* d, std::int64_t r, std::int64_t c) override {
    tensors[name] = {std::vector<float>(d, d + r * c), {r, c}};
  }
};

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

// --dump: the prompt's inputs, logits, output ids and (--dump-intermediates) named intermediates.
void write_dump(const GenerateArgs& a, const engine::Prompt& prompt, const engine::GenerateResult& r,
                const IntermediateDump& inter) {
  std::vector<std::int64_t> ids(prompt.ids.begin(), prompt.ids.end()), out(r.output_ids.begin(), r.output_ids.end());
  std::vector<std::int64_t> grid;
  for (const auto& g : prompt.images.grid_thw) grid.insert(grid.end(), g.begin(), g.end());
  std::vector<io::TensorData> t;
  t.push_back({{"input_ids", DType::I64, {static_cast<std::int64_t>(ids.size())}}, bytes_of(ids)});
  if (prompt.images.n_patches > 0) {
    t.push_back({{"pixel_values", DType::F32, {prompt.images.n_patches, prompt.images.patch_dim}},
                 bytes_of(prompt.images.pixel_values)});
    t.push_back({{"image_grid_thw", DType::I64, {static_cast<std::int64_t>(prompt.images.grid_thw.size()), 3}},
                 bytes_of(grid)});
  }
  t.push_back({{"logits", DType::F32, {r.prompt_logits.rows, r.prompt_logits.cols}}, bytes_of(r.prompt_logits.data)});
  t.push_back({{"output_ids", DType::I64, {static_cast<std::int64_t>(out.size())}}, bytes_of(out)});
  for (const auto& [name, v] : inter.tensors)
    t.push_back({{name, DType::F32, {v.second[0], v.second[1]}}, bytes_of(v.first)});
  io::write_safetensors_file(a.dump, t, {{"model", a.model}}, true);
}

int run_generate(const GenerateArgs& a, bool has_system) {
  engine::BundleOptions bo;
  bo.kv_cache = engine::parse_kv_cache_mode(a.kv_cache);
  bo.image_backend = cli::parse_image_backend_option(a.image_backend);
  const engine::Device device = cli::parse_device_option(a.device);
  if (device == engine::Device::kCuda && (a.dump_intermediates))
    throw UsageError({"--dump-intermediates", "named intermediates are recorded on the CPU path only", "--device cpu",
                      "--device cuda", "add --device cpu"});
  const engine::ModelBundle bundle = engine::ModelBundle::load(a.model, bo);
  const model::Qwen2_5_VL& m = bundle.model();
  if (auto w = bundle.kv_cache_warning()) std::cerr << "[vlq] warning: " << *w << "\n";

  engine::MessageOptions mo;
  mo.base_dir = fs::current_path();
  const engine::ParsedMessages pm =
      !a.messages.empty()
          ? engine::load_messages_file(a.messages, mo)
          : engine::build_prompt_messages(a.prompt, a.images, has_system ? std::optional<std::string>(a.system) : std::nullopt, mo);
  // On the GPU the images are resized, normalised and patchified there (same pixels); --dump needs the f32 rows.
  const engine::Prompt prompt = bundle.build_prompt(pm, true, device == engine::Device::kCuda && a.dump.empty());

  engine::GenerationOverrides ov;
  if (a.max_new_tokens >= 0) ov.max_new_tokens = a.max_new_tokens;
  if (a.temperature >= 0) ov.temperature = a.temperature;
  if (a.top_p >= 0) ov.top_p = a.top_p;
  if (a.top_k >= 0) ov.top_k = a.top_k;
  if (a.repetition_penalty >= 0) ov.repetition_penalty = a.repetition_penalty;
  ov.seed = a.seed;
  ov.logits_last_k = a.dump_last;
  const engine::GenerateOptions go = bundle.generate_options(ov);

  text::StreamDecoder dec(bundle.tokenizer(), true);
  IntermediateDump inter;
  bool first = true;
  const auto runner = engine::DeviceModel::create(m, device, a.tensor_parallel);
  const auto r = engine::generate(
      *runner, prompt, go,
      [&](std::int32_t id) {
        if (first) inter.active = false;  // prefill done: keep the prompt's intermediates only
        first = false;
        std::cout << dec.push(id) << std::flush;
      },
      a.dump_intermediates ? &inter : nullptr);
  std::cout << dec.finish() << std::endl;

  if (!a.dump.empty()) write_dump(a, prompt, r, inter);
  if (!a.quiet) {
    const double tps = r.decode_seconds > 0 && r.output_ids.size() > 1 ? (r.output_ids.size() - 1) / r.decode_seconds : 0;
    std::cerr << fmt::format(
        "[vlq] {} prompt tokens ({} image tokens), {} new{}; load {:.2f} s, prefill {:.3f} s ({:.1f} tok/s), "
        "decode {:.1f} tok/s; KV cache {}; device {}\n",
        r.prompt_tokens, prompt.image_tokens, r.output_ids.size(), r.stopped_at_eos ? " (stopped at EOS)" : "",
        bundle.load_seconds(),
        r.prefill_seconds, r.prefill_seconds > 0 ? r.prompt_tokens / r.prefill_seconds : 0.0, tps,
        m.fp8_kv_cache() ? "FP8 E4M3" : device == engine::Device::kCuda ? "BF16" : "f32", engine::device_name(device));
  }
  return 0;
}

std::function<int()> setup_generate(CLI::App& app) {
  app.description("Generate text from image(s) + a prompt (or a messages file) on the CPU reference path or the GPU (--device)");
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("--model", a->model, "Model folder (Hugging Face checkpoint: BF16, FP8 or mixed)")->required();
  auto* prompt = app.add_option("--prompt", a->prompt, "User text");
  app.add_option("--image", a->images, "Image file (repeatable; placed before the text)");
  auto* messages = app.add_option("--messages", a->messages,
                                  "OpenAI chat messages JSON file (content parts text / image_url with a path, file:// "
                                  "or data: URL)");
  prompt->excludes(messages);
  messages->excludes(prompt);
  auto* system = app.add_option("--system", a->system, "System prompt (default: the template's)");
  CLI::Option* max_new_opt = cli::add_count_option(app, "--max-new-tokens", a->max_new_tokens, "Most tokens to generate (default: generation_config or 128)");
  CLI::Option* temp_opt = cli::add_number_option(app, "--temperature", a->temperature, "0 = greedy (default: generation_config)");
  cli::add_number_option(app, "--top-p", a->top_p, "Nucleus sampling mass");
  cli::add_count_option(app, "--top-k", a->top_k, "Top-k sampling (0 = off)");
  cli::add_number_option(app, "--repetition-penalty", a->repetition_penalty, "HF repetition penalty (default: generation_config or 1)");
  cli::add_count_option(app, "--seed", a->seed, "Sampling seed");
  cli::add_device_option(app, a->device);
  cli::add_count_option(app, "--tensor-parallel", a->tensor_parallel, "Shard the model over this many GPUs (CUDA; default 1)");
  cli::add_image_backend_option(app, a->image_backend);
  app.add_option("--kv-cache", a->kv_cache, "KV cache: auto (FP8 when the checkpoint has k/v scales), fp8, f32");
  app.add_option("--dump", a->dump, "Write input_ids, pixel_values, image_grid_thw, logits, output_ids to this safetensors file");
  cli::add_count_option(app, "--dump-last", a->dump_last, "Prompt positions whose logits --dump writes (default 1)");
  app.add_flag("--dump-intermediates", a->dump_intermediates,
               "--dump also writes the prompt's named intermediates: vision.patch_embed, vision.block.{i} (window "
               "order), vision.merger, lm.embeds, lm.layer.{l}, lm.norm (the names of the HF golden files)");
  app.add_flag("-q,--quiet", a->quiet, "No timing line on stderr");
  return [a, prompt, messages, system, max_new_opt, temp_opt]() {
    auto bad = [](const char* opt, const std::string& want, const std::string& got) {
      throw UsageError({opt, "value out of range", want, got, ""});
    };
    // -1 is the "not given" default of both; given explicitly it is out of range like any negative value.
    if ((temp_opt->count() > 0 || a->temperature != -1) && a->temperature < 0) bad("--temperature", ">= 0 (0 = greedy)", fmt::format("{}", a->temperature));
    if (a->top_p != -1 && !(a->top_p > 0 && a->top_p <= 1)) bad("--top-p", "in (0, 1]", fmt::format("{}", a->top_p));
    if (a->top_k < -1) bad("--top-k", ">= 0 (0 = off)", std::to_string(a->top_k));
    if (a->repetition_penalty != -1 && !(a->repetition_penalty > 0))
      bad("--repetition-penalty", "> 0", fmt::format("{}", a->repetition_penalty));
    if ((max_new_opt->count() > 0 || a->max_new_tokens != -1) && a->max_new_tokens < 0) bad("--max-new-tokens", ">= 0", std::to_string(a->max_new_tokens));
    if (a->dump_last < 1) bad("--dump-last", ">= 1", std::to_string(a->dump_last));
    if (!a->dump.empty()) io::require_writable_file(a->dump, "--dump", "generating");
    if (prompt->count() == 0 && messages->count() == 0)
      throw UsageError({"vlq generate", a->images.empty() ? "no input" : "--image needs --prompt",
                        "--prompt TEXT [--image PATH ...] or --messages FILE.json",
                        a->images.empty() ? "neither" : "--image without --prompt", ""});
    if (messages->count() && (!a->images.empty() || system->count()))
      throw UsageError({"vlq generate", "--image/--system go with --prompt", "--messages alone", "both", ""});
    return run_generate(*a, system->count() > 0);
  };
}

}  // namespace

VLQ_COMMAND("generate", setup_generate);
