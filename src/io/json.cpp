// Strict JSON parsing (duplicate keys, nesting limit) on top of nlohmann's callback parser.
#include "vlq/io/json.h"

#include <fstream>
#include <sstream>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "vlq/core/error.h"

namespace vlq::io {

namespace {
struct Frame {
  bool object = false;
  std::string key;  // most recent key of this object (for messages)
  std::unordered_set<std::string> keys;
};

std::string key_path(const std::vector<Frame>& stack) {
  std::string path;
  for (const auto& f : stack) {
    if (!f.object || f.key.empty()) continue;
    if (!path.empty()) path += " > ";
    path += quote_name(f.key);
  }
  return path;
}
}  // namespace

std::string quote_name(std::string_view s) {
  constexpr std::size_t kMax = 200;
  if (s.size() > kMax) return "'" + std::string(s.substr(0, kMax)) + "...' (" + std::to_string(s.size()) + " bytes)";
  return "'" + std::string(s) + "'";
}

std::string show_byte(unsigned char c) {
  if (c >= 0x20 && c < 0x7f) return fmt::format("'{}'", static_cast<char>(c));
  return fmt::format("0x{:02x}", c);
}

std::string json_kind(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "object";
    case nlohmann::json::value_t::array: return "array";
    case nlohmann::json::value_t::string: {
      std::string s = j.dump();
      if (s.size() > 200) s = s.substr(0, 200) + "...";
      return "string " + s;
    }
    case nlohmann::json::value_t::boolean: return j.get<bool>() ? "true" : "false";
    case nlohmann::json::value_t::number_integer:
      return j.get<std::int64_t>() < 0 ? "negative integer " + j.dump() : "integer " + j.dump();
    case nlohmann::json::value_t::number_unsigned: return "integer " + j.dump();
    case nlohmann::json::value_t::number_float: return "non-integer number " + j.dump();
    case nlohmann::json::value_t::binary: return "binary";
    case nlohmann::json::value_t::discarded: return "discarded value";
  }
  return "unknown";
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& file, std::size_t max_depth,
                                 std::string_view what, std::size_t entity_depth) {
  std::vector<Frame> stack;
  auto cb = [&](int /*depth*/, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) -> bool {
    using E = nlohmann::json::parse_event_t;
    switch (ev) {
      case E::object_start:
      case E::array_start:
        if (stack.size() >= max_depth)
          throw FormatError({file, fmt::format("{} is nested too deeply", what),
                             fmt::format("at most {} levels of arrays/objects", max_depth),
                             fmt::format("deeper nesting under {}", key_path(stack).empty() ? "the top level" : key_path(stack)),
                             "the file is corrupt or not of this format"});
        stack.push_back(Frame{ev == E::object_start, {}, {}});
        break;
      case E::key: {
        auto& f = stack.back();
        f.key = parsed.get_ref<const std::string&>();
        if (!f.keys.insert(f.key).second) {
          std::string where_in = key_path({stack.begin(), stack.end() - 1});
          // Name the entity (tensor) whose key is at depth `entity_depth`, if the duplicate is that deep.
          std::string where = file;
          if (entity_depth > 0 && stack.size() >= entity_depth) where += ": " + stack[entity_depth - 1].key;
          throw FormatError({where,
                             fmt::format("duplicate key {} in {}{}", quote_name(f.key), what,
                                         where_in.empty() ? "" : " under " + where_in),
                             "each key once per object", "the key twice",
                             "JSON readers disagree on duplicates (first or last wins); re-export the file"});
        }
        break;
      }
      case E::object_end:
      case E::array_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case E::value:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError({file, fmt::format("{} is not valid JSON", what), "RFC 8259 JSON in UTF-8", e.what(),
                       "the file is truncated or corrupt; re-download or re-export it"});
  }
}

nlohmann::json read_json_file(const std::filesystem::path& path, bool require_object) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw IoError({path.string(), "cannot open file", "a readable file",
                   std::filesystem::exists(path) ? "not readable" : "no such file", "check the path and permissions"});
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError({path.string(), "read failed", "", "", "check the file system"});
  const std::string text = ss.str();
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    throw FormatError({path.string(), "the file is empty", "a JSON document",
                       text.empty() ? "0 bytes" : std::to_string(text.size()) + " bytes of whitespace only",
                       "the file was truncated or never written; re-download or re-export it"});
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError({path.string(), "invalid JSON", "a JSON document",
                       "parse error at byte " + std::to_string(e.byte),
                       "the file is truncated or not JSON; re-download or re-export it"});
  }
  if (require_object && !j.is_object()) {
    throw FormatError({path.string(), "top-level JSON value is not an object", "an object", json_kind(j),
                       "the file is not a Hugging Face config"});
  }
  return j;
}

std::optional<nlohmann::json> read_json_file_if_present(const std::filesystem::path& path, bool require_object) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  return read_json_file(path, require_object);
}

}  // namespace vlq::io
