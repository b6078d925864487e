// One finding of `vlq check` (layout audit or runtime prediction): severity, stable code, the tensor or
// module concerned, message, predicted runtime error, numerical risk, and the fix. Schema: docs/check-json.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vlq::formats {

// Ordered by gravity. kInvalid means the checkpoint itself is broken (exit code 3), independent of the
// target; kError means the target runtime fails to load it (exit code 2); kWarning means it loads but
// something is wrong or risky (exit code 1); kInfo is context only.
enum class Severity { kInfo, kWarning, kError, kInvalid };
std::string_view severity_name(Severity s) noexcept;

struct Finding {
  Severity severity = Severity::kInfo;
  std::string code;           // stable identifier, e.g. "runtime_key_error" (docs/check-json.md lists all)
  std::string subject;        // the tensor or module concerned, checkpoint naming (may be empty)
  std::string message;        // one or two sentences
  std::string runtime_error;  // predicted error text of the target runtime (severity kError), e.g.
                              // "KeyError: 'blocks.0.attn.k_proj.k_scale'"
  std::string risk;           // numerical risk when it loads but computes wrong
  std::string hint;           // what fixes it, usually a `vlq convert ...` command
  std::string evidence;       // where the predicted behaviour comes from, e.g. "fp8-checkpoint-formats.md §2.6 [V]"
};

// The highest severity in `findings` (kInfo for none).
Severity max_severity(const std::vector<Finding>& findings) noexcept;

}  // namespace vlq::formats
