// Formatting of vlq's typed error messages (see include/vlq/core/error.h).
#include "vlq/core/error.h"

namespace vlq {

std::string format_error_message(const ErrorInfo& info) {
  std::string msg;
  if (!info.where.empty()) msg += info.where + ": ";
  msg += info.what;
  if (!info.expected.empty() || !info.found.empty()) {
    msg += " (";
    if (!info.expected.empty()) msg += "expected " + info.expected;
    if (!info.expected.empty() && !info.found.empty()) msg += ", ";
    if (!info.found.empty()) msg += "found " + info.found;
    msg += ")";
  }
  if (!info.hint.empty()) msg += ". Hint: " + info.hint;
  return msg;
}

Error::Error(ErrorInfo info) : std::runtime_error(format_error_message(info)), info_(std::move(info)) {}

}  // namespace vlq
