// Typed exceptions for vlq: every error names where it happened (file, tensor, module), what was
// expected, what was found, and a hint for the user. Library code throws these; only src/cli catches.
#pragma once

#include <stdexcept>
#include <string>

namespace vlq {

// Parts of an error message. `where` is a file path, tensor name or module name (or "a: b" for both).
// `expected`/`found` may be empty when they add nothing; `hint` says what the user can do about it.
struct ErrorInfo {
  std::string where;
  std::string what;
  std::string expected;
  std::string found;
  std::string hint;
};

// Base class of every vlq error. what() is one human-readable message:
//   "<where>: <what> (expected <expected>, found <found>). Hint: <hint>"
class Error : public std::runtime_error {
 public:
  explicit Error(ErrorInfo info);
  const ErrorInfo& info() const noexcept { return info_; }

 private:
  ErrorInfo info_;
};

// The bytes of a file violate its format (safetensors header, index JSON, config JSON).
class FormatError : public Error { using Error::Error; };
// Reading or writing the file system failed (missing file, permission, disk full, rename).
class IoError : public Error { using Error::Error; };
// A config file is well-formed JSON but its content is inconsistent or missing required keys.
class ConfigError : public Error { using Error::Error; };
// A valid input that vlq does not handle yet (architecture, dtype, quantization scheme).
class UnsupportedError : public Error { using Error::Error; };
// The user asked for something impossible (bad flag combination, output exists, ...).
class UsageError : public Error { using Error::Error; };

// Builds the one-line message used by Error::what().
std::string format_error_message(const ErrorInfo& info);

}  // namespace vlq
