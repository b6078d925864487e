// Calibration data sets: text / image+caption readers, deterministic selection, chat form (see
// vlq/quant/calib_data.h).
#include "vlq/quant/calib_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <limits>
#include <random>
#include <system_error>

#include "vlq/io/json.h"
#include "vlq/text/utf8.h"

namespace vlq::quant {

namespace fs = std::filesystem;

namespace {

constexpr std::uintmax_t kMaxCalibFileBytes = std::uintmax_t{1} << 30;
constexpr std::uint64_t kImageSeedOffset = 0x9E3779B97F4A7C15ULL;
constexpr std::size_t kMaxListed = 20;

std::string read_text_file(const fs::path& file, const char* what) {
  const std::string name = file.string();
  std::error_code ec;
  const auto st = fs::status(file, ec);
  if (ec || !fs::exists(st)) throw IoError({name, fmt::format("{} not found", what), "", "", "check the path"});
  if (fs::is_directory(st)) throw IoError({name, fmt::format("{} is a folder", what), "a file", "a folder", ""});
  const auto size = fs::file_size(file, ec);
  if (ec) throw IoError({name, fmt::format("cannot read {}", what), "", ec.message(), ""});
  if (size > kMaxCalibFileBytes)
    throw IoError({name, fmt::format("{} is too large", what), fmt::format("at most {} bytes", kMaxCalibFileBytes),
                   fmt::format("{} bytes", size), "use a smaller sample of the data"});
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError({name, fmt::format("cannot open {}", what), "", "", "check the permissions"});
  std::string text(static_cast<std::size_t>(size), '\0');
  if (size > 0 && !in.read(text.data(), static_cast<std::streamsize>(size)))
    throw IoError({name, fmt::format("cannot read {}", what), fmt::format("{} bytes", size),
                   fmt::format("{} bytes", in.gcount()), ""});
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  return text;
}

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Calls fn(line_number (1-based), line without '\n') for each line, after checking UTF-8.
template <class Fn>
void for_each_line(const std::string& text, const std::string& file, Fn&& fn) {
  std::size_t start = 0;
  for (std::size_t lineno = 1; start < text.size(); ++lineno) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    std::size_t bad = 0;
    if (!text::utf8::is_valid(line, &bad))
      throw FormatError({fmt::format("{}:{}", file, lineno), "invalid UTF-8", "UTF-8 text",
                         fmt::format("byte 0x{:02x} at column {}", static_cast<unsigned char>(line[bad]), bad + 1),
                         "convert the file to UTF-8"});
    fn(lineno, line);
    start = end + 1;
  }
}

bool looks_like_jsonl(const fs::path& file, const std::string& text) {
  if (lower_ascii(file.extension().string()) == ".jsonl") return true;
  const std::string_view t = trim(text);
  return !t.empty() && t.front() == '{';
}

std::string json_kind_of(const nlohmann::json& j) { return io::json_kind(j); }

// Parses one JSONL line into an object. Throws FormatError naming file:line.
nlohmann::json parse_record(std::string_view line, const std::string& where) {
  nlohmann::json j = io::parse_json_strict(line, where, 64, "JSONL record");
  if (!j.is_object())
    throw FormatError({where, "JSONL record is not an object", "one JSON object per line", json_kind_of(j), ""});
  return j;
}

const nlohmann::json& required_string(const nlohmann::json& rec, const char* key, const std::string& where,
                                      const char* meaning) {
  const auto it = rec.find(key);
  if (it == rec.end()) {
    std::string keys;
    for (const auto& [k, v] : rec.items()) keys += (keys.empty() ? "" : ", ") + k;
    throw FormatError({where, fmt::format("JSONL record has no \"{}\"", key), fmt::format("\"{}\": {}", key, meaning),
                       keys.empty() ? std::string("an empty object") : "keys " + keys, ""});
  }
  if (!it->is_string())
    throw FormatError({where, fmt::format("\"{}\" must be a string", key), meaning, json_kind_of(*it), ""});
  return *it;
}

std::vector<CalibSample> load_images_jsonl(const fs::path& file) {
  const std::string name = file.string();
  const std::string text = read_text_file(file, "calibration image list");
  const fs::path base = file.parent_path();
  std::vector<CalibSample> out;
  for_each_line(text, name, [&](std::size_t lineno, std::string_view line) {
    if (trim(line).empty()) return;
    const std::string where = fmt::format("{}:{}", name, lineno);
    const nlohmann::json rec = parse_record(line, where);
    const std::string image = required_string(rec, "image", where, "image path relative to the JSONL file").get<std::string>();
    const std::string caption(trim(required_string(rec, "text", where, "the caption").get<std::string>()));
    if (image.empty()) throw FormatError({where, "empty \"image\" path", "an image path", "\"\"", ""});
    if (caption.empty())
      throw FormatError({where, "empty caption", "\"text\": a non-empty caption", "\"\"",
                         "write a caption or remove the line"});
    fs::path p(image);
    if (p.is_relative()) p = base / p;
    p = p.lexically_normal();
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec || !fs::exists(st))
      throw IoError({where, "calibration image not found", "", p.string(),
                     "\"image\" paths are relative to the JSONL file's folder"});
    if (fs::is_directory(st)) throw IoError({where, "calibration image is a folder", "a file", p.string(), ""});
    out.push_back({CalibKind::kImageCaption, caption, p, where});
  });
  if (out.empty())
    throw ConfigError({name, "no calibration images", "at least one {\"image\", \"text\"} line", "none", ""});
  return out;
}

