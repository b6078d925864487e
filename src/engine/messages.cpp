// OpenAI / Hugging Face chat `messages` -> HF chat format + ordered image sources (see vlq/engine/messages.h).
#include "vlq/engine/messages.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <system_error>

#include "vlq/io/json.h"

namespace vlq::engine {

namespace {

using ojson = nlohmann::ordered_json;

std::string kind_of(const ojson& j) {
  switch (j.type()) {
    case ojson::value_t::null: return "null";
    case ojson::value_t::object: return "an object";
    case ojson::value_t::array: return "a list";
    case ojson::value_t::string: return "a string";
    case ojson::value_t::boolean: return "a boolean";
    case ojson::value_t::number_integer:
    case ojson::value_t::number_unsigned: return "an integer";
    case ojson::value_t::number_float: return "a number";
    default: return "an unsupported JSON value";
  }
}

// Short quoted excerpt of a string for messages.
std::string excerpt(std::string_view s, std::size_t n = 40) {
  std::string out;
  for (char c : s.substr(0, n)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) out += fmt::format("\\x{:02x}", u);
    else out += c;
  }
  if (s.size() > n) out += "...";
  return "'" + out + "'";
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "scheme" of a URL-like reference: letters/digits/+/-/. after a letter, then ':'; at least two characters
// (so "C:" style drive letters are not schemes). Empty when there is none.
std::string url_scheme(std::string_view ref) {
  const std::size_t colon = ref.find(':');
  if (colon == std::string_view::npos || colon < 2) return {};
  if (!std::isalpha(static_cast<unsigned char>(ref[0]))) return {};
  for (std::size_t i = 1; i < colon; ++i) {
    const auto c = static_cast<unsigned char>(ref[i]);
    if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return {};
  }
  return lower_ascii(ref.substr(0, colon));
}

ImageSource resolve_data_url(std::string_view ref, const MessageOptions& options, const std::string& origin) {
  const std::size_t comma = ref.find(',');
  if (comma == std::string_view::npos)
    throw FormatError({origin, "malformed data: URL", "data:image/<format>;base64,<payload>",
                       "no ',' after the media type", "encode the image as data:image/png;base64,..."});
  const std::string header = lower_ascii(ref.substr(5, comma - 5));  // after "data:"
  std::vector<std::string> fields;
  for (std::size_t start = 0;;) {
    const std::size_t semi = header.find(';', start);
    fields.push_back(header.substr(start, semi == std::string::npos ? std::string::npos : semi - start));
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  const std::string& media_type = fields.front();
  if (media_type.rfind("image/", 0) != 0 || media_type.size() == 6)
    throw FormatError({origin, "data: URL is not an image", "media type image/<format>",
                       media_type.empty() ? std::string("no media type") : "'" + media_type + "'",
                       "use data:image/png;base64,... (or image/jpeg, image/webp)"});
  if (fields.size() < 2 || fields.back() != "base64")
    throw FormatError({origin, "data: URL is not base64-encoded", "';base64' before the ','",
                       "'" + header + "'", "encode the image bytes in base64: data:" + media_type + ";base64,..."});
  const std::string_view payload = ref.substr(comma + 1);
  ImageSource src;
  src.kind = ImageSource::Kind::kBytes;
  src.media_type = media_type;
  src.origin = origin;
  src.bytes = decode_base64(payload, options.max_image_bytes, origin + " (data: URL payload)");
  if (src.bytes.empty())
    throw FormatError({origin, "data: URL has an empty payload", "base64-encoded image bytes", "nothing", ""});
  if (!image::sniff_image_format(src.bytes))
    throw FormatError({origin, "data: URL payload is not an image vlq can decode", "JPEG, PNG or WebP bytes",
                       image::describe_image_signature(src.bytes),
                       "check that the payload is the base64 of the image file"});
  return src;
}

ImageSource path_source(std::filesystem::path p, const MessageOptions& options, const std::string& origin) {
  if (p.empty())
    throw FormatError({origin, "empty image reference", "a file path, file: URL or data: URL", "''", ""});
  // A NUL would cut the path short at the system call (a.png\0.txt opens a.png): refuse, do not truncate.
  if (p.native().find('\0') != std::string::npos)
    throw FormatError({origin, "image path contains a NUL character", "a file path without NUL", "a NUL byte", ""});
  const bool resolved = p.is_relative() && !options.base_dir.empty();  // the hint below names base_dir only then
  if (resolved) p = options.base_dir / p;
  p = p.lexically_normal();
  if (options.check_files_exist) {
    std::error_code ec;
    const auto st = std::filesystem::status(p, ec);
    if (ec || !std::filesystem::exists(st))
      throw IoError({origin, "image file not found", "", p.string(),
                     !resolved ? "check the path"
                               : "relative paths are resolved against " + options.base_dir.string()});
    if (std::filesystem::is_directory(st))
      throw IoError({origin, "image path is a folder", "a file", p.string(), "name an image file"});
  }
  ImageSource src;
  src.kind = ImageSource::Kind::kPath;
  src.path = std::move(p);
  src.origin = origin;
  return src;
}

ImageSource resolve_file_url(std::string_view ref, const MessageOptions& options, const std::string& origin) {
  std::string_view rest = ref.substr(5);  // after "file:"
  if (rest.rfind("//", 0) == 0) {
    rest.remove_prefix(2);
    const std::size_t slash = rest.find('/');
    const std::string host = lower_ascii(rest.substr(0, slash));
    if (!host.empty() && host != "localhost")
      throw UnsupportedError({origin, "file: URL on a remote host", "file:///path or file://localhost/path",
                              "host '" + host + "'", "copy the image to this machine and pass its path"});
    if (slash == std::string_view::npos)
      throw FormatError({origin, "file: URL without a path", "file:///absolute/path", excerpt(ref), ""});
    rest.remove_prefix(slash);
  }
  if (rest.empty() || rest[0] != '/')
    throw FormatError({origin, "file: URL with a relative path", "file:///absolute/path", excerpt(ref),
                       "pass a plain relative path instead of a file: URL"});
  const std::size_t q = rest.find_first_of("?#");
  if (q != std::string_view::npos) rest = rest.substr(0, q);
  return path_source(std::filesystem::path(percent_decode(rest, origin)), options, origin);
}

void require_string(const ojson& j, const std::string& where, const std::string& key, const std::string& expected) {
  if (!j.is_string())
    throw FormatError({where, "'" + key + "' must be a string", expected, kind_of(j), ""});
}

}  // namespace

std::vector<std::uint8_t> decode_base64(std::string_view text, std::size_t max_bytes, const std::string& where) {
  static constexpr std::array<std::int8_t, 256> kTable = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return t;
  }();
  auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  // Upper bound of the decoded size from the encoded length, checked before allocating.
  if (text.size() / 4 * 3 > max_bytes + 3)
    throw UnsupportedError({where, "base64 data is too large",
                            fmt::format("at most {} decoded bytes", max_bytes),
                            fmt::format("about {} bytes", text.size() / 4 * 3), "use a smaller image"});
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3 + 3);
  std::uint32_t acc = 0;
  std::size_t nchars = 0;   // alphabet characters seen
  std::size_t npad = 0;     // '=' seen
  std::size_t first_pad = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (is_ws(c)) continue;
    if (c == '=') {
      if (npad == 0) first_pad = i;
      ++npad;
      continue;
    }
    const int v = kTable[static_cast<unsigned char>(c)];
    if (v < 0)
      throw FormatError({where, "invalid base64", "characters A-Z a-z 0-9 + / and '=' padding",
                         fmt::format("{} at offset {}", excerpt(std::string_view(&text[i], 1)), i),
                         c == '-' || c == '_' ? "this looks like URL-safe base64; use the standard alphabet (+ /)"
                                              : "check the data: URL payload"});
    if (npad > 0)
      throw FormatError({where, "invalid base64: data after '=' padding", "'=' only at the end",
                         fmt::format("'=' at offset {} followed by data at offset {}", first_pad, i), ""});
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    ++nchars;
    if (nchars % 4 == 0) {
      out.push_back(static_cast<std::uint8_t>(acc >> 16));
      out.push_back(static_cast<std::uint8_t>(acc >> 8));
      out.push_back(static_cast<std::uint8_t>(acc));
      acc = 0;
    }
  }
  const std::size_t rem = nchars % 4;
  if (rem == 1)
    throw FormatError({where, "invalid base64: truncated", "a length of 4k, 4k+2 or 4k+3 characters",
                       fmt::format("{} characters", nchars), "the payload was probably cut off"});
  if (npad > 0 && (rem == 0 || (rem + npad) % 4 != 0 || npad > 2))
    throw FormatError({where, "invalid base64: wrong '=' padding",
                       rem == 0 ? std::string("no padding after a multiple of 4 characters")
                                : fmt::format("{} '=' after {} characters", 4 - rem, nchars),
                       fmt::format("{} '='", npad), ""});
  if (rem == 2) {
    out.push_back(static_cast<std::uint8_t>(acc >> 4));
  } else if (rem == 3) {
    out.push_back(static_cast<std::uint8_t>(acc >> 10));
    out.push_back(static_cast<std::uint8_t>(acc >> 2));
  }
  if (out.size() > max_bytes)
    throw UnsupportedError({where, "base64 data is too large", fmt::format("at most {} decoded bytes", max_bytes),
                            fmt::format("{} bytes", out.size()), "use a smaller image"});
  return out;
}

