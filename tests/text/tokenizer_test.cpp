// Tests for the byte-level BPE tokenizer against Hugging Face `tokenizers` goldens
// (tools/make_tokenizer_golden.py): exact ids, decode round trips, streaming decode, typed errors.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/text/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using vlq::text::StreamDecoder;
using vlq::text::Tokenizer;

namespace {

const fs::path kGolden = fs::path(VLQ_SOURCE_DIR) / "tests/data/golden/tokenizer";
const fs::path kQwenDir = fs::path(VLQ_SOURCE_DIR) / "../shared/data/qwen-tokenizer";
const fs::path kTinyDir = fs::path(VLQ_SOURCE_DIR) / "tests/data/tiny/qwen2_5_vl-bf16-hf452";

std::vector<json> read_jsonl(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in) << p;
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// The real Qwen tokenizer, loaded once (nullptr when ../shared is absent).
const Tokenizer* qwen() {
  static std::unique_ptr<Tokenizer> tok = [] {
    std::unique_ptr<Tokenizer> t;
    if (fs::exists(kQwenDir / "tokenizer.json")) t = std::make_unique<Tokenizer>(Tokenizer::from_model_dir(kQwenDir));
    return t;
  }();
  return tok.get();
}

#define REQUIRE_QWEN()                                                                          \
  if (!qwen()) GTEST_SKIP() << "real Qwen tokenizer not found at " << kQwenDir                  \
                            << " (the shared data folder is expected beside the checkout)"

std::string stream_decode(const Tokenizer& tok, const std::vector<std::int32_t>& ids, bool skip) {
  StreamDecoder sd(tok, skip);
  std::string out;
  for (std::int32_t id : ids) out += sd.push(id);
  out += sd.finish();
  return out;
}

// Checks every golden line: encode (both special modes), decode, decode skipping specials, streaming.
void check_golden(const Tokenizer& tok, const fs::path& file, int min_lines) {
  const auto lines = read_jsonl(file);
  ASSERT_GE(static_cast<int>(lines.size()), min_lines);
  int failures = 0;
  for (std::size_t n = 0; n < lines.size() && failures < 10; ++n) {
    const json& rec = lines[n];
    if (rec.contains("decode_ids")) {
      const auto ids = rec["decode_ids"].get<std::vector<std::int32_t>>();
      EXPECT_EQ(tok.decode(ids), rec["decoded"].get<std::string>()) << file << " line " << n + 1;
      EXPECT_EQ(tok.decode(ids, true), rec["decoded_skip_special"].get<std::string>()) << "line " << n + 1;
      EXPECT_EQ(stream_decode(tok, ids, false), rec["decoded"].get<std::string>()) << "line " << n + 1;
      continue;
    }
    const std::string text = rec["text"];
    const auto want = rec["ids"].get<std::vector<std::int32_t>>();
    const auto got = tok.encode(text);
    if (got != want) {
      ++failures;
      ADD_FAILURE() << file.filename() << " line " << n + 1 << ": ids differ for text " << json(text).dump()
                    << "\n  want " << json(want).dump() << "\n  got  " << json(got).dump();
      continue;
    }
    const auto want_ns = rec.value("ids_no_special", want);
    EXPECT_EQ(tok.encode(text, /*parse_special=*/false), want_ns) << "line " << n + 1;
    const std::string decoded = rec.value("decoded", text);
    EXPECT_EQ(tok.decode(got), decoded) << "line " << n + 1;
    EXPECT_EQ(tok.decode(got, true), rec.value("decoded_skip_special", decoded)) << "line " << n + 1;
    EXPECT_EQ(stream_decode(tok, got, false), decoded) << "line " << n + 1;
  }
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("vlq_tok_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A minimal byte-level BPE tokenizer.json (ids 0..255 = byte alphabet in GPT-2 order + merges).
json minimal_tokenizer() {
  json vocab = json::object();
  int n = 0;
  std::vector<std::string> chars;
  for (int b = 0; b < 256; ++b) {
    const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    char32_t cp = keep ? b : 256 + n++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = b;
  }
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  return json{{"version", "1.0"},
              {"added_tokens", json::array({{{"id", 258}, {"content", "<s>"}, {"special", true}}})},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b", json::array({"ab", "c"})})}}}};
}

// ---- real Qwen tokenizer --------------------------------------------------------------------------

TEST(Tokenizer, QwenSanityVectors) {
  REQUIRE_QWEN();
  const Tokenizer& t = *qwen();
  EXPECT_EQ(t.encode("Hello world"), (std::vector<std::int32_t>{9707, 1879}));
  EXPECT_EQ(t.encode(" Hello world"), (std::vector<std::int32_t>{21927, 1879}));
  EXPECT_EQ(t.encode("Hello world!"), (std::vector<std::int32_t>{9707, 1879, 0}));
  EXPECT_EQ(t.encode("<|vision_start|><|image_pad|><|vision_end|>Describe."),
            (std::vector<std::int32_t>{151652, 151655, 151653, 74785, 13}));
  EXPECT_EQ(t.encode("You are a helpful assistant."), (std::vector<std::int32_t>{2610, 525, 264, 10950, 17847, 13}));
  EXPECT_EQ(t.merge_count(), 151387u);
  EXPECT_EQ(t.vocab_size(), 151669u);  // Qwen3 file: 151643 + 26 added tokens
  EXPECT_EQ(t.token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(t.token_to_id("ĠĠ"), 256);
  EXPECT_EQ(t.id_to_token(259), "Ġt");
  EXPECT_EQ(t.id_to_token(151655), "<|image_pad|>");
  EXPECT_FALSE(t.id_to_token(151669).has_value());
  EXPECT_FALSE(t.id_to_token(-1).has_value());
  EXPECT_TRUE(t.is_special(151645));
  EXPECT_FALSE(t.is_special(151657));  // <tool_call> is not special
  EXPECT_FALSE(t.is_special(9707));
  EXPECT_TRUE(t.encode("").empty());
}

TEST(Tokenizer, QwenGoldenIds) {
  REQUIRE_QWEN();
  check_golden(*qwen(), kGolden / "qwen_golden.jsonl", 500);
}

TEST(Tokenizer, QwenRoundTripNfcText) {
  REQUIRE_QWEN();
  const std::string text = "Ça va? 你好 👨‍👩‍👧‍👦 <|im_start|>x\r\n\tdef f():  \n";
  EXPECT_EQ(qwen()->decode(qwen()->encode(text)), text);
  // Decomposed input comes back composed (NFC), like Hugging Face.
  EXPECT_EQ(qwen()->decode(qwen()->encode("cafe\xCC\x81")), "caf\xC3\xA9");
}

TEST(Tokenizer, QwenStreamingHoldsBackIncompleteUtf8) {
  REQUIRE_QWEN();
  const Tokenizer& t = *qwen();
  const auto ids = t.encode("𓀀");  // 4 bytes, 3 byte-level tokens
  ASSERT_GE(ids.size(), 2u);
  StreamDecoder sd(t);
  std::string out;
  for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
    out += sd.push(ids[i]);
    EXPECT_EQ(out, "");
    EXPECT_GT(sd.pending_bytes(), 0u);
  }
  out += sd.push(ids.back());
  EXPECT_EQ(out, "𓀀");
  EXPECT_EQ(sd.pending_bytes(), 0u);
  // A stream cut in the middle of a character: finish() emits U+FFFD, as decode() does.
  StreamDecoder cut(t);
  EXPECT_EQ(cut.push(ids[0]), "");
  EXPECT_EQ(cut.finish(), t.decode(std::vector<std::int32_t>{ids[0]}));
  EXPECT_EQ(cut.finish(), "");
  // skip_special drops <|im_end|>.
  StreamDecoder skip(t, true);
  EXPECT_EQ(skip.push(151645), "");
  EXPECT_EQ(skip.push(9707), "Hello");
}

TEST(Tokenizer, QwenConcurrentEncode) {
  REQUIRE_QWEN();
  const std::string text = "Concurrent encoding of the same words: alpha beta gamma delta 你好世界 1234.";
  std::vector<std::vector<std::int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int k = 0; k < 50; ++k) got[i] = qwen()->encode(text + std::to_string(k % 3));  // last: k % 3 == 1
    });
  for (auto& th : threads) th.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], qwen()->encode(text + "1"));
}