bool is_image_ext(const std::string& ext) {
  const std::string e = lower_ascii(ext);
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".webp";
}

std::vector<CalibSample> load_images_dir(const fs::path& dir) {
  const std::string name = dir.string();
  std::vector<fs::path> images;
  std::vector<fs::path> captions;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path p = it->path();
    const std::string fname = p.filename().string();
    if (fname.empty() || fname[0] == '.') continue;
    std::error_code ec2;
    if (!it->is_regular_file(ec2)) continue;
    if (is_image_ext(p.extension().string())) images.push_back(p);
    else if (lower_ascii(p.extension().string()) == ".txt") captions.push_back(p);
  }
  if (ec) throw IoError({name, "cannot list the calibration image folder", "", ec.message(), ""});
  std::sort(images.begin(), images.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  if (images.empty())
    throw ConfigError({name, "no calibration images in the folder", "*.png, *.jpg, *.jpeg or *.webp files",
                       "none", "or pass a JSONL file with {\"image\", \"text\"} lines"});
  std::vector<CalibSample> out;
  std::vector<std::string> missing;
  std::vector<std::string> empty;
  for (const fs::path& img : images) {
    fs::path txt = img;
    txt.replace_extension(".txt");
    std::error_code ec2;
    if (!fs::is_regular_file(txt, ec2)) {
      missing.push_back(img.filename().string());
      continue;
    }
    const std::string text = read_text_file(txt, "caption file");
    std::string caption;
    for_each_line(text, txt.string(), [&](std::size_t, std::string_view line) {
      if (caption.empty()) caption = std::string(trim(line));
    });
    if (caption.empty()) {
      empty.push_back(txt.filename().string());
      continue;
    }
    out.push_back({CalibKind::kImageCaption, caption, img, txt.string()});
  }
  // Caption files whose image is missing (a misnamed or deleted image) are reported, not silently skipped.
  std::vector<std::string> orphans;
  for (const fs::path& txt : captions) {
    bool found = false;
    for (const char* ext : {".png", ".jpg", ".jpeg", ".webp", ".PNG", ".JPG", ".JPEG", ".WEBP"}) {
      fs::path img = txt;
      img.replace_extension(ext);
      std::error_code ec2;
      if (fs::is_regular_file(img, ec2)) {
        found = true;
        break;
      }
    }
    if (!found) orphans.push_back(txt.filename().string());
  }
  std::sort(orphans.begin(), orphans.end());
  if (!missing.empty() || !empty.empty() || !orphans.empty()) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (std::size_t i = 0; i < v.size() && i < kMaxListed; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > kMaxListed) s += fmt::format(" and {} more", v.size() - kMaxListed);
      return s;
    };
    std::string found;
    if (!missing.empty()) found = fmt::format("{} image(s) without a caption file: {}", missing.size(), list(missing));
    if (!empty.empty())
      found += fmt::format("{}{} empty caption file(s): {}", found.empty() ? "" : "; ", empty.size(), list(empty));
    if (!orphans.empty())
      found += fmt::format("{}{} caption file(s) without an image: {}", found.empty() ? "" : "; ", orphans.size(),
                           list(orphans));
    throw ConfigError({name, "calibration images and captions do not pair up",
                       "a same-named .txt caption next to each image (NAME.png + NAME.txt)", found,
                       "write a one-line caption into NAME.txt for each image; remove or rename unpaired files"});
  }
  return out;
}