std::string percent_decode(std::string_view text, const std::string& where) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    const int hi = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
    const int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      throw FormatError({where, "bad percent-encoding in URL", "'%' followed by two hex digits",
                         fmt::format("{} at offset {}", excerpt(text.substr(i, 3)), i), "write '%' as %25"});
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

ImageSource resolve_image_reference(std::string_view ref, const MessageOptions& options, const std::string& origin) {
  const std::string scheme = url_scheme(ref);
  if (scheme.empty()) return path_source(std::filesystem::path(std::string(ref)), options, origin);
  if (scheme == "data") return resolve_data_url(ref, options, origin);
  if (scheme == "file") return resolve_file_url(ref, options, origin);
  if (scheme == "http" || scheme == "https")
    throw UnsupportedError({origin, "image URLs are not fetched", "a file path, file: URL or data: URL",
                            excerpt(ref, 80), "vlq does not open network connections: download the image and "
                            "pass its path, or send it inline as data:image/...;base64,..."});
  throw UnsupportedError({origin, "unsupported URL scheme in image reference", "a file path, file: URL or data: URL",
                          "scheme '" + scheme + "'", "pass a local file path"});
}

namespace {
// e's details with `origin` (e.g. "m.json: messages[0].content[1]") in front of its location, unless already there.
ErrorInfo with_origin(const Error& e, const std::string& origin) {
  ErrorInfo info = e.info();
  if (!origin.empty() && info.where.rfind(origin, 0) != 0) info.where = origin + ": " + info.where;
  return info;
}
}  // namespace

