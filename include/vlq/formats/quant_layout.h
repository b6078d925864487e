// The FP8 layout model of a checkpoint: the declared quantization config (ModelOpt hf_quant_config.json
// and/or config.json `quantization_config`, compressed-tensors) parsed into one struct, and for every
// Linear the scheme resolved from the tensors actually present, with every disagreement reported.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1.2 (ModelOpt tensors), §1.5 (both config files),
// §3.2–3.4 (compressed-tensors schemes, tensors, config), §6 (layout profiles A/B/C).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/dtype.h"
#include "vlq/formats/checkpoint_summary.h"
#include "vlq/formats/finding.h"
#include "vlq/formats/names.h"

namespace vlq::io {
class Checkpoint;
}

namespace vlq::formats {

// ---- the checkpoint as the checker sees it --------------------------------------------------------

// Tensors are described by vlq::formats::TensorMeta of checkpoint_summary.h (name, dtype, shape,
// nbytes), shared with `vlq inspect`; the shard of each tensor is kept by CheckpointView.

// Tensor metadata, the two config files and scalar values of a checkpoint folder. Reading it costs the
// safetensors headers plus the bytes of the scalars actually asked for.
class CheckpointView {
 public:
  // Opens a checkpoint folder (model.safetensors or index + shards) and reads config.json and
  // hf_quant_config.json when present. Throws IoError / FormatError (safetensors, index, JSON syntax).
  static CheckpointView open(const std::filesystem::path& dir);
  // An in-memory view (tests, planned outputs): one shard; `scalars` gives the value of 1-element tensors.
  static CheckpointView from_memory(std::vector<TensorMeta> tensors, std::optional<nlohmann::json> config,
                                    std::optional<nlohmann::json> hf_quant_config,
                                    std::map<std::string, double> scalars = {});

  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<std::string>& shard_files() const { return shard_files_; }
  const std::vector<TensorMeta>& tensors() const { return tensors_; }  // sorted by name
  const TensorMeta* find(std::string_view name) const;
  std::vector<std::string> names() const;
  // Index into shard_files() of a tensor of tensors().
  std::size_t shard_of(const TensorMeta& t) const;
  // Value of a float tensor with exactly one element (F64/F32/F16/BF16; shape [] or [1] or [1,1]...),
  // decoded bit-exactly with vlq numerics; nullopt for other tensors or absent names.
  std::optional<double> scalar(std::string_view name) const;
  const std::optional<nlohmann::json>& config() const { return config_; }
  const std::optional<nlohmann::json>& hf_quant_config() const { return hf_quant_config_; }
  // The order in which Python loaders meet the tensors: shard files sorted by file name, names sorted
  // within a shard (safetensors `keys()` is sorted; fp8-checkpoint-formats.md §2.6 step 5).
  std::vector<const TensorMeta*> iteration_order() const;
  // The underlying checkpoint (nullptr for in-memory views).
  const io::Checkpoint* checkpoint() const { return ckpt_.get(); }