// ---- committed tiny tokenizers -------------------------------------------------------------------

TEST(Tokenizer, TinyFlagsGoldenStringMerges) {
  const Tokenizer t = Tokenizer::load(kGolden / "tiny_flags/tokenizer.json");
  check_golden(t, kGolden / "tiny_golden.jsonl", 100);
  const auto& added = t.added_tokens();
  ASSERT_GE(added.size(), 8u);
  EXPECT_TRUE(added.back().content == "héllo");
}

TEST(Tokenizer, ArrayAndStringMergesAgree) {
  const Tokenizer arrays = Tokenizer::from_model_dir(kTinyDir);
  const Tokenizer strings = Tokenizer::load(kGolden / "tiny_flags/tokenizer.json");
  EXPECT_EQ(arrays.merge_count(), strings.merge_count());
  for (const char* text : {"Hello world", "The quick brown fox", "1234 ünïcödé 中文", "<|im_start|>user\nhi"})
    EXPECT_EQ(arrays.encode(text), strings.encode(text)) << text;
}

TEST(Tokenizer, MinimalTokenizerBothMergeFormsAndGpt2Regex) {
  const Tokenizer t = Tokenizer::from_json_text(minimal_tokenizer().dump(), "minimal");
  EXPECT_EQ(t.encode("abc"), (std::vector<std::int32_t>{257}));
  EXPECT_EQ(t.encode("ab abc"), (std::vector<std::int32_t>{256, ' ', 257}));  // GPT-2 regex: " abc" piece
  EXPECT_EQ(t.encode("x<s>abc"), (std::vector<std::int32_t>{'x', 258, 257}));
  EXPECT_EQ(t.encode("x<s>abc", false), (std::vector<std::int32_t>{'x', '<', 's', '>', 257}));
  EXPECT_EQ(t.decode(std::vector<std::int32_t>{'x', 258, 257}), "x<s>abc");
  EXPECT_EQ(t.decode(std::vector<std::int32_t>{'x', 258, 257}, true), "xabc");
  EXPECT_EQ(t.vocab_size(), 259u);
}