image::RgbImage load_image_source(const ImageSource& source, const image::ImageDecodeOptions& options) {
  if (source.kind != ImageSource::Kind::kPath) return image::decode_image(source.bytes, options, source.origin);
  // A file's decode errors name the file; the message part that referenced it goes in front.
  try {
    return image::load_image(source.path, options);
  } catch (const FormatError& e) {
    throw FormatError(with_origin(e, source.origin));
  } catch (const IoError& e) {
    throw IoError(with_origin(e, source.origin));
  } catch (const UnsupportedError& e) {
    throw UnsupportedError(with_origin(e, source.origin));
  }
}

namespace {

// The role of message `msg` (system, user or assistant), checked; tool calling is refused.
std::string message_role(const ojson& msg, const std::string& where) {
  const auto role_it = msg.find("role");
  if (role_it == msg.end())
    throw FormatError({where, "message has no role", "\"role\": \"system\", \"user\" or \"assistant\"",
                       "no \"role\" key", ""});
  require_string(*role_it, where, "role", "\"system\", \"user\" or \"assistant\"");
  const std::string role = role_it->get<std::string>();
  if (role == "tool" || role == "function" || role == "developer" || role == "ipython")
    throw UnsupportedError({where, "unsupported role", "system, user or assistant", "'" + role + "'",
                            role == "developer" ? "use \"system\"" : "tool calling is not supported"});
  if (role != "system" && role != "user" && role != "assistant")
    throw FormatError({where, "unknown role", "system, user or assistant", excerpt(role), ""});
  if (msg.contains("tool_calls") && !msg["tool_calls"].is_null())
    throw UnsupportedError({where, "tool_calls are not supported", "a message with content", "tool_calls", ""});
  return role;
}

// The image reference of an "image_url" part (OpenAI: {"url"} or a string) or an "image" part (HF:
// "image" | "url" | "path").
std::string image_reference_of(const ojson& part, const std::string& type, const std::string& pwhere) {
  if (type == "image_url") {
    const auto u = part.find("image_url");
    if (u == part.end())
      throw FormatError({pwhere, "image_url part has no image_url", "\"image_url\": {\"url\": ...}",
                         "no \"image_url\" key", ""});
    if (u->is_string()) return u->get<std::string>();
    if (!u->is_object())
      throw FormatError({pwhere, "image_url must be an object or a string", "{\"url\": string} or a string",
                         kind_of(*u), ""});
    const auto url = u->find("url");
    if (url == u->end())
      throw FormatError({pwhere, "image_url has no url", "\"image_url\": {\"url\": string}", "no \"url\" key", ""});
    require_string(*url, pwhere, "image_url.url", "a path, file: URL or data: URL");
    return url->get<std::string>();
  }
  for (const char* k : {"image", "url", "path"}) {
    const auto it = part.find(k);
    if (it != part.end() && !it->is_null()) {
      require_string(*it, pwhere, k, "a path, file: URL or data: URL");
      return it->get<std::string>();
    }
  }
  throw FormatError({pwhere, "image part has no image reference",
                     "\"image\" (or \"url\", \"path\"): a path, file: URL or data: URL", "none of them", ""});
}

// One content part → its HF form ({"type":"text","text"} or {"type":"image"}); an image's source is appended
// to out.images.
ojson convert_part(const ojson& part, const std::string& pwhere, const MessageOptions& options, ParsedMessages& out) {
  if (!part.is_object())
    throw FormatError({pwhere, "content part must be an object", "{\"type\": \"text\" | \"image_url\" | \"image\", ...}",
                       kind_of(part), ""});
  const auto type_it = part.find("type");
  if (type_it == part.end())
    throw FormatError({pwhere, "content part has no type", "\"type\": \"text\", \"image_url\" or \"image\"",
                       "no \"type\" key", ""});
  require_string(*type_it, pwhere, "type", "\"text\", \"image_url\" or \"image\"");
  const std::string type = type_it->get<std::string>();
  if (type == "text") {
    const auto t = part.find("text");
    if (t == part.end()) throw FormatError({pwhere, "text part has no text", "\"text\": string", "no \"text\" key", ""});
    require_string(*t, pwhere, "text", "a string");
    return ojson{{"type", "text"}, {"text", *t}};
  }
  if (type == "image_url" || type == "image") {
    out.images.push_back(resolve_image_reference(image_reference_of(part, type, pwhere), options, pwhere));
    return ojson{{"type", "image"}};
  }
  if (type == "video" || type == "video_url" || type == "input_audio" || type == "audio" || type == "audio_url" ||
      type == "file" || type == "input_file")
    throw UnsupportedError({pwhere, "unsupported content part", "text or image parts", "type '" + type + "'",
                            "vlq handles text and images only"});
  throw FormatError({pwhere, "unknown content part type", "\"text\", \"image_url\" or \"image\"", excerpt(type), ""});
}

// One message → {"role", "content": string | [parts]}.
ojson convert_message(const ojson& msg, const std::string& where, const MessageOptions& options, ParsedMessages& out) {
  if (!msg.is_object())
    throw FormatError({where, "message must be an object", "{\"role\": ..., \"content\": ...}", kind_of(msg), ""});
  ojson converted = ojson::object();
  converted["role"] = message_role(msg, where);
  const auto content_it = msg.find("content");
  if (content_it == msg.end() || content_it->is_null())
    throw FormatError({where, "message has no content", "\"content\": a string or a list of parts",
                       content_it == msg.end() ? "no \"content\" key" : "null", ""});
  const ojson& content = *content_it;
  if (content.is_string()) {
    converted["content"] = content;
    return converted;
  }
  if (!content.is_array())
    throw FormatError({where, "content must be a string or a list of parts", "a string or a list", kind_of(content), ""});
  ojson parts = ojson::array();
  for (std::size_t j = 0; j < content.size(); ++j)
    parts.push_back(convert_part(content[j], fmt::format("{}.content[{}]", where, j), options, out));
  converted["content"] = std::move(parts);
  return converted;
}

}  // namespace

