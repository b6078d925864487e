// The options that several subcommands share (--device, --image-backend) and the one declaration of every
// integer flag (add_count_option): one name, help text and parser each.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <filesystem>
#include <string>
#include <type_traits>

#include "vlq/engine/device_model.h"
#include "vlq/image/image_processor.h"

namespace vlq::cli {

// --device: where the model runs (cpu | cuda | auto). Its help text is always kDeviceHelp; a command may put what
// runs there before it and what each choice means there after it: "[context: ]kDeviceHelp[; details]" (quantize:
// "Where calibration runs: ...; cpu is ..."). The value is parsed by parse_device_option.
inline constexpr const char* kDeviceHelp = "cpu, cuda, or auto (cuda when a GPU is present; default)";
CLI::Option* add_device_option(CLI::App& app, std::string& value, const std::string& context = "",
                               const std::string& details = "");
// engine::parse_device of the --device value (UsageError naming --device for another value).
engine::Device parse_device_option(const std::string& value);

// --image-backend: the image processor whose resize pixel_values reproduce (torchvision | pil). Its help text is
// always kImageBackendHelp, after what the images are when a command says so: "[context: ]kImageBackendHelp"
// (quantize: "Image preprocessing of calibration images: ..."). Parsed by parse_image_backend_option.
inline constexpr const char* kImageBackendHelp =
    "torchvision (default: what transformers' AutoProcessor uses) or pil (Qwen2VLImageProcessorPil)";
CLI::Option* add_image_backend_option(CLI::App& app, std::string& value, const std::string& context = "");
// image::parse_resize_backend of the --image-backend value (UsageError naming --image-backend otherwise).
image::ResizeBackend parse_image_backend_option(const std::string& value);

// Integer flags: counts and sizes (--samples, --seq-len, --max-new-tokens, --max-num-seqs, --limit, ...), ports,
// seeds — every integer option vlq has is non-negative. CLI11 alone reads an integer with strtoull/strtoll in
// base 0, so `-3` wraps to 2^64 − 3 in an unsigned option and `0x10` / `010` are read as hex / octal.
// count_validator(flag, max) accepts decimal digits only, at most `max` (leading zeros are ignored: `010` is 10,
// as Python's int() reads it); anything else (a sign, `0x`, a fraction, an exponent, spaces, empty, a value
// above max) is a CLI11 ValidationError whose text is "<flag>: <what> (expected ..., found `...`). Hint: ...",
// which main reports as a usage error (exit 64) with the command's help pointer. Its name is kCountValidatorName.
inline constexpr const char* kCountValidatorName = "vlq-count";
CLI::Validator count_validator(const std::string& flag, std::uint64_t max);

// The one way to declare an integer option: app.add_option(name, value, help) checked by count_validator with
// the largest value of T (or a smaller `max`). Range rules of a command (>= 1, 0..65535) stay in the command.
template <class T>
CLI::Option* add_count_option(CLI::App& app, const std::string& name, T& value, const std::string& help,
                              std::uint64_t max = static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>, "add_count_option declares integer options");
  CLI::Option* o = app.add_option(name, value, help);
  o->transform(count_validator(o->get_name(), max));  // a transform: runs first, and may rewrite `010` to `10`
  return o;
}

// Floating-point flags (--temperature, --top-p, --max-kl, --shard-gb, --drain-timeout, ...): CLI11 alone reads
// them with strtold, which also takes `0x1p3`, `inf`, `nan` and leading spaces. number_validator(flag) accepts a
// finite decimal number only: [+-]digits[.digits][e[+-]digits] (or .digits); otherwise a ValidationError in the
// same form as count_validator's. Signs pass: ranges (>= 0, in (0, 1]) stay in the command. Its name is
// kNumberValidatorName.
inline constexpr const char* kNumberValidatorName = "vlq-number";
CLI::Validator number_validator(const std::string& flag);

// The one way to declare a floating-point option: app.add_option(name, value, help) checked by number_validator.
CLI::Option* add_number_option(CLI::App& app, const std::string& name, double& value, const std::string& help);

// Throws std::logic_error naming the command and option when a numeric option of `app` was declared another
// way: CLI11 type INT or UINT without add_count_option, FLOAT without add_number_option. main calls it on every
// subcommand, so a new numeric flag cannot skip the check (vlq would exit 70, failing every CLI test).
void require_number_validators(CLI::App& app);

// Throws UsageError naming `flag` (e.g. "--for") when `id` is not a runtime profile (formats::find_profile).
void require_profile(const std::string& flag, const std::string& id);

// vlq's weight loader over DIR without decoding any weight (config.json values, every tensor's name, shape and
// dtype against the config, both directions): "" when the model builds, else the loader's message. What
// `vlq check` and `vlq convert` add to the format-level check (formats::CheckOptions::model_audit).
std::string model_audit(const std::filesystem::path& dir);

}  // namespace vlq::cli
