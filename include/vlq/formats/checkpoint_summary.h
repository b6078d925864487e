// What a Qwen2.5-VL Hugging Face checkpoint folder contains, from its JSON files and safetensors headers
// only: model sizes, parameter counts/bytes by component and dtype, naming generation, quantization
// format and scale tensors, and anomalies. This is the library behind `vlq inspect` (JSON schema
// "vlq.inspect/1", documented in docs/inspect-json.md).
//
// Specs: /work/shared/docs/fp8-checkpoint-formats.md §1.2-1.5 (ModelOpt tensors, KV scales,
// hf_quant_config.json and config.json quantization_config), §3.3-3.4 (compressed-tensors), §5 (naming
// generations), §6 (layout profiles A/B/C); /work/shared/docs/qwen2_5_vl.md §1.3 (key layouts).
//
// Tensor data is never read, except the value of 1-element F32/BF16/F16 scale tensors (a few bytes,
// InspectOptions::read_scale_values) to report their range and flag non-positive or non-finite scales.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/dtype.h"
#include "vlq/formats/hf_config.h"
#include "vlq/formats/names.h"

namespace vlq::formats {

// ---- classification of tensor names (both naming generations) -------------------------------------
// Components (Component, component_of, component_name), naming generations and KV-scale keys
// (parse_kv_scale_key) are naming rules: they live in vlq/formats/names.h, included above.

// The kind of a quantization tensor: its last name component when it is a row of quant_tensor_leaves()
// (names.h: weight_scale, input_scale, k_scale, _amax, ...). "" for ordinary tensors (weights, biases,
// norms). Quantization tensors are counted separately from parameters everywhere in the summary.
std::string_view scale_kind(std::string_view tensor_name) noexcept;

// ---- summary ---------------------------------------------------------------------------------------

struct Counts {
  std::uint64_t tensors = 0;
  std::uint64_t params = 0;  // elements (an FP8 element counts as one parameter)
  std::uint64_t bytes = 0;   // data bytes in the file(s)
  void add(std::uint64_t numel, std::uint64_t nbytes) { ++tensors; params += numel; bytes += nbytes; }
};

struct ComponentSummary {
  Counts weights;                       // everything that is not a quantization tensor
  Counts scales;                        // quantization tensors (see scale_kind)
  std::uint64_t linear_modules = 0;     // modules with a rank-2 `.weight` (embed_tokens excluded)
  std::uint64_t quantized_modules = 0;  // modules whose `.weight` is FP8 (F8_E4M3 / F8_E5M2)
  std::uint64_t kv_scales = 0;          // KV-cache scale tensors in this component
};

struct ScaleKindSummary {
  std::uint64_t count = 0;
  std::map<std::string, std::uint64_t> dtypes;  // "F32" -> n
  std::map<std::string, std::uint64_t> shapes;  // "scalar" ([]), "[1]", "per-channel" ([N,1] / [N]),
                                                // "block" (rank 2, both > 1), "other"
  std::uint64_t values_read = 0;                // 1-element tensors whose value was read
  std::optional<double> min, max;               // over the values read (finite ones)
};

struct QuantSummary {
  // "modelopt", "compressed-tensors", or the quant_method as written for other methods.
  std::string format;
  std::vector<std::string> sources;        // "hf_quant_config.json", "config.json:quantization_config"
  std::string quant_algo;                  // "FP8", "MIXED_PRECISION", "NVFP4", ... ("" unknown)
  std::optional<std::string> kv_cache_quant_algo;  // "FP8" or nullopt (no KV quantization declared)
  std::string producer_name, producer_version;
  std::optional<std::vector<std::string>> exclude_modules;  // hf_quant_config.json
  std::optional<std::vector<std::string>> ignore;           // config.json quantization_config
  std::string scheme;                      // compressed-tensors: "weights float8 channel static, ..."
  std::map<std::string, std::uint64_t> kv_spellings;  // spelling -> count (all components)
};

struct Anomaly {
  std::string severity;  // "error" (a loader will fail or compute garbage), "warning", "info"
  std::string code;      // stable identifier, see docs/inspect-json.md
  std::string message;   // one line, names what is wrong and where
  std::uint64_t count = 0;
  std::vector<std::string> examples;  // up to InspectOptions::max_examples tensor/module names
};

struct CheckpointSummary {
  std::filesystem::path dir;
  formats::HfModelFiles files;  // config.json, generation_config.json, preprocessor, tokenizer files
  bool has_hf_quant_config = false;
  std::vector<std::string> shards;  // file names, in index order
  bool sharded = false;             // model.safetensors.index.json present
  std::string naming;               // "legacy", "hf-4.52", "mixed", "unknown"
  Counts weights, scales;           // totals
  std::array<ComponentSummary, kNumComponents> components;
  std::map<std::string, Counts> weights_by_dtype, scales_by_dtype;  // dtype name -> counts
  std::map<std::string, ScaleKindSummary> scale_kinds;              // kind -> summary
  // "separate" (lm_head.weight stored, not tied), "tied" (tie_word_embeddings, no lm_head.weight),
  // "tied+stored" (tied but lm_head.weight also stored), "missing" (not tied, no lm_head.weight),
  // "unknown" (no config).
  std::string lm_head;
  std::optional<QuantSummary> quant;  // nullopt: no quantization config and no FP8 tensor
  std::vector<Anomaly> anomalies;     // sorted: errors, warnings, infos; then by code
  std::uint64_t count_anomalies(std::string_view severity) const;
};

struct InspectOptions {
  bool read_scale_values = true;
  std::size_t max_examples = 5;
};

// One tensor of the input (what a safetensors header says about it).
struct TensorMeta {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t nbytes = 0;
  std::uint64_t numel() const;
};

// Everything summarize() looks at; summarize_checkpoint() fills it from a folder.
struct SummaryInput {
  std::filesystem::path dir;
  formats::HfModelFiles files;
  std::optional<nlohmann::json> hf_quant_config;  // parsed hf_quant_config.json
  std::vector<std::string> shards;
  bool sharded = false;
  std::vector<TensorMeta> tensors;
  // Reads the value of a 1-element tensor (F32/BF16/F16); may be empty (values are then not read).
  std::function<std::optional<double>(const TensorMeta&)> read_scalar;
};

// Pure summary of the input. Throws ConfigError when hf_quant_config.json / quantization_config has a
// wrong structure (e.g. exclude_modules not a list of strings), naming file and key.
CheckpointSummary summarize(const SummaryInput& in, const InspectOptions& opts = {});

// Summarises a checkpoint folder (or a single .safetensors file: its folder's JSON files are used).
// Reads config.json, generation_config.json, preprocessor_config.json, hf_quant_config.json and the
// safetensors headers (vlq::io::Checkpoint). Throws IoError (path missing/unreadable), FormatError
// (bad JSON or safetensors), ConfigError (bad config), UnsupportedError (not Qwen2.5-VL).
CheckpointSummary summarize_checkpoint(const std::filesystem::path& dir_or_file, const InspectOptions& opts = {});

// The "vlq.inspect/1" JSON document (docs/inspect-json.md). Keys always present; null when unknown.
nlohmann::ordered_json summary_to_json(const CheckpointSummary& s);
// Human-readable report (what `vlq inspect` prints without --json).
std::string summary_to_table(const CheckpointSummary& s);

}  // namespace vlq::formats
