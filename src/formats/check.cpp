// `vlq check`: the driver: target-independent audits, then the target's loader simulation, then the
// summary; see include/vlq/formats/check.h. The audits, config reading and loader models live in
// check_*.cpp (check_internal.h).
#include "vlq/formats/check.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "check_internal.h"
#include "vlq/core/error.h"

namespace vlq::formats {

namespace fs = std::filesystem;

namespace check_detail {

Finding make_finding(Severity s, std::string code, std::string subject, std::string message) {
  Finding f;
  f.severity = s;
  f.code = std::move(code);
  f.subject = std::move(subject);
  f.message = std::move(message);
  return f;
}

std::string convert_cmd(const std::string& dir, const std::string& target, const std::string& extra) {
  if (dir.empty()) return fmt::format("vlq convert DIR DIR-{} --for {}{}", target, target, extra);
  auto strip = [](std::string d) {
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    return d;
  };
  fs::path in(dir);
  if (in.extension() == ".safetensors") in = in.parent_path();  // a file names its folder
  std::string d = strip(in.string());
  const std::string last = fs::path(d).filename().string();
  // ".", ".." and "x/.": the sibling must be named from the folder's real name, not inside it.
  if (d.empty() || last == "." || last == "..") d = strip(fs::absolute(d.empty() ? "." : d).lexically_normal().string());
  return fmt::format("vlq convert {} {}-{} --for {}{}", d, d, target, target, extra);
}

std::pair<int, int> major_minor(const std::string& v) {
  int a = -1, b = -1;
  if (std::sscanf(v.c_str(), "%d.%d", &a, &b) != 2) return {-1, -1};
  return {a, b};
}

void order_findings(std::vector<Finding>& f) {
  std::stable_sort(f.begin(), f.end(), [](const Finding& a, const Finding& b) { return a.severity > b.severity; });
}

}  // namespace check_detail

using namespace check_detail;

namespace {

// The architectures config.json names, comma-separated ("" when it names none).
std::string architectures(const CheckpointView& view) {
  std::string arch;
  if (view.config() && view.config()->is_object() && view.config()->contains("architectures") &&
      (*view.config())["architectures"].is_array())
    for (const auto& a : (*view.config())["architectures"])
      if (a.is_string()) arch += (arch.empty() ? "" : ", ") + a.get<std::string>();
  return arch;
}

// The target's loader model. The loader models describe the Qwen2-VL / Qwen2.5-VL model classes of each
// runtime; another architecture gets the target-independent audits only (except on vlq's own loader).
LoaderResult run_loader(const CheckpointView& view, const QuantLayout& L, const RuntimeProfile& target,
                        std::vector<Finding>& F) {
  const std::string arch = architectures(view);
  const bool qwen_vl = arch.empty() || arch.find("Qwen2_5_VL") != std::string::npos ||
                       arch.find("Qwen2VL") != std::string::npos;
  if (!qwen_vl && target.kind != LoaderKind::kNative) {
    F.push_back(make_finding(Severity::kWarning, "not_analysed", "config.json",
                             fmt::format("architecture {}: the {} profile models the Qwen2-VL / Qwen2.5-VL loader "
                                         "only; only the target-independent audits ran",
                                         arch, target.id)));
    return {};
  }
  if (target.kind == LoaderKind::kVllmFamily) return run_vllm(view, L, target, view.dir().string(), F);
  if (target.kind == LoaderKind::kTrtllm) return run_trtllm(L, target, F);
  return run_native(L, target, F);
}

CheckSummary summary_of(const QuantLayout& L, const LoaderResult& loader) {
  CheckSummary s;
  s.format = std::string(quant_format_name(L.declared.format()));
  s.naming = std::string(naming_generation_name(L.naming));
  if (L.declared.config_json) s.config_files.push_back("config.json quantization_config");
  if (L.declared.hf_quant_config) s.config_files.push_back("hf_quant_config.json");
  s.config_read = loader.config_read;
  s.kv_cache = loader.kv_cache;
  for (const auto& l : L.linears) {
    ++s.linears;
    if (l.tensors.quantized()) {
      ++s.fp8_linears;
      if (l.tower == Tower::kVision) ++s.vision_fp8_linears;
    }
  }
  s.kv_scales = static_cast<int>(L.kv_scales.size());
  return s;
}

}  // namespace

Report check_view(const CheckpointView& view, const RuntimeProfile& target, const CheckOptions& opts) {
  Report r;
  r.checkpoint = view.dir().string();
  r.target = target.id;
  r.target_title = target.title;
  QuantLayout L = build_quant_layout(view);
  std::vector<Finding> F = L.findings;
  const std::string dir = view.dir().string();

  // Audits every target runs.
  audit_naming(L, F);
  audit_kv_values(L, F);
  audit_vision(L, dir, F);
  audit_fused_scales(view, L, F);
  audit_tokens(view.dir(), opts, F);

  const LoaderResult loader = run_loader(view, L, target, F);
  audit_alignment(target, loader.gemms, dir, F);

  order_findings(F);
  r.findings = std::move(F);
  r.verdict = verdict_of(r.findings);
  r.summary = summary_of(L, loader);
  return r;
}

Report check_checkpoint(const fs::path& dir, std::string_view target, const CheckOptions& opts) {
  const RuntimeProfile& p = find_profile(target);
  try {
    CheckpointView v = CheckpointView::open(dir);
    Report r = check_view(v, p, opts);
    if (!v.config()) {
      // No runtime loads a model folder without config.json (transformers, vLLM, SGLang, TRT-LLM all
      // start from it), whatever the tensors say.
      const fs::path folder = fs::is_directory(dir) ? dir : dir.parent_path();
      Finding f = make_finding(Severity::kInvalid, "no_config", (folder / "config.json").string(),
                       "the checkpoint has no config.json: no runtime can build the model");
      f.hint = "copy config.json from the model this checkpoint was made from";
      r.findings.insert(r.findings.begin(), f);
      r.verdict = verdict_of(r.findings);
    } else if (opts.model_audit) {
      const fs::path folder = fs::is_directory(dir) ? dir : dir.parent_path();
      if (std::string problems = opts.model_audit(folder); !problems.empty()) {
        Finding f = make_finding(Severity::kInvalid, "config_tensor_mismatch", (folder / "config.json").string(),
                                 "the checkpoint does not build as its config.json describes it: " + problems);
        f.risk = "every runtime refuses it at load (missing / unexpected / mis-shaped tensors or invalid config values)";
        f.hint = "use the config.json of the model this checkpoint was made from, or re-download the checkpoint";
        r.findings.insert(r.findings.begin(), f);
        r.verdict = verdict_of(r.findings);
      }
    }
    return r;
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    Report r;
    r.checkpoint = dir.string();
    r.target = p.id;
    r.target_title = p.title;
    ErrorInfo msg = e.info();
    msg.where.clear();  // the subject already names it
    msg.hint.clear();   // kept in f.hint
    Finding f = make_finding(Severity::kInvalid, "unreadable", e.info().where, format_error_message(msg));
    f.hint = e.info().hint;
    r.findings.push_back(f);
    r.verdict = Verdict::kInvalid;
    return r;
  }
}
}  // namespace vlq::formats
