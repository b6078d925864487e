// `vlq eval`: scores quantized checkpoints against their BF16 reference (KL, top-1 agreement, perplexity,
// greedy exact match, task accuracy, size) and, with --per-layer, each FP8 module group's share of the KL.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/common_options.h"
#include "vlq/core/error.h"
#include "vlq/eval/evaluate.h"
#include "vlq/eval/report.h"
#include "vlq/formats/check.h"
#include "vlq/formats/runtime_profile.h"
#include "vlq/image/image_processor.h"
#include "vlq/io/safetensors_writer.h"
#include "vlq/quant/calib_data.h"

namespace {

namespace fs = std::filesystem;
using namespace vlq;

struct EvalArgs {
  std::vector<std::string> models;
  std::string reference, tasks, text, data = "both", json_out, device = "auto", image_backend = "torchvision", report;
  int tensor_parallel = 1;
  std::int64_t limit = 0, max_new_tokens = 48, seq_len = 256, text_limit = 0;
  bool json = false, per_layer = false, quiet = false, no_generate = false;
};

int run_eval(const EvalArgs& a) {
  const bool tty = !a.quiet && isatty(STDERR_FILENO);
  if (a.limit < 0 || a.text_limit < 0)
    throw UsageError({a.limit < 0 ? "--limit" : "--text-limit", "value out of range", ">= 0 (0 = all)",
                      std::to_string(a.limit < 0 ? a.limit : a.text_limit), ""});
  if (a.per_layer && a.models.size() != 1)
    throw UsageError({"--per-layer", "needs exactly one --model", "1", std::to_string(a.models.size()), ""});
  if (!a.json_out.empty()) io::require_writable_file(a.json_out, "--json-out", "the evaluation");
  if (!a.report.empty()) io::require_writable_file(a.report, "--report", "the evaluation");
  eval::EvalOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.seq_len = a.seq_len;
  o.generation = !a.no_generate;
  if (a.data == "text") o.tasks = false;
  else if (a.data == "images") o.text = false;
  else if (a.data != "both") throw UsageError({"--data", "unknown data selection", "text, images or both", a.data, ""});
  std::vector<eval::EvalItem> items;
  std::vector<std::string> texts;
  if (o.tasks) {
    if (a.tasks.empty()) {
      if (a.data == "images")
        throw UsageError({"--data images", "no task file", "--tasks FILE.jsonl (e.g. data/heldout/heldout.jsonl)", "none", ""});
      o.tasks = false;
    } else {
      items = eval::evenly_spaced(eval::load_eval_items(a.tasks), a.limit);
    }
  }
  if (o.text) {
    if (a.text.empty()) {
      if (a.data == "text") throw UsageError({"--data text", "no text file", "--text FILE (plain text or JSONL)", "none", ""});
      o.text = false;
    } else {
      for (const auto& s : quant::load_calib_text(a.text)) texts.push_back(s.text);
      if (a.text_limit > 0 && static_cast<std::int64_t>(texts.size()) > a.text_limit) texts.resize(a.text_limit);
    }
  }
  if (!o.tasks && !o.text)
    throw UsageError({"vlq eval", "nothing to evaluate", "--tasks FILE.jsonl and/or --text FILE", "neither",
                      "e.g. --tasks data/heldout/heldout.jsonl --limit 100"});
  engine::BundleOptions bo;
  bo.image_backend = cli::parse_image_backend_option(a.image_backend);
  const engine::Device device = cli::parse_device_option(a.device);
  if (device == engine::Device::kCuda && a.per_layer)
    throw UsageError({"--per-layer", "per-layer attribution runs on the CPU path only", "--device cpu", "--device cuda",
                      "add --device cpu"});
  if (!a.quiet) std::cerr << "[vlq] loading " << a.reference << " and " << a.models.size() << " model(s)\n";
  const eval::EvalModel ref =
      eval::EvalModel::load(a.reference, fs::path(a.reference).filename().string() + " (ref)", bo, device, a.tensor_parallel);
  // An FP8 (or otherwise quantized) reference is allowed, but the figures then measure the distance to it, not what
  // quantization cost: said on stderr.
  if (ref.quantization != "BF16" && ref.quantization.find("FP8") != std::string::npos)
    std::cerr << "[vlq] warning: the reference " << a.reference << " is quantized (" << ref.quantization
              << "): KL, top-1 and exact match are measured against it, not against the BF16 model\n";
  std::vector<eval::EvalModel> ms;
  for (const auto& m : a.models) ms.push_back(eval::EvalModel::load(m, "", bo, device, a.tensor_parallel));
  std::vector<const eval::EvalModel*> ptrs;
  for (const auto& m : ms) ptrs.push_back(&m);
  if (tty)
    o.progress = [](std::size_t done, std::size_t total) {
      std::cerr << fmt::format("\r[vlq] evaluating {}/{}", done, total) << (done == total ? "\n" : "") << std::flush;
    };
  const auto scores = eval::evaluate(ref, ptrs, items, texts, o);
  nlohmann::ordered_json j;
  j["schema"] = "vlq.eval/1";
  j["reference"] = a.reference;
  j["task_items"] = items.size();
  j["text_samples"] = texts.size();
  j["models"] = nlohmann::ordered_json::array();
  for (const auto& s : scores) j["models"].push_back(s.to_json());
  std::vector<eval::GroupScore> groups;
  if (a.per_layer) {
    if (ms.size() != 1) throw UsageError({"--per-layer", "needs exactly one --model", "1", std::to_string(ms.size()), ""});
    eval::EvalOptions po = o;
    po.generation = false;
    if (tty)
      po.progress = [](std::size_t done, std::size_t total) {
        std::cerr << fmt::format("\r[vlq] per-layer {}/{} groups", done, total) << (done == total ? "\n" : "") << std::flush;
      };
    groups = eval::evaluate_per_layer(ref, ms[0], items, texts, po);
    j["per_layer"] = nlohmann::ordered_json::array();
    for (const auto& g : groups)
      j["per_layer"].push_back({{"group", g.group}, {"fp8_linears", g.fp8_linears}, {"logits", g.logits.to_json()}});
  }
  if (!a.json_out.empty()) io::write_text_file(a.json_out, j.dump(2) + "\n");
  if (!a.report.empty()) {
    // The page describes the first --model (its scales and sizes read from the checkpoint, every target checked);
    // the model table has them all.
    eval::ReportData d;
    d.title = "vlq eval: " + a.models[0];
    d.facts = {{"reference", a.reference}, {"model", a.models[0]},
               {"weights", ms[0].quantization},
               {"data", fmt::format("{} task item(s), {} text sample(s)", items.size(), texts.size())}};
    d.scores = scores;
    eval::read_checkpoint_for_report(a.models[0], a.reference, d);
    d.groups = groups;
    if (!groups.empty()) d.groups_note = "vlq eval --per-layer: the reference with only this group taken from the FP8 checkpoint.";
    for (const auto& p : formats::builtin_profiles()) d.checks.push_back(formats::check_checkpoint(a.models[0], p.id));
    eval::write_report(a.report, d);
  }
  if (a.json) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{} task item(s), {} text sample(s); KL = KL(P_ref || P_model) per next-token position (nats)\n",
                             items.size(), texts.size());
    std::cout << eval::format_scores(scores);
    if (!groups.empty()) std::cout << "\nper-layer attribution (" << ms[0].label << "):\n" << eval::format_group_scores(groups);
  }
  return 0;
}

