// What each runtime reads from a checkpoint's quantization config files (config.json
// quantization_config, hf_quant_config.json): which file wins, the exclusion key, the FP8 KV declaration.
#include <fmt/format.h>

#include "check_internal.h"

namespace vlq::formats::check_detail {

namespace {

// The list a reader of exactly `key` ("exclude_modules" or "ignore") sees, and whether the key is there.
std::vector<std::string> list_under(const QuantDeclaration& d, const std::string& key, bool& present) {
  const bool ignore = key == "ignore";
  present = ignore ? d.has_ignore_key : d.has_exclude_modules_key;
  const auto& list = ignore ? d.ignore : d.exclude_modules;
  return list.value_or(std::vector<std::string>{});
}

}  // namespace

RtConfig read_config(const QuantLayout& L, const RuntimeProfile& p) {
  RtConfig c;
  const auto& D = L.declared;
  const QuantDeclaration* cj = D.config_json ? &*D.config_json : nullptr;
  const QuantDeclaration* hf = D.hf_quant_config ? &*D.hf_quant_config : nullptr;
  if (cj && cj->format == QuantFormat::kModelOpt && !p.config.reads_config_json_modelopt) cj = nullptr;
  if (hf && (!p.config.reads_hf_quant_config || hf->format != QuantFormat::kModelOpt)) hf = nullptr;
  c.read = p.config.config_json_first ? (cj ? cj : hf) : (hf ? hf : cj);
  if (!c.read) {
    c.describe = "no quantization config";
    return c;
  }
  c.format = c.read->format;
  c.algo = c.read->quant_algo;
  const bool hf_style = c.read->quantization_block;
  if (c.format == QuantFormat::kModelOpt) {
    if (hf_style) {
      c.exclude = c.read->exclude;
      c.kv_fp8 = c.read->kv_cache_quant_algo && *c.read->kv_cache_quant_algo == "FP8";
      c.describe = fmt::format("{} (ModelOpt, hf_quant_config form): exclude_modules, kv_cache_quant_algo", c.read->file);
    } else {
      const std::string& key = p.config.cfgjson_exclude_key;
      c.exclude = list_under(*c.read, key, c.exclude_read);
      if (p.config.cfgjson_kv_from_scheme)
        c.kv_fp8 = (c.read->kv_cache_scheme && c.read->kv_cache_scheme->is_fp8()) ||
                   (c.read->kv_cache_quant_algo && *c.read->kv_cache_quant_algo == "FP8");
      else
        c.kv_fp8 = c.read->kv_cache_quant_algo && *c.read->kv_cache_quant_algo == "FP8";
      if (key.empty())  // a runtime without ModelOpt support (vllm-ascend): the exclusions are not read at all
        c.describe = "config.json quantization_config (ModelOpt, config.json form): no exclusion key is read";
      else
        c.describe = fmt::format("config.json quantization_config (ModelOpt, config.json form): reads '{}' ({}) and {}",
                                 key, c.exclude_read ? fmt::format("{} entries", c.exclude.size()) : "absent → none",
                                 p.config.cfgjson_kv_from_scheme ? "kv_cache_scheme" : "kv_cache_quant_algo");
    }
  } else if (c.format == QuantFormat::kCompressedTensors) {
    bool present = false;
    c.exclude = list_under(*c.read, "ignore", present);
    c.kv_fp8 = c.read->kv_cache_scheme && c.read->kv_cache_scheme->is_fp8();
    c.describe = "config.json quantization_config (compressed-tensors): config_groups, ignore, kv_cache_scheme";
  } else {
    c.describe = fmt::format("{} quant_method '{}'", c.read->file, c.read->quant_method);
  }
  return c;
}


}  // namespace vlq::formats::check_detail