 private:
  std::filesystem::path dir_;
  std::vector<std::string> shard_files_;
  std::vector<TensorMeta> tensors_;
  std::vector<std::size_t> shards_;  // parallel to tensors_
  std::optional<nlohmann::json> config_, hf_quant_config_;
  std::map<std::string, double> scalars_;
  std::shared_ptr<const io::Checkpoint> ckpt_;
};

// ---- declared configuration ----------------------------------------------------------------------

enum class QuantFormat { kNone, kModelOpt, kCompressedTensors, kOther };
std::string_view quant_format_name(QuantFormat f) noexcept;

// compressed-tensors QuantizationArgs (the subset that matters for FP8), also used to express the
// ModelOpt `config_groups` and `kv_cache_scheme` dicts, which have the same keys.
struct QuantArgs {
  int num_bits = 8;
  std::string type = "float";  // "float" | "int"
  std::string strategy;        // "tensor" | "channel" | "token" | "group" | "block" | "" (absent)
  bool dynamic = false;
  bool symmetric = true;
  std::vector<std::int64_t> block_structure;  // [bn, bk] for strategy "block"
  std::optional<std::int64_t> group_size;
  bool is_fp8() const { return type == "float" && num_bits == 8; }
};

struct ConfigGroup {
  std::string name;                  // e.g. "group_0" (any name)
  std::vector<std::string> targets;  // class names ("Linear"), exact module names or "re:" entries
  std::optional<QuantArgs> weights, input_activations, output_activations;
};

// What one file declares.
struct QuantDeclaration {
  std::string file;            // "config.json" or "hf_quant_config.json"
  QuantFormat format = QuantFormat::kNone;
  std::string quant_method;    // as written ("modelopt", "compressed-tensors", ...)
  std::string quant_algo;      // ModelOpt, upper-cased ("FP8", "FP8_PER_CHANNEL_PER_TOKEN", ...)
  // ModelOpt hf_quant_config.json `quantization.kv_cache_quant_algo` (or a top-level key of that name
  // in config.json, which only vLLM 0.10 reads); nullopt when absent or null.
  std::optional<std::string> kv_cache_quant_algo;
  std::optional<QuantArgs> kv_cache_scheme;  // config.json `kv_cache_scheme` (ModelOpt ≥ 0.31, compressed-tensors)
  std::vector<std::string> exclude;          // `exclude_modules` or `ignore`, as written
  std::string exclude_key;                   // which key held `exclude` ("" when none)
  bool has_exclude_modules_key = false;      // config.json form: a top-level "exclude_modules" key exists
  bool has_ignore_key = false;
  // Each list as written under its own key (nullopt when the key is absent or null): what a reader of
  // exactly that key sees (vLLM 0.10 reads exclude_modules, later versions ignore; `vlq inspect` shows both).
  std::optional<std::vector<std::string>> exclude_modules, ignore;
  // The ModelOpt `quantization{quant_algo, kv_cache_quant_algo, exclude_modules}` block form:
  // hf_quant_config.json, or that block attached under config.json quantization_config (ModelOpt <= 0.29).
  bool quantization_block = false;
  std::string compression_format;            // compressed-tensors "format" ("float-quantized", ...), "" if absent
  std::vector<ConfigGroup> groups;
  std::string producer_name, producer_version;
  std::optional<std::vector<std::int64_t>> weight_block_size;  // "weight_block_size" if written
  nlohmann::json raw;
  // FP8 KV declared by this file (either kv_cache_quant_algo "FP8" or an 8-bit float kv_cache_scheme).
  bool declares_fp8_kv() const;
};

// Both files of a checkpoint.
struct DeclaredConfig {
  std::optional<QuantDeclaration> config_json;      // config.json `quantization_config`
  std::optional<QuantDeclaration> hf_quant_config;  // hf_quant_config.json
  // config.json's declaration when present (what transformers and vLLM read first), else hf_quant_config.
  const QuantDeclaration* primary() const;
  QuantFormat format() const;
};

// Parses a `quantization_config` object: the one parser of config.json quantization_config, used by
// `vlq check`, `vlq inspect` and `vlq convert`. quant_algo / kv_cache_quant_algo are upper-cased; for other
// methods a "fmt" string stands in for a missing quant_algo. Throws ConfigError naming `file` and the key
// when a key has the wrong JSON type (exclude/ignore not a list of strings, config_groups not an object, ...).
QuantDeclaration parse_quantization_config(const nlohmann::json& qc, const std::string& file);
// Parses hf_quant_config.json ({producer, quantization{quant_algo, kv_cache_quant_algo, exclude_modules}}),
// the one parser of that file. Throws ConfigError when it is not an object or has no `quantization` block.
QuantDeclaration parse_hf_quant_config(const nlohmann::json& j, const std::string& file);
// Both (each optional). config is the whole config.json.
DeclaredConfig parse_declared_config(const std::optional<nlohmann::json>& config,
                                     const std::optional<nlohmann::json>& hf_quant_config);

// ---- schemes -------------------------------------------------------------------------------------

enum class WeightQuant { kNone, kPerTensor, kPerChannel, kBlock };
enum class ActQuant { kNone, kStaticPerTensor, kDynamic };

// How one Linear is (to be) computed.
//   BF16:                   weight kNone
//   FP8 per-tensor static:  weight kPerTensor, act kStaticPerTensor (ModelOpt FP8, CT preset FP8)
//   FP8 dynamic per-token:  weight kPerTensor, act kDynamic
//   FP8 per-channel:        weight kPerChannel, act kDynamic (CT FP8_DYNAMIC, ModelOpt FP8_PER_CHANNEL_PER_TOKEN)
//   FP8 block:              weight kBlock [bn, bk], act kDynamic (CT FP8_BLOCK) or kNone (ModelOpt FP8_PB_WO)
struct Scheme {
  WeightQuant weight = WeightQuant::kNone;
  ActQuant act = ActQuant::kNone;
  std::int64_t block_n = 0, block_k = 0;
  bool quantized() const { return weight != WeightQuant::kNone; }
  std::string name() const;  // "BF16", "FP8 per-tensor static", "FP8 block 128x128", ...
  bool operator==(const Scheme&) const = default;
};
// The scheme a ModelOpt quant_algo declares for a quantized Linear. Unknown algos give BF16.
Scheme modelopt_scheme(std::string_view quant_algo);
// The scheme of a compressed-tensors group.
Scheme group_scheme(const ConfigGroup& g);

// ---- resolved layout -----------------------------------------------------------------------------

struct ScaleTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
};