std::function<int()> setup_eval(CLI::App& app) {
  app.description("Measure what quantization cost: KL, top-1 agreement, perplexity, exact match and task accuracy vs a reference");
  auto a = std::make_shared<EvalArgs>();
  app.add_option("--model", a->models, "Quantized checkpoint folder (repeatable: one table row each)")->required();
  app.add_option("--reference", a->reference, "The BF16 checkpoint the models were made from")->required();
  app.add_option("--tasks", a->tasks, "Task items JSONL (image questions with answers), e.g. data/heldout/heldout.jsonl");
  app.add_option("--text", a->text, "Held-out text (plain text or JSONL with \"text\")");
  app.add_option("--data", a->data, "text, images (task items) or both (default: whatever is given)");
  cli::add_count_option(app, "--limit", a->limit, "Evaluate an evenly spaced subset of this many task items (0 = all, the default)");
  cli::add_count_option(app, "--text-limit", a->text_limit, "Use at most this many text samples");
  cli::add_count_option(app, "--max-new-tokens", a->max_new_tokens, "Generation length per task item (default 48)");
  cli::add_count_option(app, "--seq-len", a->seq_len, "Text samples are cut to this many tokens (default 256)");
  app.add_flag("--no-generate", a->no_generate, "Skip greedy generation (no accuracy / exact match)");
  app.add_flag("--per-layer", a->per_layer, "Score each FP8 module group alone (vision blocks, merger, LM attention/MLP, KV cache)");
  app.add_flag("--json", a->json, "Print JSON (schema vlq.eval/1) instead of the table");
  cli::add_device_option(app, a->device);
  cli::add_count_option(app, "--tensor-parallel", a->tensor_parallel, "Shard each model over this many GPUs (CUDA; default 1)");
  cli::add_image_backend_option(app, a->image_backend);
  app.add_option("--json-out", a->json_out, "Also write the JSON to this file");
  app.add_option("--report", a->report,
                 "Write a self-contained HTML report of the first --model (amax, size, KV scales, per-group KL with --per-layer, check verdicts)");
  app.add_flag("-q,--quiet", a->quiet, "No progress output");
  return [a]() { return run_eval(*a); };
}

}  // namespace

VLQ_COMMAND("eval", setup_eval);