ParsedMessages parse_messages(const ojson& json, const MessageOptions& options, const std::string& origin) {
  const ojson* list = &json;
  if (json.is_object()) {
    const auto it = json.find("messages");
    if (it == json.end())
      throw FormatError({origin, "no messages", "a list of messages or an object with a \"messages\" list",
                         "an object without \"messages\"", ""});
    list = &*it;
  }
  if (!list->is_array())
    throw FormatError({origin, "messages must be a list", "a list of {\"role\", \"content\"} objects",
                       kind_of(*list), ""});
  if (list->empty())
    throw FormatError({origin, "empty message list", "at least one message", "[]", ""});
  ParsedMessages out;
  for (std::size_t i = 0; i < list->size(); ++i)
    out.messages.push_back(convert_message((*list)[i], fmt::format("{}: messages[{}]", origin, i), options, out));
  return out;
}

ParsedMessages load_messages_file(const std::filesystem::path& file, const MessageOptions& options) {
  const std::string name = file.string();
  std::error_code ec;
  const auto st = std::filesystem::status(file, ec);
  if (ec || !std::filesystem::exists(st))
    throw IoError({name, "messages file not found", "", "", "check the path"});
  if (std::filesystem::is_directory(st))
    throw IoError({name, "messages path is a folder", "a JSON file", "a folder", ""});
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) throw IoError({name, "cannot read the messages file", "", ec.message(), ""});
  if (size > options.max_file_bytes)
    throw IoError({name, "messages file is too large", fmt::format("at most {} bytes", options.max_file_bytes),
                   fmt::format("{} bytes", size), "send images as file paths rather than inline data: URLs"});
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError({name, "cannot open the messages file", "", "", "check the permissions"});
  std::string text(static_cast<std::size_t>(size), '\0');
  if (size > 0 && !in.read(text.data(), static_cast<std::streamsize>(size)))
    throw IoError({name, "cannot read the messages file", fmt::format("{} bytes", size),
                   fmt::format("{} bytes", in.gcount()), ""});
  // Strict parse first (syntax errors with byte offsets, duplicate keys, nesting depth), then again as
  // ordered_json, which the strict parser does not produce.
  (void)io::parse_json_strict(text, name, 64, "messages file");
  return parse_messages(ojson::parse(text), options, name);
}

ParsedMessages build_prompt_messages(const std::string& prompt, const std::vector<std::string>& images,
                                     const std::optional<std::string>& system, const MessageOptions& options) {
  if (prompt.empty() && images.empty())
    throw UsageError({"--prompt", "nothing to send", "a prompt and/or images", "an empty prompt and no --image",
                      "pass --prompt TEXT"});
  ParsedMessages out;
  if (system) out.messages.push_back(ojson{{"role", "system"}, {"content", *system}});
  ojson content = ojson::array();
  for (std::size_t i = 0; i < images.size(); ++i) {
    out.images.push_back(resolve_image_reference(images[i], options, fmt::format("--image {}", i + 1)));
    content.push_back(ojson{{"type", "image"}});
  }
  if (!prompt.empty()) content.push_back(ojson{{"type", "text"}, {"text", prompt}});
  out.messages.push_back(ojson{{"role", "user"}, {"content", std::move(content)}});
  return out;
}

}  // namespace vlq::engine
