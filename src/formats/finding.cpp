// Findings of `vlq check` and the layout audits: severity names and the most severe finding
// (include/vlq/formats/finding.h).
#include "vlq/formats/finding.h"

#include <algorithm>

namespace vlq::formats {

std::string_view severity_name(Severity s) noexcept {
  switch (s) {
    case Severity::kInfo: return "info";
    case Severity::kWarning: return "warning";
    case Severity::kError: return "error";
    case Severity::kInvalid: return "invalid";
  }
  return "?";
}

Severity max_severity(const std::vector<Finding>& findings) noexcept {
  Severity s = Severity::kInfo;
  for (const auto& f : findings) s = std::max(s, f.severity);
  return s;
}

}  // namespace vlq::formats
