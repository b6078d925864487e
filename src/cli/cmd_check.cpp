// `vlq check DIR --target T [--json]`: predicts whether runtime T loads an FP8 checkpoint (exit 0 loads,
// 1 loads with warnings, 2 fails, 3 invalid checkpoint); `vlq check --matrix DIR...` writes the
// checkpoint × target compatibility table (docs/compatibility.md).
#include <iostream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/common_options.h"
#include "vlq/core/error.h"
#include "vlq/formats/check.h"
#include "vlq/io/safetensors_writer.h"

namespace {

struct CheckArgs {
  std::vector<std::string> paths;
  std::string target;
  bool json = false;
  std::string base;
  bool matrix = false;
  std::string targets_csv;
  std::string output;
  bool list = false;
};

int run_check(const CheckArgs& a) {
  namespace F = vlq::formats;
  if (a.list) {
    for (const auto& p : F::builtin_profiles()) std::cout << p.id << "\t" << p.title << "\n";
    return 0;
  }
  F::CheckOptions opts;
  if (!a.base.empty()) opts.base_model = a.base;
  opts.model_audit = vlq::cli::model_audit;  // config.json vs the tensors, as vlq's loader (and every runtime) sees them
  if (a.paths.empty())
    throw vlq::UsageError({"vlq check", "no checkpoint given", "DIR", "nothing", "vlq check DIR --target T"});
  if (a.matrix) {
    std::vector<std::string> targets;
    for (std::size_t b = 0; b < a.targets_csv.size();) {
      std::size_t e = a.targets_csv.find(',', b);
      if (e == std::string::npos) e = a.targets_csv.size();
      if (e > b) targets.push_back(a.targets_csv.substr(b, e - b));
      b = e + 1;
    }
    if (targets.empty())
      for (const auto& p : F::builtin_profiles()) targets.push_back(p.id);
    for (const auto& t : targets) F::find_profile(t);  // UsageError for unknown ids
    std::vector<std::filesystem::path> dirs(a.paths.begin(), a.paths.end());
    std::vector<std::string> invalid;
    std::string md = F::compatibility_matrix_markdown(dirs, targets, opts, &invalid);
    if (a.output.empty()) std::cout << md;
    else vlq::io::write_text_file(a.output, md);
    std::cout.flush();
    // An invalid or unreadable checkpoint (e.g. a mistyped folder) exits 3, as `vlq check` of it does.
    for (const auto& line : invalid) std::cerr << "vlq: error: check --matrix: invalid checkpoint " << line << "\n";
    return invalid.empty() ? 0 : 3;
  }
  if (a.target.empty())
    throw vlq::UsageError({"vlq check", "--target is required", "one of " + F::profile_id_list(), "nothing", "vlq check DIR --target vllm-0.10"});
  if (a.paths.size() != 1)
    throw vlq::UsageError({"vlq check", "one checkpoint per call (use --matrix for several)", "1",
                           std::to_string(a.paths.size()), "vlq check --matrix DIR... for a table"});
  F::Report r = F::check_checkpoint(a.paths.front(), a.target, opts);
  if (a.json) std::cout << F::report_to_json(r).dump(2) << "\n";
  else std::cout << F::report_to_text(r);
  std::cout.flush();
  return F::verdict_exit_code(r.verdict);
}

}  // namespace

VLQ_COMMAND("check", ([](CLI::App& app) -> std::function<int()> {
  auto args = std::make_shared<CheckArgs>();
  app.description(
      "Predict whether a runtime loads an FP8 checkpoint (ModelOpt or compressed-tensors) and whether it "
      "computes correctly. Exit code: 0 loads, 1 loads with warnings, 2 fails, 3 the checkpoint itself is "
      "invalid. Targets: " + vlq::formats::profile_id_list() + " (--list-targets).");
  app.add_option("path", args->paths, "checkpoint folder (several with --matrix)");
  app.add_option("--target,-t", args->target, "runtime profile, e.g. vllm-0.10");
  app.add_flag("--json", args->json, "print the vlq.check/1 JSON report (docs/check-json.md)");
  app.add_option("--base", args->base, "source model folder, to compare tokenizer special tokens (F25)");
  app.add_flag("--matrix", args->matrix,
               "check every DIR against every target and print a Markdown table (exit 3 when a DIR is invalid or unreadable)");
  app.add_option("--targets", args->targets_csv, "targets of --matrix, comma-separated (default: all)");
  app.add_option("--output,-o", args->output, "with --matrix: write the table to this file");
  app.add_flag("--list-targets", args->list, "list the runtime profiles");
  return [args] { return run_check(*args); };
}));
