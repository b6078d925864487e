// `vlq quantize MODEL OUT`: FP8 post-training quantization of a BF16 Qwen2.5-VL checkpoint — plan (scope,
// exclusions, shape pre-flight), max calibration on text and/or image+caption data on the CPU runtime,
// and the exact ModelOpt or compressed-tensors export, checked for the --for targets before it is renamed
// into place.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <thread>
#include <atomic>
#include <iostream>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/common_options.h"
#include "vlq/image/image_processor.h"
#include "vlq/core/error.h"
#include "vlq/engine/device_model.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/eval/auto_precision.h"
#include "vlq/eval/report.h"
#include "vlq/formats/check.h"
#include "vlq/formats/names.h"
#include "vlq/formats/convert.h"
#include "vlq/formats/export_stream.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/ops/fp8_weight.h"
#include "vlq/quant/act_scale.h"
#include "vlq/quant/calib_data.h"
#include "vlq/quant/calibrate.h"
#include "vlq/quant/calibrate_cuda.h"
#include "vlq/quant/export.h"

namespace {

namespace fs = std::filesystem;
using namespace vlq;

struct QuantizeArgs {
  std::string model, out, scope = "lm", format = "modelopt", kv_cache = "fp8", vision_kv = "none", unaligned = "keep", layout = "portable", image_backend = "torchvision";
  std::vector<std::string> exclude, targets;
  std::string calib_text, calib_images, save_calib, load_calib, modelopt_compat, act_scale = "max";
  std::string report, auto_tasks, device = "auto";
  bool auto_precision = false, json = false;
  double max_kl = 0, max_size_ratio = 0;  // 0 = not given
  std::int64_t auto_samples = 16, auto_limit = 0;
  std::size_t samples = 64;
  std::int64_t seq_len = 512;
  std::uint64_t seed = 0;
  bool force = false, quiet = false, pad = false;
  // Whether these were on the command line (their defaults are valid values, so they cannot say).
  bool max_size_ratio_given = false, auto_samples_given = false, auto_limit_given = false;
};

// Interrupt (Ctrl-C / SIGTERM): remove this run's temporary folders next to OUT ("<OUT>.tmp-*",
// "<OUT>.exact-*", created after the run started) and exit 130. OUT itself is only ever created by a
// final rename, so an interrupted run leaves nothing at OUT.
fs::path g_out;
fs::file_time_type g_started;
// The signal handler only records the signal (cleanup calls malloc and the filesystem, which are not
// async-signal-safe: running them inside the handler deadlocked when the signal hit a malloc). A watcher
// thread does the cleanup and exits.
std::atomic<int> g_signal{0};
extern "C" void on_interrupt(int sig) { g_signal.store(sig); }

void remove_temporaries_and_exit(int sig) {
  std::error_code ec;
  const std::string base = g_out.filename().string();
  for (const auto& e : fs::directory_iterator(g_out.parent_path().empty() ? "." : g_out.parent_path(), ec)) {
    const std::string n = e.path().filename().string();
    if ((n.rfind(base + ".tmp-", 0) == 0 || n.rfind(base + ".exact-", 0) == 0) && e.last_write_time(ec) >= g_started)
      fs::remove_all(e.path(), ec);
  }
  const char msg[] = "\n[vlq] interrupted: temporary output removed, nothing written at OUT\n";
  (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
  ::_exit(128 + sig);
}

void install_interrupt_watcher() {
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  std::thread([] {
    for (;;) {
      if (const int sig = g_signal.load()) remove_temporaries_and_exit(sig);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }).detach();
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

quant::QuantizeOptions options_of(const QuantizeArgs& a) {
  quant::QuantizeOptions opt;
  if (a.scope == "lm") opt.scope = quant::Scope::kLanguageModel;
  else if (a.scope == "vlm") opt.scope = quant::Scope::kVisionLanguage;
  else throw UsageError({"--scope", "unknown scope", "lm or vlm", a.scope, ""});
  if (a.format == "modelopt") opt.format = quant::ExportFormat::kModelOpt;
  else if (a.format == "compressed-tensors") opt.format = quant::ExportFormat::kCompressedTensors;
  else throw UsageError({"--format", "unknown export format", "modelopt or compressed-tensors", a.format, ""});
  if (a.kv_cache == "fp8") opt.kv_cache_fp8 = true;
  else if (a.kv_cache == "none") opt.kv_cache_fp8 = false;
  else throw UsageError({"--kv-cache", "unknown KV-cache mode", "fp8 or none", a.kv_cache, ""});
  if (a.vision_kv == "none") opt.vision_kv = quant::VisionKvScales::kNone;
  else if (a.vision_kv == "modelopt") opt.vision_kv = quant::VisionKvScales::kModelOpt;
  else throw UsageError({"--vision-kv-scales", "unknown value", "none or modelopt", a.vision_kv, ""});
  if (a.layout != "portable" && a.layout != "exact")
    throw UsageError({"--layout", "unknown layout", "portable or exact", a.layout, ""});
  // exact: the tools' bytes (ModelOpt / llm-compressor double rounding E4M3(BF16(W/s))); portable: one rounding.
  opt.weight_rounding = a.layout == "exact" ? ops::Fp8Rounding::kDouble : ops::Fp8Rounding::kSingle;
  if (!a.modelopt_compat.empty()) opt.modelopt_version_compat = a.modelopt_compat;
  opt.act_scale = quant::parse_act_scale(a.act_scale).name();
  opt.exclude = a.exclude;
  opt.pad = a.pad;
  if (a.unaligned == "keep") opt.unaligned_fp8 = false;
  else if (a.unaligned == "fp8") opt.unaligned_fp8 = true;
  else throw UsageError({"--unaligned", "unknown value", "keep or fp8", "'" + a.unaligned + "'",
                         "keep leaves Linears whose K or N is not a multiple of 16 in the source dtype (default)"});
  for (const std::string& t : a.targets) cli::require_profile("--for", t);  // refused here, before calibration runs
  opt.check_targets = a.targets;
  if (std::find(opt.check_targets.begin(), opt.check_targets.end(), "vlq") == opt.check_targets.end())
    opt.check_targets.push_back("vlq");
  opt.force = a.force;
  return opt;
}

// --load-calib, or max calibration of the model on the selected samples (progress bar on a terminal): on the
// CPU runtime, or layer-sequential on the GPU (--device cuda; `cuda_report` then says what it used).
quant::CalibrationStats calibration_of(const QuantizeArgs& a, const fs::path& model_dir, const quant::QuantPlan& plan,
                                       const std::vector<quant::CalibSample>& text_pool,
                                       const std::vector<quant::CalibSample>& image_pool, engine::Device device,
                                       std::optional<quant::CudaCalibrateReport>& cuda_report) {
  if (!a.load_calib.empty()) return quant::load_calibration_stats(a.load_calib);
  const std::vector<quant::CalibSample> samples = quant::select_calib_samples(text_pool, image_pool, a.samples, a.seed);
  if (samples.size() < a.samples && !a.quiet)
    std::cerr << fmt::format("[vlq] warning: --samples {} asked, the calibration data holds only {}\n", a.samples,
                             samples.size());
  const bool gpu = device == engine::Device::kCuda;
  if (!a.quiet)
    std::cerr << fmt::format("[vlq] calibrating on {} sample(s) ({} text, {} image+caption available), seq-len {}, {}\n",
                             samples.size(), text_pool.size(), image_pool.size(), a.seq_len,
                             gpu ? "layer-sequential on the GPU" : "CPU runtime");
  engine::BundleOptions bo;
  bo.image_backend = cli::parse_image_backend_option(a.image_backend);
  if (gpu) bo.decode_weights = quant::calibrate_cuda_weight_filter();  // decoder layers are streamed per layer
  const engine::ModelBundle bundle = engine::ModelBundle::load(model_dir, bo);
  if (!image_pool.empty() && !bundle.has_image_processor())
    throw ConfigError({(model_dir / "preprocessor_config.json").string(), "image calibration data given but the model has no image processor config",
                       "preprocessor_config.json", "none", "use --calib-text only, or add the base model's preprocessor_config.json"});
  quant::CalibrateOptions co;
  co.seq_len = a.seq_len;
  const auto* head = plan.find("lm_head");
  co.lm_head = head && head->quantize;
  const auto tc = std::chrono::steady_clock::now();
  const bool tty = isatty(STDERR_FILENO);
  if (!a.quiet && (tty || gpu))
    co.progress = [&, tty, gpu](std::size_t done, std::size_t total) {
      const int w = 30, filled = static_cast<int>(w * done / std::max<std::size_t>(total, 1));
      const double s = since(tc);
      const std::string eta = done ? fmt::format(", ETA {:.0f} s", s / double(done) * double(total - done)) : "";
      const std::string line = fmt::format("[vlq] calibrating [{}{}] {} {}/{}, {} samples, {:.1f} s{}", std::string(filled, '#'),
                                           std::string(w - filled, '.'), gpu ? "layer" : "sample", done, total,
                                           samples.size(), s, eta);
      if (tty) std::cerr << "\r" << line << (done == total ? "\n" : "") << std::flush;
      else if (done == total || done % 8 == 0) std::cerr << line << "\n";  // logs: a line every 8 layers
    };
  if (!gpu) return quant::calibrate(bundle.model(), bundle.prompt_builder(), samples, co);
  const io::Checkpoint ckpt = io::Checkpoint::open(model_dir);
  quant::CudaCalibrateReport r;
  quant::CalibrationStats st = quant::calibrate_cuda(bundle.model(), ckpt, bundle.prompt_builder(), samples, co, 0, &r);
  if (!a.quiet) {
    std::cerr << fmt::format("[vlq] GPU calibration: {} tokens in {} chunk(s); prompts {:.1f} s, vision {:.1f} s, language model "
                             "{:.1f} s (weights read {:.1f} s); peak GPU memory {:.2f} GB\n",
                             r.rows, r.chunks, r.prompt_seconds, r.vision_seconds, r.lm_seconds, r.weight_read_seconds,
                             r.peak_device_bytes / 1e9);
    if (r.residual_on_host)
      std::cerr << fmt::format("[vlq] note: the residual stream ({:.2f} GB) did not fit on the GPU and was kept in pinned "
                               "host memory (slower); fewer --samples or a shorter --seq-len keeps it on the GPU\n",
                               r.residual_bytes / 1e9);
  }
  cuda_report = r;
  return st;
}

// The portable ModelOpt layout: the ModelOpt export, then the one change that makes it load on vLLM 0.10 too
// (config.json's quantization_config also gets the `exclude_modules` / `kv_cache_quant_algo` keys 0.10 reads;
// the tensors are unchanged). Both steps write temporary folders; the targets are checked before the rename.
quant::ExportReport export_portable(const QuantizeArgs& a, const fs::path& model_dir, const fs::path& out_dir,
                                    const quant::QuantPlan& plan, const quant::CalibrationStats& stats,
                                    const quant::QuantizeOptions& opt) {
  quant::QuantizeOptions exact = opt;
  exact.check_targets = {"vlq"};
  exact.force = false;
  exact.fsync = false;  // a temporary folder, rewritten below; only the final output is synced
  const fs::path tmp1 = out_dir.parent_path() / (out_dir.filename().string() + ".exact-" + std::to_string(::getpid()));
  const fs::path tmp2 = out_dir.parent_path() / (out_dir.filename().string() + ".exact-" + std::to_string(::getpid()) + "-portable");
  std::error_code ec;
  fs::remove_all(tmp1, ec);
  fs::remove_all(tmp2, ec);
  try {
    quant::ExportReport rep = quant::export_quantized(model_dir, tmp1, plan, stats, exact);
    formats::ConvertOptions co;
    co.target = "vllm-0.10";
    co.vision = formats::VisionMode::kKeep;
    formats::convert_checkpoint(tmp1, tmp2, co);
    fs::remove_all(tmp1);
    rep.checks.clear();
    std::string failed;
    for (const std::string& t : opt.check_targets) {
      formats::Report r = formats::check_checkpoint(tmp2, t);
      if (formats::verdict_fails(r.verdict) || formats::predicts_wrong_output(r)) {
        std::string text = formats::report_to_text(r);
        for (std::size_t p = text.find(tmp2.string()); p != std::string::npos; p = text.find(tmp2.string(), p))
          text.replace(p, tmp2.string().size(), out_dir.string());
        failed += "\n" + text;
      }
      rep.checks.push_back(std::move(r));
    }
    if (!failed.empty())
      throw ConfigError({a.out, "the export would not load on a --for target (or would give wrong output there)", "loads",
                         "fails",
                         "nothing was written; drop that --for and run the `vlq convert` shown below on the export made "
                         "without it, or use --format compressed-tensors" + std::string(opt.scope == quant::Scope::kLanguageModel ? "" : " or --scope lm") +
                             ":" + failed});
    if (fs::exists(out_dir)) fs::remove_all(out_dir);  // --force (checked before)
    fs::rename(tmp2, out_dir);
    rep.out = out_dir;
    return rep;
  } catch (...) {
    fs::remove_all(tmp1, ec);
    fs::remove_all(tmp2, ec);
    throw;
  }
}

// --auto-precision: the whole-model FP8 candidate is exported to a temporary folder next to OUT (removed
// again; the interrupt watcher removes it too), loaded beside the reference, and the module groups to keep
// in BF16 are chosen by eval::choose_precision on the sensitivity data (--auto-tasks, else calibration samples).
eval::AutoPrecisionResult run_auto_precision(const QuantizeArgs& a, const fs::path& model_dir, const fs::path& out_dir,
                                             const quant::QuantPlan& plan, const quant::CalibrationStats& stats,
                                             const quant::QuantizeOptions& opt, const std::vector<quant::CalibSample>& text_pool,
                                             const std::vector<quant::CalibSample>& image_pool,
                                             const eval::AutoPrecisionOptions& apo) {
  const fs::path tmp = out_dir.parent_path() / (out_dir.filename().string() + ".exact-" + std::to_string(::getpid()) + "-auto");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  quant::QuantizeOptions c = opt;
  c.check_targets = {"vlq"};
  c.force = false;
  try {
    if (!a.quiet) std::cerr << "[vlq] auto-precision: exporting the all-FP8 candidate\n";
    quant::export_quantized(model_dir, tmp, plan, stats, c);
    engine::BundleOptions bo;
    bo.image_backend = cli::parse_image_backend_option(a.image_backend);
    const eval::EvalModel ref = eval::EvalModel::load(model_dir, "reference", bo);
    const eval::EvalModel cand = eval::EvalModel::load(tmp, "candidate", bo);
    std::vector<eval::EvalItem> items;
    std::vector<std::string> texts;
    if (!a.auto_tasks.empty()) {
      items = eval::evenly_spaced(eval::load_eval_items(a.auto_tasks), a.auto_limit);
    } else {
      eval::sensitivity_data_of(quant::select_calib_samples(text_pool, image_pool, static_cast<std::size_t>(a.auto_samples), a.seed),
                                items, texts);
    }
    if (!a.quiet)
      std::cerr << fmt::format("[vlq] auto-precision: sensitivity on {} task item(s), {} text(s)\n", items.size(), texts.size());
    eval::AutoPrecisionResult r = eval::choose_precision(ref, cand, items, texts, apo);
    fs::remove_all(tmp, ec);
    return r;
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

// The --report page of a finished export.
eval::ReportData report_of(const QuantizeArgs& a, const fs::path& model_dir, const fs::path& out_dir, const quant::QuantizeOptions& opt,
                           const quant::ExportReport& rep, const quant::CalibrationStats& stats,
                           const std::vector<quant::ActScaleChoice>& choices, const std::optional<eval::AutoPrecisionResult>& ap) {
  eval::ReportData d;
  d.title = "vlq quantize: " + a.out;
  d.facts = {{"model", a.model},
             {"output", a.out},
             {"scope", a.scope},
             {"format", a.format + " (layout " + a.layout + ")"},
             {"activation scales", opt.act_scale},
             {"KV cache", opt.kv_cache_fp8 ? "fp8" : "none"},
             {"calibration", fmt::format("{} samples, {} text tokens, {} image tokens", stats.samples, stats.text_tokens, stats.image_tokens)},
             {"Linears", fmt::format("{} FP8, {} kept", rep.quantized, rep.kept)},
             {"tensor bytes", fmt::format("{:.2f} MB -> {:.2f} MB ({:.3f} x)", rep.bytes_in / 1e6, rep.bytes_out / 1e6,
                                          rep.bytes_in ? double(rep.bytes_out) / double(rep.bytes_in) : 0.0)}};
  eval::read_checkpoint_for_report(out_dir, model_dir, d);
  std::map<std::string, const quant::ActScaleChoice*> by_module;
  for (const auto& c : choices) by_module[c.module] = &c;
  for (auto& l : d.linears) {
    const std::string canon(formats::module_of(formats::canonical_name(l.module + ".weight")));
    if (auto it = by_module.find(canon); it != by_module.end() && l.quantized) {
      l.max_amax = it->second->max_amax;
      l.amax = it->second->amax;  // exact (input_scale * 448 may differ in the last bit)
      if (stats.input_hist.count(canon)) l.clipped = it->second->clipped;
    }
  }
  d.checks = rep.checks;
  if (ap) {
    d.groups = ap->sensitivity;
    d.groups_note = fmt::format("Sensitivity measured by --auto-precision on {} positions: the reference with only this group in FP8.", ap->tokens);
    d.auto_precision = ap;
  }
  return d;
}

// Every flag and input file is checked here, before the checkpoint is opened, any model is loaded or
// calibration runs: values out of range, flags that would be ignored, unreadable inputs, an unusable OUT.
eval::AutoPrecisionOptions validate_quantize_args(const QuantizeArgs& a, const fs::path& model_dir, const fs::path& out_dir) {
  auto number = [](double v) { return fmt::format("{}", v); };
  if (a.samples == 0)
    throw UsageError({"--samples", "no calibration samples requested", "at least 1", "0", "e.g. --samples 64 (the default)"});
  if (a.seq_len < 1)
    throw UsageError({"--seq-len", "text samples must keep at least one token", "L >= 1 (tokens; default 512)",
                      std::to_string(a.seq_len), "e.g. --seq-len 512"});
  // Their values are checked even where they end up unused (--load-calib: no calibration runs); --device cuda
  // without a visible GPU is refused here, before any work.
  (void)cli::parse_device_option(a.device);
  (void)cli::parse_image_backend_option(a.image_backend);
  eval::AutoPrecisionOptions apo;
  if (a.auto_precision) {
    if (!(a.max_kl > 0) || !std::isfinite(a.max_kl))
      throw UsageError({"--auto-precision", "needs a finite KL budget", "--max-kl X (mean KL in nats, 0 < X < inf, e.g. 1e-4)",
                        a.max_kl == 0 ? "none" : number(a.max_kl), ""});
    if (a.max_size_ratio_given && !(a.max_size_ratio > 0 && a.max_size_ratio <= 1))
      throw UsageError({"--max-size-ratio", "the size budget must be a fraction of the BF16 size", "0 < R <= 1",
                        number(a.max_size_ratio), "leave --max-size-ratio out for no size budget"});
    if (a.load_calib.empty() ? false : a.auto_tasks.empty() && a.calib_text.empty() && a.calib_images.empty())
      throw UsageError({"--auto-precision", "no sensitivity data", "--auto-tasks FILE.jsonl or calibration data", "--load-calib only", ""});
    if (!a.auto_tasks.empty() && a.auto_samples_given)
      throw UsageError({"--auto-samples", "ignored beside --auto-tasks (the tasks are the sensitivity data)",
                        "--auto-tasks F [--auto-limit N] or --auto-samples N", "both",
                        "drop --auto-samples, or drop --auto-tasks to score calibration samples"});
    if (a.auto_tasks.empty() && a.auto_limit_given)
      throw UsageError({"--auto-limit", "only meaningful with --auto-tasks", "--auto-tasks F --auto-limit N",
                        "no --auto-tasks", "use --auto-samples N to limit the calibration samples scored"});
    if (a.auto_samples < 1)
      throw UsageError({"--auto-samples", "no calibration samples to score", "at least 1 (default 16)",
                        std::to_string(a.auto_samples), ""});
    if (a.auto_limit < 0)
      throw UsageError({"--auto-limit", "value out of range", ">= 0 (0 = all items)", std::to_string(a.auto_limit), ""});
    apo.max_kl = a.max_kl;
    if (a.max_size_ratio_given) apo.max_size_ratio = a.max_size_ratio;
    apo.eval.seq_len = a.seq_len;
    if (!a.quiet) apo.log = [](const std::string& s) { std::cerr << "[vlq] auto-precision: " << s << "\n"; };
  } else if (a.max_kl != 0 || a.max_size_ratio_given || !a.auto_tasks.empty() || a.auto_samples_given || a.auto_limit_given) {
    throw UsageError({a.max_kl != 0 ? "--max-kl" : a.max_size_ratio_given ? "--max-size-ratio" : !a.auto_tasks.empty() ? "--auto-tasks"
                      : a.auto_samples_given ? "--auto-samples" : "--auto-limit",
                      "only meaningful with --auto-precision", "--auto-precision --max-kl X", "no --auto-precision", ""});
  }
  if (a.load_calib.empty() && a.calib_text.empty() && a.calib_images.empty())
    throw UsageError({"vlq quantize", "no calibration data", "--calib-text FILE and/or --calib-images DIR|JSONL",
                      "neither", "e.g. --calib-text data/calib/text.jsonl --calib-images data/calib/images"});
  if (a.scope == "vlm" && a.calib_images.empty() && a.load_calib.empty())
    throw UsageError({"--scope vlm", "the vision tower needs image calibration data", "--calib-images DIR|JSONL",
                      "text only", "add --calib-images, or use --scope lm"});
  if (!a.save_calib.empty()) io::require_writable_file(a.save_calib, "--save-calib", "the calibration");
  if (!a.report.empty()) {
    io::require_writable_file(a.report, "--report", "the quantization");
    const fs::path rep = fs::weakly_canonical(fs::absolute(a.report)), in = fs::weakly_canonical(model_dir);
    if (std::mismatch(in.begin(), in.end(), rep.begin(), rep.end()).first == in.end())
      throw UsageError({a.report, "the --report file is inside the input model folder", "a path outside " + in.string(),
                        rep.string(), "inputs are never modified: write the report elsewhere, e.g. next to OUT"});
  }
  // Input files, then OUT (after the flags: an existing OUT is not reported before a bad flag).
  if (!fs::is_directory(model_dir))
    throw IoError({a.model, "model folder not found", "a BF16 Hugging Face checkpoint folder", "no such directory", ""});
  for (const auto& [flag, path] : {std::pair<const char*, const std::string&>{"--calib-text", a.calib_text},
                                   {"--calib-images", a.calib_images}, {"--load-calib", a.load_calib},
                                   {"--auto-tasks", a.auto_tasks}}) {
    std::error_code ec;
    if (!path.empty() && !fs::exists(path, ec))
      throw IoError({path, std::string("the ") + flag + " input does not exist", "an existing file or folder", "no such path",
                     "check the path"});
  }
  if (!a.auto_tasks.empty()) eval::load_eval_items(a.auto_tasks);  // malformed: now, not after the candidate export
  // OUT must not be the input or a folder containing it (--force would replace it). The writer checks this
  // too, but the portable layout stages under other names first, so check up front.
  io::require_new_output(out_dir, {model_dir}, a.force);
  return apo;
}

int run_quantize(const QuantizeArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const quant::QuantizeOptions opt = options_of(a);
  const fs::path model_dir = a.model, out_dir = fs::absolute(a.out).lexically_normal();
  g_out = out_dir;
  g_started = fs::file_time_type::clock::now() - std::chrono::seconds(1);
  install_interrupt_watcher();
  const eval::AutoPrecisionOptions apo = validate_quantize_args(a, model_dir, out_dir);

  // --device: where calibration runs (auto: the GPU when this build has CUDA and one is visible; cuda without a
  // visible GPU was refused by validate_quantize_args)
  const engine::Device device = a.load_calib.empty() ? cli::parse_device_option(a.device) : engine::Device::kCpu;

  // 1. plan (headers only): bad --exclude / scope errors before any compute
  const io::Checkpoint ckpt = io::Checkpoint::open(model_dir);
  const formats::ModelConfig cfg = formats::load_model_config(model_dir / "config.json");
  const quant::QuantPlan plan = quant::plan_quantization(ckpt, cfg, opt);
  const double t_plan = since(t0);

  // 2. calibration data, 3. calibrate
  std::vector<quant::CalibSample> text_pool, image_pool;
  if (!a.calib_text.empty()) text_pool = quant::load_calib_text(a.calib_text);
  if (!a.calib_images.empty()) image_pool = quant::load_calib_images(a.calib_images);
  if (opt.scope == quant::Scope::kVisionLanguage && image_pool.empty() && a.load_calib.empty())
    throw UsageError({"--scope vlm", "the vision tower needs image calibration data", "--calib-images DIR|JSONL",
                      "text only", "add --calib-images, or use --scope lm"});
  const auto t_cal0 = std::chrono::steady_clock::now();
  std::optional<quant::CudaCalibrateReport> cuda_report;
  const quant::CalibrationStats raw_stats = calibration_of(a, model_dir, plan, text_pool, image_pool, device, cuda_report);
  const double t_cal = since(t_cal0);
  if (!a.save_calib.empty()) quant::save_calibration_stats(raw_stats, a.save_calib);
  // activation scales: max (the calibrated amax) or the histogram's mse / percentile choice
  std::vector<quant::ActScaleChoice> choices;
  const quant::CalibrationStats stats = quant::apply_act_scale(raw_stats, quant::parse_act_scale(a.act_scale), &choices);

  // 3b. auto-precision: which module groups stay BF16 (the plan's exclusions, --kv-cache none)
  std::optional<eval::AutoPrecisionResult> ap;
  quant::QuantizeOptions fopt = opt;
  quant::QuantPlan fplan = plan;
  if (a.auto_precision) {
    ap = run_auto_precision(a, model_dir, out_dir, plan, stats, opt, text_pool, image_pool, apo);
    fopt.exclude.insert(fopt.exclude.end(), ap->exclude.begin(), ap->exclude.end());
    if (ap->kv_cache_bf16) fopt.kv_cache_fp8 = false;
    fopt.provenance_extra = nlohmann::json::object();
    fopt.provenance_extra["auto_precision"] = nlohmann::json::parse(ap->to_json(apo).dump());
    fplan = quant::plan_quantization(ckpt, cfg, fopt);
  }

  // 4. export (streams; checked before the rename)
  if (!a.quiet) std::cerr << "[vlq] writing " << a.out << " ...\n";
  const auto t_exp0 = std::chrono::steady_clock::now();
  const bool portable = fopt.format == quant::ExportFormat::kModelOpt && a.layout == "portable";
  const quant::ExportReport rep = portable ? export_portable(a, model_dir, out_dir, fplan, stats, fopt)
                                           : quant::export_quantized(model_dir, out_dir, fplan, stats, fopt);
  const double t_exp = since(t_exp0);
  if (!a.report.empty()) eval::write_report(a.report, report_of(a, model_dir, out_dir, fopt, rep, raw_stats, choices, ap));
  if (a.json) {
    nlohmann::ordered_json j;
    j["schema"] = "vlq.quantize/1";
    j["out"] = a.out;
    j["format"] = a.format;
    j["act_scale"] = fopt.act_scale;
    j["unaligned"] = fopt.unaligned_fp8 ? "fp8" : "keep";
    j["kv_cache"] = fopt.kv_cache_fp8 ? "fp8" : "none";
    j["quantized_linears"] = rep.quantized;
    j["kept_linears"] = rep.kept;
    j["tensor_bytes_in"] = rep.bytes_in;
    j["tensor_bytes_out"] = rep.bytes_out;
    j["checks"] = nlohmann::ordered_json::array();
    for (const auto& c : rep.checks) j["checks"].push_back({{"target", c.target}, {"verdict", formats::verdict_name(c.verdict)}});
    j["auto_precision"] = ap ? ap->to_json(apo) : nlohmann::ordered_json(nullptr);
    j["calibration"] = {{"device", a.load_calib.empty() ? engine::device_name(device) : "none (--load-calib)"},
                        {"samples", stats.samples}, {"text_tokens", stats.text_tokens}, {"image_tokens", stats.image_tokens},
                        {"seconds", t_cal}};
    if (cuda_report) {
      j["calibration"]["peak_gpu_bytes"] = cuda_report->peak_device_bytes;
      j["calibration"]["residual_on_host"] = cuda_report->residual_on_host;
    }
    j["export_seconds"] = t_exp;
    j["seconds"] = since(t0);
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    j["peak_host_rss_bytes"] = static_cast<std::int64_t>(ru.ru_maxrss) * 1024;
    if (!a.report.empty()) j["report"] = a.report;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  if (!a.quiet && ap) {
    std::string kept;
    for (const auto& g : ap->kept_bf16) kept += (kept.empty() ? "" : ", ") + g;
    std::cout << fmt::format("auto-precision: kept in BF16: {}; mean KL {:.3e} (budget {:.3g}) over {} positions; size {:.2f} MB = "
                             "{:.3f} x BF16{}\n",
                             kept.empty() ? "nothing" : kept, ap->kl_mean, a.max_kl, ap->tokens, rep.bytes_out / 1e6,
                             double(rep.bytes_out) / double(ap->reference_bytes),
                             a.max_size_ratio != 0 ? fmt::format(" (budget {:.3g})", a.max_size_ratio) : "");
  }
  if (!a.quiet) {
    std::cout << quant::format_summary(fplan, rep);
    if (portable)
      std::cout << "layout: ModelOpt 0.47 tensors (weights rounded once to the nearest E4M3 code of W/s) and "
                   "hf_quant_config.json; config.json also carries exclude_modules/kv_cache_quant_algo for vLLM 0.10 "
                   "(--layout exact for ModelOpt's bytes: its double-rounded weights and config.json)\n";
    if (opt.act_scale != "max") {
      int lowered = 0, n = 0;
      double clipped = 0;
      for (const auto& c : choices) {
        const quant::ModulePlan* mp = fplan.find(c.module);
        if (!mp || !mp->quantize) continue;  // observed but kept BF16 (Conv3d patch embedding, excluded Linears)
        ++n;
        lowered += c.amax < c.max_amax;
        clipped = std::max(clipped, c.clipped);
      }
      std::cout << fmt::format("activation scales: {} (amax below the calibrated max for {} of {} Linear inputs; "
                               "largest clipped fraction {:.3g} %)\n",
                               opt.act_scale, lowered, n, 100.0 * clipped);
    }
    std::cout << fmt::format("calibration: {} samples, {} text tokens, {} image tokens; plan {:.2f} s, calibration "
                             "{:.2f} s, total {:.2f} s\n",
                             stats.samples, stats.text_tokens, stats.image_tokens, t_plan, t_cal, since(t0));
  }
  return 0;
}

std::function<int()> setup_quantize(CLI::App& app) {
  app.description("FP8 post-training quantization of a BF16 Qwen2.5-VL checkpoint (ModelOpt or compressed-tensors export)");
  auto a = std::make_shared<QuantizeArgs>();
  app.add_option("MODEL", a->model, "Input checkpoint folder (BF16/F16/F32)")->required();
  app.add_option("OUT", a->out, "Output folder (must not exist unless --force)")->required();
  app.add_option("--scope", a->scope, "lm (default): language model only (ModelOpt hf_ptq default); vlm: language model + vision tower");
  app.add_option("--exclude", a->exclude, "Keep matching modules in BF16 (repeatable; wildcard, re:REGEX or module name)");
  app.add_option("--calib-text", a->calib_text, "Calibration text: plain text or JSONL with a \"text\" field");
  app.add_option("--calib-images", a->calib_images,
                 "Image+caption pairs: a folder of images with same-named .txt captions, or JSONL with image/text");
  cli::add_count_option(app, "--samples", a->samples, "Number of calibration samples (>= 1, default 64)");
  cli::add_count_option(app, "--seq-len", a->seq_len, "Text samples are cut to this many tokens (>= 1, default 512)");
  cli::add_count_option(app, "--seed", a->seed, "Sample selection seed (default 0)");
  cli::add_device_option(app, a->device, "Where calibration runs",
                         "cpu is the exact reference runtime, cuda calibrates layer-sequentially on the GPU (one decoder "
                         "layer in memory at a time)");
  app.add_option("--act-scale", a->act_scale,
                 "Activation (input_scale) method: max (default: calibrated max |x|), mse (least E4M3 squared error over "
                 "the |x| histogram, clipping included) or percentile[:P] (P-th percentile of |x|, default 99.99); "
                 "KV-cache and weight scales stay max");
  app.add_option("--kv-cache", a->kv_cache, "fp8 (calibrated k_scale/v_scale, default) or none");
  cli::add_image_backend_option(app, a->image_backend, "Image preprocessing of calibration images");
  app.add_option("--format", a->format, "modelopt (default) or compressed-tensors");
  app.add_option("--layout", a->layout,
                 "portable (default: weights rounded once to the nearest E4M3 code of W/s; ModelOpt output also "
                 "loads on vLLM 0.10, whose loader reads exclude_modules from config.json) or exact (the tools' bytes: "
                 "weights double-rounded E4M3(BF16(W/s)) as ModelOpt and llm-compressor write them, config.json as "
                 "ModelOpt 0.47 writes it; with --modelopt-compat, that release's)");
  app.add_option("--vision-kv-scales", a->vision_kv,
                 "none (default: loads on the most runtimes) or modelopt (write the orphan vision K/V scales as ModelOpt does)");
  app.add_option("--modelopt-compat", a->modelopt_compat, "Reproduce an older ModelOpt's layout, e.g. 0.35");
  app.add_option("--for", a->targets, "Runtime profile the export must load on (repeatable): " + formats::profile_id_list());
  app.add_flag("--pad", a->pad,
               "Pad Linears that do not fit FP8 GEMM alignment: not supported (a padded weight has a shape no loader "
               "accepts); such Linears are kept BF16 and named in the summary. Passing it is a usage error");
  app.add_option("--unaligned", a->unaligned,
                 "Linears whose K or N is not a multiple of 16 (Qwen2.5-VL's vision MLP, 3420 wide, quantized with "
                 "--scope vlm): keep (default: the source dtype, loads everywhere) or fp8 (quantized in their own shape "
                 "for vlq, whose GPU path zero-pads the vision MLP width to 16 on upload; vLLM's FP8 GEMMs need 16: "
                 "`vlq check --target vllm-0.10` warns)");
  app.add_option("--save-calib", a->save_calib, "Write the calibration amax statistics (JSON)");
  app.add_option("--load-calib", a->load_calib, "Use saved calibration statistics instead of calibrating");
  app.add_flag("--auto-precision", a->auto_precision,
               "Keep the most sensitive module groups in BF16 (greedy, whole-model KL re-measured) until the mean KL "
               "vs BF16 is <= --max-kl (and the size <= --max-size-ratio x BF16)");
  cli::add_number_option(app, "--max-kl", a->max_kl, "Auto-precision KL budget: mean KL(P_BF16 || P_FP8) per position, nats (finite, > 0)");
  CLI::Option* ratio = cli::add_number_option(app, "--max-size-ratio", a->max_size_ratio,
                                              "Auto-precision size budget: tensor bytes / BF16's (0 < R <= 1; default: no size budget)");
  app.add_option("--auto-tasks", a->auto_tasks, "Auto-precision sensitivity data: task JSONL (default: calibration samples)");
  CLI::Option* limit = cli::add_count_option(app, "--auto-limit", a->auto_limit,
                                           "Use an evenly spaced subset of this many --auto-tasks items (0 = all, the default)");
  CLI::Option* asamples = cli::add_count_option(app, "--auto-samples", a->auto_samples,
                                              "Calibration samples scored by auto-precision when there is no --auto-tasks (>= 1, default 16)");
  app.add_option("--report", a->report, "Write a self-contained HTML report (amax, clipping, group KL, size, KV scales, checks)");
  app.add_flag("--json", a->json, "Print the result as JSON (schema vlq.quantize/1) instead of the summary");
  app.add_flag("--force", a->force, "Replace an existing OUT");
  app.add_flag("-q,--quiet", a->quiet, "No progress bar or summary");
  return [a, ratio, limit, asamples]() {
    a->max_size_ratio_given = ratio->count() > 0;
    a->auto_limit_given = limit->count() > 0;
    a->auto_samples_given = asamples->count() > 0;
    return run_quantize(*a);
  };
}

}  // namespace

VLQ_COMMAND("quantize", setup_quantize);
