// `vlq convert`: rewrites an FP8 checkpoint so that one runtime (profile) loads it correctly, streaming
// tensor by tensor (memory bounded by the largest tensor). Owned by the lead; check.h/runtime_profile.h
// supply the target's behaviour.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §7.2 (the two repairs of a Profile B checkpoint),
// §7.1 rules 2-4 (KV scales only for the language model, vision kept BF16 and excluded in the form the
// runtime honours); field-bug-classes.md F04 (KV spellings), F05-F08 (vision tower quantized).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "vlq/formats/check.h"

namespace vlq::formats {

enum class VisionMode {
  kDefault,  // the target profile's default (RuntimeProfile::default_vision)
  kKeep,     // leave the vision tower as it is (only orphan vision K/V scales are dropped)
  kBf16,     // dequantize every FP8 vision Linear to BF16 (E4M3 x weight_scale, rounded to nearest even),
             // drop its scales, and exclude the vision tower in the config form the target honours
};

struct ConvertOptions {
  std::string target;          // profile id (find_profile)
  VisionMode vision = VisionMode::kDefault;
  bool force = false;          // replace an existing OUT
  std::uint64_t max_shard_bytes = 5'000'000'000;  // output shard size (transformers' default 5 GB)
  bool fsync = true;
};

struct ConvertResult {
  std::filesystem::path out;
  std::vector<std::string> actions;  // one line per change made ("dropped visual.blocks.0.attn.k_proj.k_scale", ...)
  std::uint64_t tensors_in = 0, tensors_out = 0;
  std::uint64_t bytes_out = 0;
  Report check;  // `vlq check --target` on the output, run before it was renamed into place
};

// Converts `in` into `out` for `opts.target`:
//  - vision K/V scale tensors (any spelling; no runtime has a parameter for them) are dropped;
//  - language-model KV scales are renamed to the target's spelling (profile.modelopt_kv_style for
//    ModelOpt output, profile.ct_kv_style for compressed-tensors), one K and one V per attention layer;
//  - with VisionMode::kBf16 FP8 vision Linears become BF16 and their scales are dropped, and the vision
//    tower is added to exclude_modules / ignore in the form the target matches (wildcard for ModelOpt,
//    explicit module names for compressed-tensors, plus profile.vision_exclude_extra);
//  - both config files (hf_quant_config.json and config.json quantization_config) are written from one
//    declaration, so they agree; tokenizer, processor, generation and template files are copied.
// The output is checked against the target before it is renamed into place; if the target would still
// fail, nothing is written and the error lists the findings.
// Throws UsageError (unknown target, OUT exists without force, OUT is or contains IN, nothing to
// convert because IN is not a quantized checkpoint), FormatError/IoError (reading IN, writing OUT),
// UnsupportedError (a vision FP8 scheme that cannot be dequantized), ConfigError (the converted
// checkpoint still fails the target: message names the first failing finding).
ConvertResult convert_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                                 const ConvertOptions& opts);

}  // namespace vlq::formats
