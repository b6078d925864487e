// Chat requests on the input side of `vlq generate` / `vlq eval`: OpenAI-style `messages` JSON (and the
// Hugging Face form used by data/heldout) converted to the HF chat format the chat template renders, plus the
// ordered list of image sources (file paths or decoded data: URLs), and the same built from --prompt/--image.
//
// Spec: OpenAI Chat Completions `messages` (content: string | [{"type":"text","text"}, {"type":"image_url",
// "image_url":{"url","detail"?}}]); Hugging Face chat format for multimodal processors (content parts
// {"type":"image", "image"|"url"|"path": ...}, {"type":"text","text":...}); RFC 2397 (data: URLs),
// RFC 4648 §4 (base64), RFC 8089 (file: URLs), RFC 3986 §2.1 (percent-encoding).
//
// Output format (what text::ChatTemplate::render expects, and what the Qwen2.5-VL template counts images in):
//   [{"role": "system"|"user"|"assistant", "content": <string> | [{"type":"image"} | {"type":"text","text":s}, ...]}]
// A string content stays a string; a list keeps its parts in order, one {"type":"image"} per image part.
// Other message keys (name, ...) and part keys (detail, ...) are dropped. images[k] belongs to the k-th
// {"type":"image"} part counted over all messages in order -- the order the template emits <|image_pad|>.
//
// Image references (part value, e.g. image_url.url):
// - "data:image/<fmt>[;param=v...];base64,<payload>": payload decoded (decode_base64), the bytes must sniff as
//   JPEG/PNG/WebP (image::sniff_image_format); decoded size at most MessageOptions::max_image_bytes.
// - "file:///abs/path", "file://localhost/abs/path", "file:/abs/path": percent-decoded absolute path.
// - "http://", "https://": UnsupportedError (vlq never opens network connections); other schemes
//   ("ftp:", "s3:", ...): UnsupportedError. A single letter before ':' is not a scheme (not special on Linux).
// - anything else: a file path; a relative one is joined to MessageOptions::base_dir (the CLI passes the
//   current directory; the held-out reader passes data/heldout/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/image/image.h"

namespace vlq::engine {

// Where one image of a request comes from.
struct ImageSource {
  enum class Kind { kPath, kBytes };
  Kind kind = Kind::kPath;
  // kPath: the resolved path (base_dir / relative path, or the absolute path as given).
  std::filesystem::path path;
  // kBytes: the decoded payload of a data: URL (encoded JPEG/PNG/WebP bytes, not pixels).
  std::vector<std::uint8_t> bytes;
  // kBytes: the declared media type, lower-cased, e.g. "image/png" (may differ from the sniffed format).
  std::string media_type;
  // Where it was written, for messages: "<origin>: messages[1].content[0]" or "--image 2".
  std::string origin;
};

// Decodes an image source to RGB (image::load_image / image::decode_image). Errors as those functions, their
// messages naming the path, or `origin` for bytes.
image::RgbImage load_image_source(const ImageSource& source, const image::ImageDecodeOptions& options = {});

struct MessageOptions {
  // Relative image paths are joined to this folder. Empty: they stay relative (i.e. to the process's
  // current directory).
  std::filesystem::path base_dir;
  // Largest decoded data: URL payload in bytes (checked from the encoded length before decoding).
  std::size_t max_image_bytes = std::size_t{32} << 20;
  // Largest messages file read by load_messages_file, in bytes.
  std::size_t max_file_bytes = std::size_t{256} << 20;
  // When true, a path image that does not exist (or is a folder) is an IoError at parse time, naming the
  // message and part; when false the check is left to load_image_source.
  bool check_files_exist = true;
};

// A converted request.
struct ParsedMessages {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // HF chat format (file comment)
  std::vector<ImageSource> images;                                    // one per {"type":"image"} part, in order
};

// Converts a JSON value: either a list of messages or an object with a "messages" list (other keys of that
// object are ignored). `origin` names the document in errors (a file path, "<request>").
// Accepted per message: {"role": "system"|"user"|"assistant", "content": string | list of parts}. Parts:
//   {"type":"text","text":string}
//   {"type":"image_url","image_url":{"url":string,...}} or {"type":"image_url","image_url":string}
//   {"type":"image","image"|"url"|"path":string}  (HF form, as in data/heldout/heldout.jsonl)
// Throws (where = "<origin>: messages[i]" or "<origin>: messages[i].content[j]"):
// - FormatError: not a list / no "messages" list; empty list; message not an object; missing or non-string
//   role; unknown role; missing/null/non-string-non-list content; part not an object; missing/unknown "type";
//   missing or non-string text/url; malformed data: URL (no ",", not base64, not image/*, bad base64 --
//   the message says which character at which offset); data: payload that is not JPEG/PNG/WebP; bad
//   percent-encoding in a file: URL.
// - UnsupportedError: role "tool"/"function"/"developer" or tool_calls; part types "video", "video_url",
//   "input_audio", "audio", "file"; http(s) and other URL schemes; file: URL with a remote host; data: payload
//   larger than max_image_bytes.
// - IoError: (check_files_exist) image file missing or a folder.
ParsedMessages parse_messages(const nlohmann::ordered_json& json, const MessageOptions& options = {},
                              const std::string& origin = "<messages>");

// Reads and converts a messages file (JSON, see parse_messages). Throws IoError (missing/unreadable/larger
// than max_file_bytes), FormatError (invalid JSON with byte offset, duplicate keys) and what parse_messages
// throws, naming the file.
ParsedMessages load_messages_file(const std::filesystem::path& file, const MessageOptions& options = {});

// Builds the request of `vlq generate --prompt TEXT [--image PATH]... [--system TEXT]`:
//   [{"role":"system","content":system}]  (only when `system` is set; otherwise the template adds its default)
//   {"role":"user","content":[{"type":"image"} x images..., {"type":"text","text":prompt}]}
// images first, then the text, as the Qwen2.5-VL examples do. Each entry of `images` is an image reference
// as in the file comment (path, file: URL or data: URL). Throws UsageError when `prompt` is empty and there
// are no images, and what parse_messages throws for a reference (origin "--image N", 1-based).
ParsedMessages build_prompt_messages(const std::string& prompt, const std::vector<std::string>& images,
                                     const std::optional<std::string>& system = std::nullopt,
                                     const MessageOptions& options = {});

// Resolves one image reference (see the file comment) to a source. `origin` names it in errors. Throws as
// parse_messages does for a reference.
ImageSource resolve_image_reference(std::string_view ref, const MessageOptions& options, const std::string& origin);

// Standard base64 (RFC 4648 §4, alphabet A-Z a-z 0-9 + /). ASCII whitespace (space, \t, \r, \n) is skipped
// (MIME line breaks); '=' padding is optional but, when present, must end the input and bring the length to a
// multiple of 4; non-zero unused bits in the last character are accepted (as Python's base64.b64decode).
// Throws FormatError{where} naming the first bad character and its offset, a length of 4k+1 characters,
// misplaced padding; UnsupportedError when the decoded size would exceed `max_bytes`.
std::vector<std::uint8_t> decode_base64(std::string_view text, std::size_t max_bytes, const std::string& where);

// Percent-decoding of a URL component (RFC 3986 §2.1: "%XX" with hex digits, any case; '+' is kept).
// Throws FormatError{where} for "%" not followed by two hex digits, naming the offset.
std::string percent_decode(std::string_view text, const std::string& where);

}  // namespace vlq::engine
