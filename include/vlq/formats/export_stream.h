// The one way a checkpoint folder is written from another: plan (the output tensors, both config files)
// → pre-check (formats::check of the planned layout, before a byte is written) → stream (io::CheckpointWriter
// into a temporary folder next to OUT, the input's other files copied) → check what was written → rename
// into place. Shared by `vlq convert` (formats/convert.cpp) and `vlq quantize`'s export (quant/export.cpp).
//
//   io::require_new_output(out, {input_dir}, force);        // before any work
//   CheckpointStream s(plan);                               // plan: tensors, configs, files, writer options
//   Report pre = s.check_planned(profile);                  // throw if it fails: nothing written yet
//   s.write([&](std::size_t i, io::CheckpointWriter& w) { w.write(plan.tensors[i].spec.name, bytes); });
//   Report post = s.check_written(profile);                 // the real bytes; throw if it fails
//   s.commit();                                             // rename into place (destroying s without commit
//                                                           //  removes the temporary folder)
//
// Spec: ../shared/docs/fp8-checkpoint-formats.md §7 (exporter and converter rules: check before rename).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/formats/check.h"
#include "vlq/io/safetensors_writer.h"

namespace vlq::formats {

// One output tensor: its spec, and (when known before writing) the value of a 1-element scale tensor, which
// the pre-check reads (k_scale / input_scale ranges).
struct StreamTensor {
  io::TensorSpec spec;
  std::optional<double> scalar;
};

struct StreamPlan {
  std::filesystem::path input_dir;   // the input checkpoint folder (read only; its other files are copied)
  std::filesystem::path out;         // the output folder
  std::vector<StreamTensor> tensors; // declared order
  // The configs as the checks see them (config.json, hf_quant_config.json; nullopt = absent).
  std::optional<nlohmann::json> config, hf_quant_config;
  // Files written into the output as given (name, contents), e.g. {"config.json", config.dump(2) + "\n"}.
  std::vector<std::pair<std::string, std::string>> files;
  // Input files that are not copied besides `files`' names, model.safetensors.index.json and *.safetensors
  // (always skipped). Only regular files directly in input_dir are copied.
  std::set<std::string> skip_files;
  bool force = false;                              // replace an existing OUT at commit
  bool fsync = true;
  std::uint64_t max_shard_bytes = 5'000'000'000;   // transformers' default 5 GB
};

class CheckpointStream {
 public:
  explicit CheckpointStream(StreamPlan plan);
  ~CheckpointStream();
  CheckpointStream(const CheckpointStream&) = delete;
  CheckpointStream& operator=(const CheckpointStream&) = delete;

  const StreamPlan& plan() const { return plan_; }
  // formats::check_view of the planned output (tensor headers, both configs, the known scalars) for
  // `profile`. Writes nothing.
  Report check_planned(const RuntimeProfile& profile) const;
  // Opens the writer (UsageError: OUT is or contains or lies inside the input; OUT exists without force;
  // IoError) and calls produce(i, writer) for each planned tensor i in order; produce writes tensor i (and
  // may write later ones early, e.g. a weight_scale right after its weight). Then writes `files` and copies
  // the input's other files. Errors of produce propagate; the temporary folder is removed.
  void write(const std::function<void(std::size_t index, io::CheckpointWriter& writer)>& produce);
  // formats::check_view of the bytes written (after write()), for `profile`; report.checkpoint = OUT.
  Report check_written(const RuntimeProfile& profile) const;
  // Renames the output into place (after write()). Returns the tensor bytes written.
  std::uint64_t commit();

 private:
  StreamPlan plan_;
  std::unique_ptr<io::CheckpointWriter> writer_;
};

// The error- and invalid-level findings of a report on one line ("code (subject): message [runtime error];
// ..."), cut after about `max_chars` characters: the `found` of the exporters' "would not load" errors.
std::string failure_summary(const Report& report, std::size_t max_chars = 800);

// Whether a verdict means the runtime would not load the checkpoint (kFails or kInvalid).
bool verdict_fails(Verdict v) noexcept;

// Whether the report predicts wrong output although the runtime loads the checkpoint: a warning that BF16
// weights are built as FP8 without scales (fp8_without_scales, vision_fp8_without_scales: "garbage output").
// `vlq quantize --for T` refuses such an export as it refuses one that fails; failure_summary lists them too.
bool predicts_wrong_output(const Report& report) noexcept;

}  // namespace vlq::formats
