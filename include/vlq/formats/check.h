// `vlq check`: predicts whether a runtime (profile) loads an FP8 checkpoint, and how it computes:
// verdict loads | loads_with_warnings | fails (| invalid when the checkpoint itself is broken), with
// findings naming the tensor or module, the predicted runtime error, the numerical risk and the fix.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §6 (verdicts of Profiles A/B/C), §7.2; field-bug-classes.md
// (every L/C case). JSON schema "vlq.check/1": docs/check-json.md.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/formats/finding.h"
#include "vlq/formats/quant_layout.h"
#include "vlq/formats/runtime_profile.h"

namespace vlq::formats {

enum class Verdict { kLoads, kLoadsWithWarnings, kFails, kInvalid };
std::string_view verdict_name(Verdict v) noexcept;  // "loads", "loads_with_warnings", "fails", "invalid"
// Process exit code of `vlq check`: 0 loads, 1 loads with warnings, 2 fails, 3 invalid checkpoint.
int verdict_exit_code(Verdict v) noexcept;
// The verdict implied by the most severe finding.
Verdict verdict_of(const std::vector<Finding>& findings) noexcept;

struct CheckOptions {
  // The source (unquantized) model, for the tokenizer / special-token audit (F25). Without it the audit
  // compares with the released Qwen2.5-VL-Instruct token ids when the vocabulary is the real one.
  std::optional<std::filesystem::path> base_model;
  // A model-level audit of a checkpoint folder from a layer above this one (the CLI passes vlq's weight loader
  // run without decoding: config.json values and every tensor's name, shape and dtype against the config): an
  // empty string when the folder builds, else the problem list. A non-empty answer becomes a kInvalid finding
  // "config_tensor_mismatch" for every target (no runtime builds such a model). Null: not run.
  std::function<std::string(const std::filesystem::path& dir)> model_audit;
};

struct CheckSummary {
  std::string format;        // declared format ("modelopt", "compressed-tensors", "none", ...)
  std::string naming;        // naming generation
  std::vector<std::string> config_files;  // quantization config files present
  std::string config_read;   // what the target reads, e.g. "config.json quantization_config (ModelOpt)"
  std::string kv_cache;      // predicted KV-cache dtype and scale use
  int linears = 0, fp8_linears = 0, vision_fp8_linears = 0, kv_scales = 0;
};

struct Report {
  std::string checkpoint;  // folder
  std::string target;      // profile id
  std::string target_title;
  Verdict verdict = Verdict::kLoads;
  CheckSummary summary;
  std::vector<Finding> findings;  // ordered: most severe first, then audit order
  // The first finding of severity kError/kInvalid (nullptr if none).
  const Finding* first_failure() const;
  // Findings with this code.
  std::vector<const Finding*> with_code(std::string_view code) const;
};

// Checks an opened checkpoint against one profile. Never throws for checkpoint content (problems
// become findings); throws ConfigError only via build_quant_layout for an uninterpretable config.
Report check_view(const CheckpointView& view, const RuntimeProfile& target, const CheckOptions& opts = {});
// Opens `dir` and checks it. Errors opening the checkpoint (IoError, FormatError, ConfigError,
// UnsupportedError) become a report with verdict kInvalid and a finding of code "unreadable".
// Throws UsageError for an unknown target.
Report check_checkpoint(const std::filesystem::path& dir, std::string_view target, const CheckOptions& opts = {});

// Rendering. JSON follows schema "vlq.check/1" (docs/check-json.md).
nlohmann::json report_to_json(const Report& r);
std::string report_to_text(const Report& r);

// The compatibility matrix: every checkpoint × every target, as a Markdown table (one row per
// checkpoint: its layout summary; one column per target: verdict and the decisive finding). `invalid`, when
// given, receives one line per checkpoint whose verdict is invalid for some target (path: first invalid finding).
std::string compatibility_matrix_markdown(const std::vector<std::filesystem::path>& dirs,
                                          const std::vector<std::string>& targets, const CheckOptions& opts = {},
                                          std::vector<std::string>* invalid = nullptr);

}  // namespace vlq::formats
