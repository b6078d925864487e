// Tests for vlq/engine/messages.h: OpenAI/HF messages -> HF chat format + image sources, base64, file: and
// data: URLs, --prompt/--image requests, and the error messages for bad input.
#include "vlq/engine/messages.h"

#include <gtest/gtest.h>

#include "io/io_test_util.h"

namespace {

using vlq::engine::ImageSource;
using vlq::engine::MessageOptions;
using vlq::engine::ParsedMessages;
using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

const fs::path kImages = fs::path(VLQ_SOURCE_DIR) / "tests/data/images";
const fs::path kTinyPng = kImages / "foo3x5x4indexed.png";

std::string b64(std::string_view in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63]};
  }
  if (in.size() - i == 1) {
    const unsigned v = (unsigned char)in[i] << 16;
    out += {a[v >> 18], a[(v >> 12) & 63], '=', '='};
  } else if (in.size() - i == 2) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], '='};
  }
  return out;
}

std::string decoded(std::string_view s) {
  const auto v = vlq::engine::decode_base64(s, 1 << 20, "test");
  return {v.begin(), v.end()};
}

MessageOptions opts_in(const fs::path& base) {
  MessageOptions o;
  o.base_dir = base;
  return o;
}

TEST(MessagesBase64, Rfc4648Vectors) {
  EXPECT_EQ(decoded(""), "");
  EXPECT_EQ(decoded("Zg=="), "f");
  EXPECT_EQ(decoded("Zm8="), "fo");
  EXPECT_EQ(decoded("Zm9v"), "foo");
  EXPECT_EQ(decoded("Zm9vYg=="), "foob");
  EXPECT_EQ(decoded("Zm9vYmE="), "fooba");
  EXPECT_EQ(decoded("Zm9vYmFy"), "foobar");
  // unpadded and with MIME line breaks
  EXPECT_EQ(decoded("Zm9vYg"), "foob");
  EXPECT_EQ(decoded("Zm9v\r\nYmFy\n"), "foobar");
  // all 256 byte values round-trip
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_EQ(decoded(b64(all)), all);
  EXPECT_EQ(decoded(b64(all.substr(1))), all.substr(1));
  EXPECT_EQ(decoded(b64(all.substr(2))), all.substr(2));
}

TEST(MessagesBase64, RejectsMalformed) {
  VLQ_EXPECT_ERROR(decoded("Zm9v!mFy"), vlq::FormatError, "invalid base64", "'!' at offset 4");
  VLQ_EXPECT_ERROR(decoded("Zm9v_mFy"), vlq::FormatError, "URL-safe");
  VLQ_EXPECT_ERROR(decoded("Zm9vY"), vlq::FormatError, "truncated", "5 characters");
  VLQ_EXPECT_ERROR(decoded("Zg==Zg=="), vlq::FormatError, "data after '=' padding");
  VLQ_EXPECT_ERROR(decoded("Zg="), vlq::FormatError, "wrong '=' padding");
  VLQ_EXPECT_ERROR(decoded("Zm9v===="), vlq::FormatError, "wrong '=' padding");
  VLQ_EXPECT_ERROR(decoded("Zm8=="), vlq::FormatError, "wrong '=' padding");
  VLQ_EXPECT_ERROR(vlq::engine::decode_base64(std::string(400, 'A'), 100, "big"), vlq::UnsupportedError,
                   "too large", "at most 100");
  EXPECT_EQ(vlq::engine::decode_base64(std::string(400, 'A'), 300, "ok").size(), 300u);
}

TEST(MessagesUrl, PercentDecode) {
  EXPECT_EQ(vlq::engine::percent_decode("/a%20b/%C3%A9%2f+x", "t"), "/a b/\xC3\xA9/+x");
  VLQ_EXPECT_ERROR(vlq::engine::percent_decode("/a%2", "t"), vlq::FormatError, "percent-encoding", "offset 2");
  VLQ_EXPECT_ERROR(vlq::engine::percent_decode("/a%zz", "t"), vlq::FormatError, "two hex digits");
}

