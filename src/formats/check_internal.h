// Private to the check_*.cpp files of `vlq check`: the audits, the config reading and the loader
// simulations that check.cpp runs over one checkpoint; not part of the public include/vlq/formats/check.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "vlq/formats/check.h"

namespace vlq::formats::check_detail {

// ---- small helpers (check.cpp) -------------------------------------------------------------------

Finding make_finding(Severity s, std::string code, std::string subject, std::string message);
// The `vlq convert` command a hint suggests: the output is the sibling folder `<input-folder>-<target>`
// (never inside the input's folder; a .safetensors file input names its folder), e.g.
// convert_cmd("/x/model", "vllm-0.10") = "vlq convert /x/model /x/model-vllm-0.10 --for vllm-0.10".
std::string convert_cmd(const std::string& dir, const std::string& target, const std::string& extra = "");
// Parses "0.35.0" into (0, 35); (-1, -1) if unparsable.
std::pair<int, int> major_minor(const std::string& v);
// The FP8 vision Linears of the layout (checkpoint naming, in layout order).
std::vector<const LinearModule*> vision_fp8_linears(const QuantLayout& L);
// Stable: most severe first, audit order within a severity.
void order_findings(std::vector<Finding>& f);

// ---- target-independent audits (check_audits.cpp, check_audit_tokens.cpp) -----------------------

void audit_naming(const QuantLayout& L, std::vector<Finding>& out);
// F17: every decoder K/V scale exactly 1.0 → kv_scales_uncalibrated (warning).
void audit_kv_values(const QuantLayout& L, std::vector<Finding>& out);
void audit_vision(const QuantLayout& L, const std::string& dir, std::vector<Finding>& out);
// F18: q/k/v (and gate/up) shards with different per-tensor weight scales.
void audit_fused_scales(const CheckpointView& v, const QuantLayout& L, std::vector<Finding>& out);
// F25: special tokens against the base model (opts.base_model) or the released Qwen2.5-VL ids.
void audit_tokens(const std::filesystem::path& dir, const CheckOptions& opts, std::vector<Finding>& out);

// An FP8 GEMM a runtime will run.
struct Gemm {
  std::string subject;   // checkpoint naming (first shard)
  std::string runtime;   // runtime module
  std::int64_t n = 0, k = 0;
  bool vision = false;      // a vision-tower Linear
  bool stored_fp8 = true;   // the checkpoint's weights are FP8 (false: BF16 that the runtime builds as FP8 anyway)
};
// F19: FP8 GEMM alignment of the Linears a runtime computes in FP8.
void audit_alignment(const RuntimeProfile& p, const std::vector<Gemm>& gemms, const std::string& dir,
                     std::vector<Finding>& out);

// ---- what a runtime reads from the config files (check_config_read.cpp) --------------------------

struct RtConfig {
  const QuantDeclaration* read = nullptr;
  QuantFormat format = QuantFormat::kNone;
  std::string algo;
  std::vector<std::string> exclude;  // as the runtime sees them, before its own mapping
  bool exclude_read = true;          // false when the key it reads is absent
  bool kv_fp8 = false;
  std::string describe;
};
RtConfig read_config(const QuantLayout& L, const RuntimeProfile& p);

// ---- loader simulations per runtime family (check_loader_*.cpp) ---------------------------------

// What a loader simulation predicts besides its findings.
struct LoaderResult {
  std::vector<Gemm> gemms;  // FP8 GEMMs the runtime will run
  std::string kv_cache;     // predicted KV-cache dtype and scale use
  std::string config_read;  // what the runtime reads (CheckSummary::config_read)
};
// vLLM family (vllm-0.10, vllm-latest, sglang, vllm-ascend): the generic loader model over the profile.
LoaderResult run_vllm(const CheckpointView& v, const QuantLayout& L, const RuntimeProfile& p, const std::string& dir,
                      std::vector<Finding>& out);
// TensorRT-LLM 1.2.0rc0.
LoaderResult run_trtllm(const QuantLayout& L, const RuntimeProfile& p, std::vector<Finding>& out);
// vlq's own loader.
LoaderResult run_native(const QuantLayout& L, const RuntimeProfile& p, std::vector<Finding>& out);

}  // namespace vlq::formats::check_detail