TEST(Tokenizer, TemplateProcessingAddsBosWhenAsked) {
  json j = minimal_tokenizer();
  j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 0}}],
      "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [258], "tokens": ["<s>"]}}})");
  const Tokenizer t = Tokenizer::from_json_text(j.dump(), "bos");
  EXPECT_EQ(t.encode("abc"), (std::vector<std::int32_t>{258, 257, 258}));
  EXPECT_EQ(t.encode("abc", true, /*add_special_tokens=*/false), (std::vector<std::int32_t>{257}));
}

// ---- errors ---------------------------------------------------------------------------------------

template <typename E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG TYPE: ") + e.what();
  }
  return "NO ERROR";
}

TEST(Tokenizer, MissingFileIsIoErrorNamingIt) {
  const fs::path dir = temp_dir() / "empty_model";
  fs::create_directories(dir);
  std::string msg = error_of<vlq::IoError>([&] { Tokenizer::from_model_dir(dir); });
  EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  msg = error_of<vlq::IoError>([&] { Tokenizer::load(dir / "nope.json"); });
  EXPECT_NE(msg.find("nope.json"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(Tokenizer, CorruptJsonIsFormatErrorNamingFile) {
  const fs::path dir = temp_dir();
  const fs::path file = dir / "tokenizer.json";
  const std::string good = read_file(kTinyDir / "tokenizer.json");
  write_file(file, good.substr(0, good.size() / 2));  // truncated
  std::string msg = error_of<vlq::FormatError>([&] { Tokenizer::load(file); });
  EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;

  json j = minimal_tokenizer();
  j["model"]["merges"].push_back("zz q");
  write_file(file, j.dump());
  msg = error_of<vlq::FormatError>([&] { Tokenizer::load(file); });
  EXPECT_NE(msg.find("merge #2"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;

  j = minimal_tokenizer();
  j["model"].erase("vocab");
  write_file(file, j.dump());
  msg = error_of<vlq::FormatError>([&] { Tokenizer::load(file); });
  EXPECT_NE(msg.find("model.vocab"), std::string::npos) << msg;

  j = minimal_tokenizer();
  j["model"]["merges"][0] = "a b c";
  write_file(file, j.dump());
  msg = error_of<vlq::FormatError>([&] { Tokenizer::load(file); });
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(Tokenizer, UnsupportedKindsAreTyped) {
  json j = minimal_tokenizer();
  j["model"]["type"] = "WordPiece";
  std::string msg = error_of<vlq::UnsupportedError>([&] { Tokenizer::from_json_text(j.dump(), "wp.json"); });
  EXPECT_NE(msg.find("wp.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
  j = minimal_tokenizer();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  msg = error_of<vlq::UnsupportedError>([&] { Tokenizer::from_json_text(j.dump(), "m.json"); });
  EXPECT_NE(msg.find("Metaspace"), std::string::npos) << msg;
  j = minimal_tokenizer();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  msg = error_of<vlq::UnsupportedError>([&] { Tokenizer::from_json_text(j.dump(), "p.json"); });
  EXPECT_NE(msg.find("post_processor"), std::string::npos) << msg;
  j = minimal_tokenizer();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  msg = error_of<vlq::FormatError>([&] { Tokenizer::from_json_text(j.dump(), "r.json"); });
  EXPECT_NE(msg.find("regex"), std::string::npos) << msg;
}

TEST(Tokenizer, InvalidUtf8InputIsFormatError) {
  const Tokenizer t = Tokenizer::from_json_text(minimal_tokenizer().dump(), "minimal");
  const std::string msg = error_of<vlq::FormatError>([&] { t.encode("ok \xC3\x28 bad"); });
  EXPECT_NE(msg.find("offset 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0xC3"), std::string::npos) << msg;
}

// ---- CLI ------------------------------------------------------------------------------------------

std::string run_cli(const std::string& args, int* rc) {
  const std::string cmd = std::string(VLQ_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *rc = WEXITSTATUS(pclose(p));
  return out;
}

TEST(TokenizeCli, JsonOutputOnTinyModel) {
  int rc = 0;
  const std::string out = run_cli("tokenize --model " + kTinyDir.string() + " --text 'Hello <|im_end|>' --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out);
  const Tokenizer t = Tokenizer::from_model_dir(kTinyDir);
  const auto ids = t.encode("Hello <|im_end|>");
  EXPECT_EQ(j["ids"].get<std::vector<std::int32_t>>(), ids);
  ASSERT_EQ(j["tokens"].size(), ids.size());
  EXPECT_EQ(j["tokens"].back(), "<|im_end|>");
}

TEST(TokenizeCli, FileInputAndErrors) {
  const fs::path dir = temp_dir();
  write_file(dir / "in.txt", "Hello world");
  int rc = 0;
  std::string out = run_cli("tokenize --model " + kTinyDir.string() + " --file " + (dir / "in.txt").string(), &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ids ("), std::string::npos) << out;
  out = run_cli("tokenize --model " + dir.string() + " --text x", &rc);
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("tokenizer.json"), std::string::npos) << out;
  out = run_cli("tokenize --model " + kTinyDir.string(), &rc);
  EXPECT_EQ(rc, 64) << out;
  fs::remove_all(dir);
}

}  // namespace