TEST(Messages, OpenAiFormWithAllImageForms) {
  vlq::testing::TempDir dir;
  fs::create_directories(dir / "sub dir");
  fs::copy_file(kTinyPng, dir / "sub dir/é.png");
  fs::copy_file(kTinyPng, dir / "a.png");
  const std::string png = vlq::testing::read_bytes(kTinyPng);
  const std::string file_url = "file://" + (dir / "sub%20dir/%C3%A9.png").string();
  const ojson j = ojson::parse(R"({"model": "x", "messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "name": "u", "content": [
      {"type": "image_url", "image_url": {"url": "a.png", "detail": "low"}},
      {"type": "text", "text": "What is this?"},
      {"type": "image_url", "image_url": ")" + file_url + R"("},
      {"type": "image_url", "image_url": {"url": "data:image/PNG;base64,)" + b64(png) + R"("}},
      {"type": "image", "image": "sub dir/é.png"}]},
    {"role": "assistant", "content": "A cat."}]})");
  const ParsedMessages p = vlq::engine::parse_messages(j, opts_in(dir.path()), "req.json");
  const ojson expected = ojson::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}, {"type": "image"},
                                 {"type": "image"}, {"type": "image"}]},
    {"role": "assistant", "content": "A cat."}])");
  EXPECT_EQ(p.messages, expected) << p.messages.dump();
  ASSERT_EQ(p.images.size(), 4u);
  EXPECT_EQ(p.images[0].kind, ImageSource::Kind::kPath);
  EXPECT_EQ(p.images[0].path, dir / "a.png");
  EXPECT_EQ(p.images[1].path, dir / "sub dir/é.png");
  EXPECT_EQ(p.images[2].kind, ImageSource::Kind::kBytes);
  EXPECT_EQ(p.images[2].media_type, "image/png");
  EXPECT_EQ(std::string(p.images[2].bytes.begin(), p.images[2].bytes.end()), png);
  EXPECT_EQ(p.images[2].origin, "req.json: messages[1].content[3]");
  EXPECT_EQ(p.images[3].path, dir / "sub dir/é.png");
  // Every source decodes to the same pixels.
  const auto ref = vlq::image::load_image(kTinyPng);
  for (const auto& s : p.images) {
    const auto img = vlq::engine::load_image_source(s);
    EXPECT_EQ(img.width, ref.width);
    EXPECT_EQ(img.pixels, ref.pixels);
  }
}

TEST(Messages, BareListAndRelativeResolution) {
  vlq::testing::TempDir dir;
  fs::create_directories(dir / "images");
  fs::copy_file(kTinyPng, dir / "images/x.png");
  const ojson j = ojson::parse(R"([{"role": "user", "content": [{"type": "image", "image": "images/x.png"},
                                                              {"type": "text", "text": "Q"}]}])");
  const auto p = vlq::engine::parse_messages(j, opts_in(dir.path()));
  ASSERT_EQ(p.images.size(), 1u);
  EXPECT_EQ(p.images[0].path, dir / "images/x.png");
  // Relative to another base: not found, and the hint names the base folder.
  VLQ_EXPECT_ERROR(vlq::engine::parse_messages(j, opts_in(dir / "images"), "m.json"), vlq::IoError,
                   "m.json: messages[0].content[0]", "image file not found", "resolved against");
  // Without the existence check the path is just resolved.
  MessageOptions lazy = opts_in(dir / "images");
  lazy.check_files_exist = false;
  EXPECT_EQ(vlq::engine::parse_messages(j, lazy).images[0].path, dir / "images/images/x.png");
  // Absolute paths ignore the base.
  const ojson abs = {{{"role", "user"}, {"content", {{{"type", "image"}, {"image", (dir / "images/x.png").string()}}}}}};
  EXPECT_EQ(vlq::engine::parse_messages(abs, opts_in("/nonexistent")).images[0].path, dir / "images/x.png");
  // A missing absolute path: the hint does not claim it was resolved against the base folder.
  const ojson abs_missing = {{{"role", "user"}, {"content", {{{"type", "image"}, {"image", (dir / "nope.png").string()}}}}}};
  try {
    vlq::engine::parse_messages(abs_missing, opts_in(dir / "images"));
    ADD_FAILURE() << "a missing absolute path was accepted";
  } catch (const vlq::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("image file not found"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("resolved against"), std::string::npos) << e.what();
  }
  // A folder is not an image.
  const ojson folder = {{{"role", "user"}, {"content", {{{"type", "image"}, {"image", "images"}}}}}};
  VLQ_EXPECT_ERROR(vlq::engine::parse_messages(folder, opts_in(dir.path())), vlq::IoError, "is a folder");
}

