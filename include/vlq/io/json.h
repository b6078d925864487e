// JSON reading for every file vlq reads: `read_json_file` (the one JSON-file reader: configs, calibration
// stats, quant configs; `read_json_file_if_present` for optional files) and strict parsing for safetensors
// headers and checkpoint indexes (duplicate keys and excessive nesting are errors, unlike nlohmann's
// default which keeps the last duplicate).
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace vlq::io {

// Reads a JSON file (RFC 8259). Throws IoError (cannot open/read) or FormatError (invalid JSON, or not an
// object when `require_object`), naming the file and the parser's byte offset.
nlohmann::json read_json_file(const std::filesystem::path& path, bool require_object = true);
// The same for an optional metadata file (config.json, hf_quant_config.json, tokenizer_config.json, ...):
// nullopt when nothing exists at `path`; otherwise read_json_file, with its errors (a file that exists but
// cannot be read or is not valid JSON is an error, never "absent").
std::optional<nlohmann::json> read_json_file_if_present(const std::filesystem::path& path, bool require_object = true);

// Parses `text` as exactly one JSON value (RFC 8259; UTF-8 validated by nlohmann's lexer; no comments).
// Throws FormatError{where = file}: syntax error (with byte position), a key repeated in the same object
// (names the key and the enclosing keys), or arrays/objects nested deeper than `max_depth`.
// `what` names the document in messages, e.g. "safetensors header". `entity_depth` is the object depth
// whose keys name entities (1 for tensor names in a safetensors header, 2 for the index's weight_map):
// a duplicate at or below that depth gets "file: <entity>" as its ErrorInfo::where.
nlohmann::json parse_json_strict(std::string_view text, const std::string& file, std::size_t max_depth,
                                 std::string_view what, std::size_t entity_depth = 0);

// Short description of a JSON value's type for error messages: "string", "array", "negative integer", ...
std::string json_kind(const nlohmann::json& j);

// A byte shown in an error message: 'x' if printable ASCII, else 0xNN.
std::string show_byte(unsigned char c);

// Quotes a name for messages, e.g. "a.weight" -> "'a.weight'"; long names are shortened.
std::string quote_name(std::string_view s);

}  // namespace vlq::io
