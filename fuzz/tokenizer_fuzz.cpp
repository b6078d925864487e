// libFuzzer target: tokenizer encode/decode on arbitrary bytes with a small Qwen-style byte-level BPE
// (Qwen split regex, NFC, added tokens with lstrip/rstrip/single_word). Invalid UTF-8 must raise
// FormatError; valid input must encode, decode to valid UTF-8 (ASCII input without the lstrip/rstrip tokens:
// to itself), and the streaming
// decoder must agree with decode() for any id sequence.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/text/tokenizer.h"

namespace {

const vlq::text::Tokenizer& tokenizer() {
  static const vlq::text::Tokenizer tok = [] {
    nlohmann::json vocab = nlohmann::json::object();
    std::vector<std::string> sym(256);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const unsigned cp = keep ? static_cast<unsigned>(b) : 256u + static_cast<unsigned>(n++);
      std::string s;
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      }
      sym[b] = s;
      vocab[s] = b;
    }
    nlohmann::json merges = nlohmann::json::array();
    int id = 256;
    auto add = [&](const std::string& a, const std::string& b) {
      merges.push_back(a + " " + b);
      if (!vocab.contains(a + b)) vocab[a + b] = id++;
    };
    add(sym[' '], "t");
    add(sym[' '] + "t", "h");
    add(sym[' '] + "th", "e");
    add("e", "r");
    add("i", "n");
    add(sym[0xE4], sym[0xB8]);
    add(sym[' '], sym[' ']);
    nlohmann::json added = nlohmann::json::array();
    const char* specials[] = {"<|im_start|>", "<|im_end|>", "<l>", "<r>", "word"};
    for (int i = 0; i < 5; ++i)
      added.push_back({{"id", id + i}, {"content", specials[i]}, {"special", i < 2}, {"lstrip", i == 2},
                       {"rstrip", i == 3}, {"single_word", i == 4}, {"normalized", false}});
    const nlohmann::json j = {
        {"added_tokens", added},
        {"normalizer", {{"type", "NFC"}}},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern",
              {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
             {"behavior", "Isolated"}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
    return vlq::text::Tokenizer::from_json_text(j.dump(), "fuzz-tokenizer");
  }();
  return tok;
}

bool valid_utf8(const std::string& s) {
  // Decoded text must re-encode without a FormatError.
  try {
    (void)tokenizer().encode(s);
    return true;
  } catch (const vlq::FormatError&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const vlq::text::Tokenizer& tok = tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  bool ascii = true;
  for (unsigned char c : text) ascii = ascii && c < 0x80;
  // <l> / <r> swallow neighbouring whitespace (lstrip / rstrip), so only other ASCII text round-trips.
  const bool round_trips = ascii && text.find("<l>") == std::string::npos && text.find("<r>") == std::string::npos;
  try {
    const auto ids = tok.encode(text, size % 2 == 0);
    const std::string back = tok.decode(ids);
    if (round_trips && back != text) __builtin_trap();
    if (!valid_utf8(back)) __builtin_trap();
  } catch (const vlq::FormatError&) {
    if (ascii) __builtin_trap();
  }
  // Arbitrary id sequences (including unknown ids): streaming == batch decoding.
  std::vector<std::int32_t> ids;
  for (std::size_t i = 0; i + 1 < size; i += 2) ids.push_back(static_cast<std::int32_t>((data[i] << 8 | data[i + 1]) % 300));
  vlq::text::StreamDecoder sd(tok, size % 3 == 0);
  std::string streamed;
  for (std::int32_t id : ids) streamed += sd.push(id);
  streamed += sd.finish();
  if (streamed != tok.decode(ids, size % 3 == 0)) __builtin_trap();
  return 0;
}