TEST(Messages, HeldOutFileParses) {
  // The first line of data/heldout/heldout.jsonl, with its images relative to data/heldout/.
  const fs::path heldout = fs::path(VLQ_SOURCE_DIR) / "data/heldout";
  std::ifstream in(heldout / "heldout.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const ojson rec = ojson::parse(line);
  const auto p = vlq::engine::parse_messages(rec["messages"], opts_in(heldout));
  ASSERT_EQ(p.images.size(), 1u);
  EXPECT_EQ(p.images[0].path, heldout / rec["image"].get<std::string>());
  EXPECT_EQ(p.messages[0]["content"][0], ojson({{"type", "image"}}));
  EXPECT_EQ(p.messages[0]["content"][1]["text"], rec["question"]);
}

TEST(Messages, StructuralErrorsNameTheMessageAndPart) {
  auto parse = [](const char* text) { return vlq::engine::parse_messages(ojson::parse(text), {}, "r.json"); };
  VLQ_EXPECT_ERROR(parse("[]"), vlq::FormatError, "r.json", "empty message list");
  VLQ_EXPECT_ERROR(parse("{\"model\": 1}"), vlq::FormatError, "no messages");
  VLQ_EXPECT_ERROR(parse("{\"messages\": \"hi\"}"), vlq::FormatError, "must be a list", "found a string");
  VLQ_EXPECT_ERROR(parse("[1]"), vlq::FormatError, "messages[0]", "must be an object", "an integer");
  VLQ_EXPECT_ERROR(parse(R"([{"content": "x"}])"), vlq::FormatError, "messages[0]", "no role");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}])"),
                   vlq::FormatError, "messages[1]", "unknown role", "system, user or assistant", "'bot'");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "tool", "content": "x"}])"), vlq::UnsupportedError, "unsupported role");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user"}])"), vlq::FormatError, "messages[0]", "no content");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": null}])"), vlq::FormatError, "no content", "null");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": 3}])"), vlq::FormatError, "string or a list");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": ["hi"]}])"), vlq::FormatError,
                   "messages[0].content[0]", "must be an object");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"text": "hi"}]}])"), vlq::FormatError,
                   "messages[0].content[0]", "no type");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "text"}]}])"), vlq::FormatError, "no text");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "text", "text": 5}]}])"), vlq::FormatError,
                   "'text' must be a string", "an integer");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "picture"}]}])"),
                   vlq::FormatError, "messages[0].content[1]", "unknown content part type", "'picture'");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "video", "video": "v.mp4"}]}])"),
                   vlq::UnsupportedError, "unsupported content part", "video");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "image_url"}]}])"), vlq::FormatError,
                   "no image_url");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])"),
                   vlq::FormatError, "image_url has no url");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "image_url", "image_url": 7}]}])"),
                   vlq::FormatError, "object or a string");
  VLQ_EXPECT_ERROR(parse(R"([{"role": "user", "content": [{"type": "image"}]}])"), vlq::FormatError,
                   "no image reference");
}