// One Linear of the checkpoint (a 2-D `.weight` that is not an embedding).
struct LinearModule {
  std::string name;       // checkpoint naming, e.g. "visual.blocks.0.attn.qkv"
  std::string canonical;  // canonical naming, e.g. "model.visual.blocks.0.attn.qkv"
  Tower tower = Tower::kOther;
  DType weight_dtype = DType::BF16;
  std::vector<std::int64_t> weight_shape;  // [N out, K in]
  bool has_bias = false;
  std::optional<ScaleTensor> weight_scale, input_scale;
  Scheme tensors;  // from the tensors present
  // The declared view, evaluated on checkpoint names (and on canonical names):
  Scheme declared;
  bool declared_excluded = false;
  std::string excluded_by;  // the exclude/ignore entry that matched
  std::string group;        // compressed-tensors group that targets it
};

// One KV-cache scale tensor (any spelling).
struct KvScaleTensor {
  std::string name;       // as stored
  std::string attention;  // attention module, checkpoint naming
  std::string canonical;  // canonical per-attention scale name ("<attention>.k_scale")
  KvKind kind = KvKind::kK;
  KvStyle style = KvStyle::kCanonical;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::optional<double> value;
  Tower tower = Tower::kOther;
};

struct QuantLayout {
  NamingGeneration naming = NamingGeneration::kUnknown;
  DeclaredConfig declared;
  std::vector<LinearModule> linears;    // sorted by name
  std::vector<KvScaleTensor> kv_scales; // sorted by name
  // Structural problems (severity kInvalid: bad scale shapes, FP8 weight without scale, orphan scales,
  // KV scale ≤ 0 / NaN / Inf) and disagreements between the declared config and the tensors (kWarning).
  std::vector<Finding> findings;
  const LinearModule* find_linear(std::string_view name) const;  // checkpoint naming
  bool has_fp8_weights() const;
  bool any_scales() const;  // any weight_scale / input_scale / KV scale tensor
};

// Resolves every Linear and KV scale of `view` and compares them with the declared config.
// Never throws for checkpoint content: problems become findings. Throws ConfigError only for a config
// that cannot be interpreted at all (see parse_quantization_config).
QuantLayout build_quant_layout(const CheckpointView& view);

// True when a Linear module name is excluded by a producer-side list (ModelOpt: fnmatch + exact;
// compressed-tensors: exact + re.match), on checkpoint or canonical naming. Returns the entry or "".
std::string declared_exclusion(const QuantDeclaration& d, const LinearModule& m);

}  // namespace vlq::formats
