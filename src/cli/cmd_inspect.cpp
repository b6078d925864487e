// `vlq inspect DIR [--json]`: what a Qwen2.5-VL checkpoint contains (sizes, components, dtypes, naming,
// quantization format, scale tensors, anomalies), from its JSON files and safetensors headers only.
#include <filesystem>
#include <iostream>
#include <string>

#include "cli/command.h"
#include "cli/common_options.h"
#include "vlq/core/error.h"
#include "vlq/formats/checkpoint_summary.h"

namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
  bool no_scale_values = false;
  bool strict = false;
  std::size_t max_examples = 5;
};

int run_inspect(const InspectArgs& a) {
  vlq::formats::InspectOptions opts;
  opts.read_scale_values = !a.no_scale_values;
  opts.max_examples = a.max_examples;
  const auto summary = vlq::formats::summarize_checkpoint(a.path, opts);
  if (a.json) {
    std::cout << vlq::formats::summary_to_json(summary).dump(2) << "\n";
  } else {
    std::cout << vlq::formats::summary_to_table(summary);
  }
  std::cout.flush();
  if (!std::cout) return 74;  // EX_IOERR: e.g. stdout closed
  // No config.json: the summary is printed (the tensors are still worth seeing), but the checkpoint is invalid
  // exactly as `vlq check` says (exit 3).
  if (!summary.files.config) {
    const std::filesystem::path dir = std::filesystem::is_directory(a.path) ? std::filesystem::path(a.path)
                                                                             : std::filesystem::path(a.path).parent_path();
    std::cerr << "vlq: error: "
              << vlq::format_error_message({(dir / "config.json").string(), "the checkpoint has no config.json", "config.json",
                                            "none", "no runtime can build the model (vlq check says invalid); copy config.json "
                                            "from the model this checkpoint was made from"})
              << "\n";
    return 3;
  }
  return a.strict && summary.count_anomalies("error") > 0 ? 1 : 0;
}

}  // namespace

VLQ_COMMAND("inspect", ([](CLI::App& app) -> std::function<int()> {
  auto args = std::make_shared<InspectArgs>();
  app.description(
      "Summarise a Qwen2.5-VL Hugging Face checkpoint (folder or .safetensors file): architecture and sizes "
      "from config.json, parameters and bytes by component and dtype, naming generation, quantization "
      "format (ModelOpt / compressed-tensors), scale tensors and anomalies. Reads only JSON files and "
      "safetensors headers (plus the value of 1-element scale tensors). Exit code 0, or 1 with --strict "
      "when an error-level anomaly is found; 3 when the input cannot be read or has no config.json (as vlq check: invalid).");
  app.add_option("path", args->path, "checkpoint folder (or a .safetensors file)")->required();
  app.add_flag("--json", args->json, "print the vlq.inspect/1 JSON document (docs/inspect-json.md)");
  app.add_flag("--no-scale-values", args->no_scale_values,
               "do not read the values of 1-element scale tensors (headers only)");
  app.add_flag("--strict", args->strict, "exit with code 1 when an error-level anomaly is found");
  vlq::cli::add_count_option(app, "--max-examples", args->max_examples,
                             "example names listed per anomaly (0..1000000, default 5)", 1000000);
  return [args] { return run_inspect(*args); };
}));