TEST(Messages, BadImageReferences) {
  auto part = [](const std::string& url) {
    ojson j = {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", {{"url", url}}}}}}}};
    return vlq::engine::parse_messages(j, {}, "r");
  };
  VLQ_EXPECT_ERROR(part("https://example.com/cat.png"), vlq::UnsupportedError, "messages[0].content[0]",
                   "not fetched", "network");
  VLQ_EXPECT_ERROR(part("http://example.com/cat.png"), vlq::UnsupportedError, "not fetched");
  VLQ_EXPECT_ERROR(part("s3://bucket/cat.png"), vlq::UnsupportedError, "scheme 's3'");
  VLQ_EXPECT_ERROR(part("file://server/share/cat.png"), vlq::UnsupportedError, "remote host");
  VLQ_EXPECT_ERROR(part("file:cat.png"), vlq::FormatError, "relative path");
  VLQ_EXPECT_ERROR(part("file:///tmp/a%zzb.png"), vlq::FormatError, "percent-encoding");
  VLQ_EXPECT_ERROR(part("data:image/png;base64"), vlq::FormatError, "no ','");
  VLQ_EXPECT_ERROR(part("data:text/plain;base64,aGk="), vlq::FormatError, "not an image", "'text/plain'");
  VLQ_EXPECT_ERROR(part("data:image/png,abc"), vlq::FormatError, "not base64-encoded");
  VLQ_EXPECT_ERROR(part("data:image/png;base64,iVBORw0KGgo*AAAA"), vlq::FormatError, "messages[0].content[0]",
                   "invalid base64", "'*' at offset 11");
  VLQ_EXPECT_ERROR(part("data:image/png;base64,"), vlq::FormatError, "empty payload");
  VLQ_EXPECT_ERROR(part("data:image/png;base64," + b64("GIF89a........")), vlq::FormatError,
                   "not an image vlq can decode", "GIF");
  VLQ_EXPECT_ERROR(part("/definitely/not/here.png"), vlq::IoError, "image file not found");
  VLQ_EXPECT_ERROR(part(""), vlq::FormatError, "empty image reference");
  VLQ_EXPECT_ERROR(part(std::string("/tmp/a.png") + '\0' + ".txt"), vlq::FormatError, "NUL character");
  VLQ_EXPECT_ERROR(part("file:///tmp/a.png%00.txt"), vlq::FormatError, "NUL character");
  // Size limit on the decoded payload.
  MessageOptions small;
  small.max_image_bytes = 16;
  const std::string png = vlq::testing::read_bytes(kTinyPng);
  ojson j = {{{"role", "user"},
              {"content", {{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + b64(png)}}}}}}}};
  VLQ_EXPECT_ERROR(vlq::engine::parse_messages(j, small), vlq::UnsupportedError, "too large", "at most 16");
  // Parameters before ;base64 are allowed; a file: URL with localhost works.
  EXPECT_EQ(part("data:image/png;name=x.png;base64," + b64(png)).images[0].bytes.size(), png.size());
  EXPECT_EQ(part("file://localhost" + kTinyPng.string()).images[0].path, kTinyPng);
}

TEST(Messages, LoadMessagesFile) {
  vlq::testing::TempDir dir;
  fs::copy_file(kTinyPng, dir / "p.png");
  vlq::testing::write_bytes(dir / "m.json", R"({"messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "p.png"}}, {"type": "text", "text": "hi"}]}]})");
  const auto p = vlq::engine::load_messages_file(dir / "m.json", opts_in(dir.path()));
  EXPECT_EQ(p.images.at(0).path, dir / "p.png");
  EXPECT_EQ(p.images.at(0).origin, (dir / "m.json").string() + ": messages[0].content[0]");
  vlq::testing::write_bytes(dir / "bad.json", R"([{"role": "user", "content": "a", "content": "b"}])");
  VLQ_EXPECT_ERROR(vlq::engine::load_messages_file(dir / "bad.json"), vlq::FormatError, "bad.json", "content");
  vlq::testing::write_bytes(dir / "trunc.json", R"([{"role": "user", )");
  VLQ_EXPECT_ERROR(vlq::engine::load_messages_file(dir / "trunc.json"), vlq::FormatError, "trunc.json");
  VLQ_EXPECT_ERROR(vlq::engine::load_messages_file(dir / "none.json"), vlq::IoError, "not found");
  VLQ_EXPECT_ERROR(vlq::engine::load_messages_file(dir.path()), vlq::IoError, "folder");
}

TEST(Messages, BuildPromptMessages) {
  vlq::testing::TempDir dir;
  fs::copy_file(kTinyPng, dir / "a.png");
  fs::copy_file(kTinyPng, dir / "b.png");
  const auto p = vlq::engine::build_prompt_messages("Compare them.", {"a.png", "b.png"}, "Be brief.",
                                                    opts_in(dir.path()));
  const ojson expected = ojson::parse(R"([{"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare them."}]}])");
  EXPECT_EQ(p.messages, expected);
  ASSERT_EQ(p.images.size(), 2u);
  EXPECT_EQ(p.images[1].path, dir / "b.png");
  EXPECT_EQ(p.images[1].origin, "--image 2");
  // No system: only the user turn (the template adds its default system prompt).
  const auto q = vlq::engine::build_prompt_messages("Hi", {});
  EXPECT_EQ(q.messages, ojson::parse(R"([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])"));
  VLQ_EXPECT_ERROR(vlq::engine::build_prompt_messages("", {}), vlq::UsageError, "--prompt");
  VLQ_EXPECT_ERROR(vlq::engine::build_prompt_messages("x", {"a.png", "missing.png"}, std::nullopt, opts_in(dir.path())),
                   vlq::IoError, "--image 2", "not found");
}

}  // namespace
