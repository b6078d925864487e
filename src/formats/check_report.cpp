// Verdicts and reports of `vlq check`: verdict names and exit codes, the vlq.check/1 JSON, the text report
// and the compatibility matrix (docs/check-json.md, docs/compatibility.md).
#include "vlq/formats/check.h"

#include <fmt/format.h>

namespace vlq::formats {

namespace fs = std::filesystem;
using nlohmann::json;

std::string_view verdict_name(Verdict v) noexcept {
  switch (v) {
    case Verdict::kLoads: return "loads";
    case Verdict::kLoadsWithWarnings: return "loads_with_warnings";
    case Verdict::kFails: return "fails";
    case Verdict::kInvalid: return "invalid";
  }
  return "?";
}

int verdict_exit_code(Verdict v) noexcept {
  switch (v) {
    case Verdict::kLoads: return 0;
    case Verdict::kLoadsWithWarnings: return 1;
    case Verdict::kFails: return 2;
    case Verdict::kInvalid: return 3;
  }
  return 3;
}

Verdict verdict_of(const std::vector<Finding>& findings) noexcept {
  switch (max_severity(findings)) {
    case Severity::kInfo: return Verdict::kLoads;
    case Severity::kWarning: return Verdict::kLoadsWithWarnings;
    case Severity::kError: return Verdict::kFails;
    case Severity::kInvalid: return Verdict::kInvalid;
  }
  return Verdict::kInvalid;
}

const Finding* Report::first_failure() const {
  for (const auto& f : findings)
    if (f.severity >= Severity::kError) return &f;
  return nullptr;
}

std::vector<const Finding*> Report::with_code(std::string_view code) const {
  std::vector<const Finding*> out;
  for (const auto& f : findings)
    if (f.code == code) out.push_back(&f);
  return out;
}

json report_to_json(const Report& r) {
  json j;
  j["schema"] = "vlq.check/1";
  j["checkpoint"] = r.checkpoint;
  j["target"] = {{"id", r.target}, {"title", r.target_title}};
  j["verdict"] = std::string(verdict_name(r.verdict));
  j["exit_code"] = verdict_exit_code(r.verdict);
  j["layout"] = {{"format", r.summary.format},
                 {"naming", r.summary.naming},
                 {"config_files", r.summary.config_files},
                 {"config_read", r.summary.config_read},
                 {"kv_cache", r.summary.kv_cache},
                 {"linears", r.summary.linears},
                 {"fp8_linears", r.summary.fp8_linears},
                 {"vision_fp8_linears", r.summary.vision_fp8_linears},
                 {"kv_scales", r.summary.kv_scales}};
  json fs = json::array();
  for (const auto& f : r.findings) {
    json x = {{"severity", std::string(severity_name(f.severity))}, {"code", f.code}, {"subject", f.subject},
              {"message", f.message}};
    if (!f.runtime_error.empty()) x["runtime_error"] = f.runtime_error;
    if (!f.risk.empty()) x["risk"] = f.risk;
    if (!f.hint.empty()) x["hint"] = f.hint;
    if (!f.evidence.empty()) x["evidence"] = f.evidence;
    fs.push_back(std::move(x));
  }
  j["findings"] = std::move(fs);
  return j;
}

std::string report_to_text(const Report& r) {
  std::string s = fmt::format("{} on {} ({}): {}\n", r.checkpoint, r.target, r.target_title, verdict_name(r.verdict));
  if (!r.summary.format.empty())  // empty when the checkpoint could not be read
    s += fmt::format("  layout: {} FP8, {}; {} Linears, {} FP8 ({} vision), {} KV scales\n", r.summary.format,
                     r.summary.naming, r.summary.linears, r.summary.fp8_linears, r.summary.vision_fp8_linears,
                     r.summary.kv_scales);
  if (!r.summary.config_read.empty()) s += "  reads: " + r.summary.config_read + "\n";
  if (!r.summary.kv_cache.empty()) s += "  KV cache: " + r.summary.kv_cache + "\n";
  for (const auto& f : r.findings) {
    s += fmt::format("  [{}] {}{}: {}\n", severity_name(f.severity), f.code, f.subject.empty() ? "" : " " + f.subject,
                     f.message);
    if (!f.runtime_error.empty()) s += "      runtime error: " + f.runtime_error + "\n";
    if (!f.risk.empty()) s += "      risk: " + f.risk + "\n";
    if (!f.hint.empty()) s += "      fix: " + f.hint + "\n";
  }
  return s;
}

std::string compatibility_matrix_markdown(const std::vector<fs::path>& dirs, const std::vector<std::string>& targets,
                                          const CheckOptions& opts, std::vector<std::string>* invalid) {
  std::string s = "| checkpoint | layout |";
  for (const auto& t : targets) s += " " + t + " |";
  s += "\n|---|---|";
  for (std::size_t i = 0; i < targets.size(); ++i) s += "---|";
  s += "\n";
  auto cell = [](const Report& r) {
    std::string c = std::string(verdict_name(r.verdict));
    const Finding* f = r.first_failure();
    if (!f)
      for (const auto& x : r.findings)
        if (x.severity == Severity::kWarning) {
          f = &x;
          break;
        }
    if (f) {
      std::string detail = !f->runtime_error.empty() ? f->runtime_error : f->code;
      if (detail.size() > 90) detail = detail.substr(0, 87) + "...";
      for (auto& ch : detail)
        if (ch == '|') ch = '/';
      c += ": `" + detail + "`";
    }
    return c;
  };
  for (const auto& d : dirs) {
    std::string layout;
    std::vector<Report> reps;
    for (const auto& t : targets) reps.push_back(check_checkpoint(d, t, opts));
    if (invalid)
      for (const auto& r : reps)
        if (r.verdict == Verdict::kInvalid) {
          const Finding* f = r.first_failure();
          invalid->push_back(d.string() + (f ? ": " + f->code + ": " + f->message : ""));
          break;
        }
    if (!reps.empty()) {
      const auto& sm = reps.front().summary;
      layout = fmt::format("{}; {} FP8 Linears ({} vision); {} KV scales", sm.format, sm.fp8_linears,
                           sm.vision_fp8_linears, sm.kv_scales);
    }
    s += "| " + d.filename().string() + (d.filename().empty() ? d.parent_path().filename().string() : "") + " | " +
         layout + " |";
    for (const auto& r : reps) s += " " + cell(r) + " |";
    s += "\n";
  }
  return s;
}

}  // namespace vlq::formats
