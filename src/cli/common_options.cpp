// The options that several subcommands share (--device, --image-backend) and the integer-flag validator:
// declaration and parsing.
#include "cli/common_options.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "vlq/core/error.h"
#include "vlq/formats/runtime_profile.h"
#include "vlq/model/qwen2_5_vl.h"

namespace vlq::cli {

namespace {
constexpr const char* kDeviceFlag = "--device";
constexpr const char* kImageBackendFlag = "--image-backend";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// What a non-decimal value looks like, for the message's "found".
std::string kind_of(const std::string& t) {
  const bool digits_after_sign = t.size() > 1 && std::all_of(t.begin() + 1, t.end(), is_digit);
  if (t[0] == '-' && digits_after_sign) return " (a negative number)";
  if (t[0] == '+' && digits_after_sign) return " (a sign)";
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) return " (hexadecimal)";
  if (t.find_first_of(".eE") != std::string::npos && std::any_of(t.begin(), t.end(), is_digit)) return " (not a whole number)";
  return "";
}

// "[context: ]text[; details]"
std::string compose_help(const std::string& context, const char* text, const std::string& details) {
  return (context.empty() ? "" : context + ": ") + text + (details.empty() ? "" : "; " + details);
}
}  // namespace

CLI::Option* add_device_option(CLI::App& app, std::string& value, const std::string& context, const std::string& details) {
  return app.add_option(kDeviceFlag, value, compose_help(context, kDeviceHelp, details));
}

engine::Device parse_device_option(const std::string& value) { return engine::parse_device(value, kDeviceFlag); }

CLI::Option* add_image_backend_option(CLI::App& app, std::string& value, const std::string& context) {
  return app.add_option(kImageBackendFlag, value, compose_help(context, kImageBackendHelp, ""));
}

image::ResizeBackend parse_image_backend_option(const std::string& value) {
  return image::parse_resize_backend(value, kImageBackendFlag);
}

CLI::Validator count_validator(const std::string& flag, std::uint64_t max) {
  auto check = [flag, max](std::string& text) -> std::string {
    const std::string found = "`" + text + "`";
    if (text.empty() || !std::all_of(text.begin(), text.end(), is_digit))
      return format_error_message({"", "not a valid value", "a non-negative decimal integer",
                                   text.empty() ? "nothing" : found + kind_of(text),
                                   "give " + flag + " in decimal digits only (no sign, no 0x, no fraction), e.g. " + flag +
                                       " 8"});
    const std::size_t first = std::min(text.find_first_not_of('0'), text.size() - 1);
    text.erase(0, first);  // `010` is ten, not CLI11's octal eight
    // Values of up to 19 digits fit in uint64; 20 digits only when they compare <= UINT64_MAX as strings.
    const std::string kU64Max = std::to_string(std::numeric_limits<std::uint64_t>::max());
    const bool fits = text.size() < kU64Max.size() || (text.size() == kU64Max.size() && text <= kU64Max);
    if (!fits || std::stoull(text) > max)
      return format_error_message({"", "value out of range", "at most " + std::to_string(max), found,
                                   "give " + flag + " a value from 0 to " + std::to_string(max)});
    return "";
  };
  return CLI::Validator(check, "", kCountValidatorName);
}

CLI::Validator number_validator(const std::string& flag) {
  auto check = [flag](std::string& text) -> std::string {
    // [+-] digits [. digits] [e [+-] digits], at least one digit before the exponent.
    std::size_t i = 0, mantissa_digits = 0;
    auto digits = [&] {
      std::size_t n = 0;
      while (i < text.size() && is_digit(text[i])) ++i, ++n;
      return n;
    };
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    mantissa_digits += digits();
    if (i < text.size() && text[i] == '.') ++i, mantissa_digits += digits();
    bool ok = mantissa_digits > 0;
    if (ok && i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
      ++i;
      if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
      ok = digits() > 0;
    }
    ok = ok && i == text.size();
    const std::string found = text.empty() ? "nothing" : "`" + text + "`";
    if (!ok) {
      const bool hex = text.find("0x") != std::string::npos || text.find("0X") != std::string::npos;
      return format_error_message({"", "not a valid value", "a finite decimal number", found + (hex ? " (hexadecimal)" : ""),
                                   "give " + flag + " in decimal, e.g. " + flag + " 0.5"});
    }
    if (!std::isfinite(std::strtod(text.c_str(), nullptr)))
      return format_error_message({"", "value out of range", "a finite decimal number", found + " (overflows a double)",
                                   "give " + flag + " a smaller value"});
    return "";
  };
  return CLI::Validator(check, "", kNumberValidatorName);
}

CLI::Option* add_number_option(CLI::App& app, const std::string& name, double& value, const std::string& help) {
  CLI::Option* o = app.add_option(name, value, help);
  o->transform(number_validator(o->get_name()));
  return o;
}

void require_number_validators(CLI::App& app) {
  for (CLI::Option* o : app.get_options()) {
    const std::string type = o->get_type_name();
    const bool integer = type == "INT" || type == "UINT";
    if (!integer && type != "FLOAT") continue;
    try {
      o->get_validator(integer ? kCountValidatorName : kNumberValidatorName);
    } catch (const CLI::OptionNotFound&) {
      throw std::logic_error("vlq " + app.get_name() + " " + o->get_name() + ": " + (integer ? "integer" : "floating-point") +
                             " option declared without cli::" + (integer ? "add_count_option" : "add_number_option") +
                             " (src/cli/common_options.h)");
    }
  }
}

void require_profile(const std::string& flag, const std::string& id) {
  try {
    formats::find_profile(id);
  } catch (const UsageError&) {
    throw UsageError({flag, "unknown runtime profile", formats::profile_id_list(), id, "vlq check --list-targets"});
  }
}

std::string model_audit(const std::filesystem::path& dir) {
  try {
    model::LoadOptions lo;
    lo.decode_weights = [](const std::string&) { return false; };  // shapes and names only: no tensor data
    (void)model::Qwen2_5_VL::load(dir, lo);
    return "";
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace vlq::cli