// Unbiased uniform integer in [0, bound) from a 64-bit engine (bound >= 1).
std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t bound) {
  const std::uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const std::uint64_t x = rng();
    if (x >= threshold) return x % bound;
  }
}

}  // namespace

const char* calib_kind_name(CalibKind k) noexcept {
  return k == CalibKind::kText ? "text" : "image_caption";
}

std::vector<CalibSample> load_calib_text(const fs::path& file) {
  const std::string name = file.string();
  const std::string text = read_text_file(file, "calibration text file");
  const bool jsonl = looks_like_jsonl(file, text);
  std::vector<CalibSample> out;
  for_each_line(text, name, [&](std::size_t lineno, std::string_view line) {
    if (trim(line).empty()) return;
    const std::string where = fmt::format("{}:{}", name, lineno);
    if (!jsonl) {
      out.push_back({CalibKind::kText, std::string(trim(line)), {}, where});
      return;
    }
    const nlohmann::json rec = parse_record(line, where);
    std::string t(trim(required_string(rec, "text", where, "the sample text").get<std::string>()));
    if (t.empty()) return;
    out.push_back({CalibKind::kText, std::move(t), {}, where});
  });
  if (out.empty())
    throw ConfigError({name, "no calibration text samples", jsonl ? "JSONL lines with a non-empty \"text\"" : "non-empty lines",
                       "none (blank lines and empty texts are skipped)", ""});
  return out;
}

std::vector<CalibSample> load_calib_images(const fs::path& dir_or_jsonl) {
  std::error_code ec;
  const auto st = fs::status(dir_or_jsonl, ec);
  if (ec || !fs::exists(st))
    throw IoError({dir_or_jsonl.string(), "calibration images not found", "a folder or a JSONL file", "", "check the path"});
  if (fs::is_directory(st)) return load_images_dir(dir_or_jsonl);
  return load_images_jsonl(dir_or_jsonl);
}

std::vector<std::size_t> calib_shuffle_order(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (std::size_t i = n; i-- > 1;) {
    const auto j = static_cast<std::size_t>(uniform_below(rng, static_cast<std::uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

std::vector<CalibSample> select_calib_samples(const std::vector<CalibSample>& text_pool,
                                              const std::vector<CalibSample>& image_pool, std::size_t samples,
                                              std::uint64_t seed) {
  if (samples == 0)
    throw UsageError({"--samples", "no calibration samples requested", "at least 1", "0", ""});
  if (text_pool.empty() && image_pool.empty())
    throw ConfigError({"calibration data", "no calibration samples", "--calib-text and/or --calib-images",
                       "empty pools", ""});
  const std::vector<std::size_t> t_order = calib_shuffle_order(text_pool.size(), seed);
  const std::vector<std::size_t> i_order = calib_shuffle_order(image_pool.size(), seed + kImageSeedOffset);
  std::vector<CalibSample> out;
  out.reserve(std::min(samples, text_pool.size() + image_pool.size()));
  std::size_t ti = 0, ii = 0;
  bool image_turn = true;
  while (out.size() < samples && (ti < t_order.size() || ii < i_order.size())) {
    const bool take_image = ii < i_order.size() && (image_turn || ti >= t_order.size());
    if (take_image) out.push_back(image_pool[i_order[ii++]]);
    else out.push_back(text_pool[t_order[ti++]]);
    image_turn = !image_turn;
  }
  return out;
}

nlohmann::ordered_json calib_sample_messages(const CalibSample& sample) {
  using ojson = nlohmann::ordered_json;
  if (sample.kind != CalibKind::kImageCaption)
    throw UsageError({sample.source, "text calibration samples are not chats",
                      "an image_caption sample", "a text sample",
                      "tokenize sample.text as raw text, without the chat template"});
  ojson user = {{"role", "user"},
                {"content", ojson::array({ojson{{"type", "image"}},
                                          ojson{{"type", "text"}, {"text", std::string(kCalibImageInstruction)}}})}};
  ojson assistant = {{"role", "assistant"}, {"content", sample.text}};
  return ojson::array({std::move(user), std::move(assistant)});
}

}  // namespace vlq::quant
