// Hugging Face fast-tokenizer (`tokenizer.json`) loader, encoder and decoder for byte-level BPE
// tokenizers as Qwen2 / Qwen2.5 / Qwen2.5-VL / Qwen3 ship them.
//
// Spec: /work/shared/docs/qwen2_5_vl.md §6; Hugging Face `tokenizers` (Rust) behaviour, checked against
// PyPI tokenizers 0.23 goldens (tools/make_tokenizer_golden.py, tests/data/golden/tokenizer/):
//   encode(text) = for each piece of `text` split on added tokens (leftmost-longest literal match on the
//     raw text; then, in the NFC-normalised remainder, the added tokens with normalized=true):
//       added token -> its id; other text -> normalizer (NFC) -> pre-tokenizer (Split regex through
//       Oniguruma, behaviour Isolated; ByteLevel: optional prefix space, optional GPT-2 regex, bytes ->
//       GPT-2 bytes_to_unicode alphabet) -> BPE (lowest merge rank first, ties leftmost; no dropout,
//       no unk, no byte fallback). The post-processor adds nothing (no BOS/EOS for Qwen).
//   decode(ids) = concatenation of the ByteLevel-decoded bytes of each token (added tokens: their text),
//     then UTF-8 with each ill-formed subsequence replaced by U+FFFD (String::from_utf8_lossy).
// Supported tokenizer.json content: model.type "BPE" (merges as "a b" strings or ["a", "b"] arrays,
// ignore_merges, no dropout / byte_fallback / continuing_subword_prefix / end_of_word_suffix);
// normalizer null, NFC or Sequence[NFC]; pre_tokenizer Split (Regex or String pattern; Isolated or Removed),
// ByteLevel, or a Sequence of those; decoder ByteLevel or null; post_processor ByteLevel, TemplateProcessing
// (single-sequence template), a Sequence of those, or null.
// Anything else is rejected with UnsupportedError naming the field.
//
// Thread safety: a loaded Tokenizer is immutable except for an internal word cache guarded by a mutex;
// encode/decode may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vlq::text {

// One entry of tokenizer.json "added_tokens" (Qwen: <|endoftext|>, <|im_start|>, <|image_pad|>, ...).
struct AddedToken {
  std::int32_t id = 0;
  std::string content;       // literal text, matched in the input as is
  bool special = false;      // skipped by decode(skip_special=true); not matched when parse_special=false
  bool lstrip = false;       // a match also swallows the whitespace on its left
  bool rstrip = false;       // a match also swallows the whitespace on its right
  bool normalized = false;   // matched in the NFC-normalised text instead of the raw text
  bool single_word = false;  // matched only when not adjacent to a letter/digit/underscore
};

class Tokenizer {
 public:
  // Loads a tokenizer.json file. Throws IoError (missing/unreadable file, naming it), FormatError
  // (invalid JSON or missing/ill-typed fields, naming the file and the field), UnsupportedError
  // (a tokenizer kind other than byte-level BPE).
  static Tokenizer load(const std::filesystem::path& tokenizer_json);
  // Loads DIR/tokenizer.json; throws IoError naming DIR when the folder has no tokenizer.json.
  static Tokenizer from_model_dir(const std::filesystem::path& dir);
  // Parses tokenizer.json text already in memory; `origin` names it in error messages.
  static Tokenizer from_json_text(std::string_view json_text, const std::string& origin);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text` (UTF-8). parse_special=true matches every added token written in the text (the
  // Hugging Face default); false leaves special ones (special=true) to BPE like ordinary text, as
  // transformers' split_special_tokens=True does. add_special_tokens applies the post-processor's
  // "single" template (TemplateProcessing BOS/EOS ids; Qwen's ByteLevel post-processor adds nothing) as
  // tokenizers' encode(add_special_tokens=True) does. Throws FormatError when `text` is not valid UTF-8
  // (found: byte offset).
  std::vector<std::int32_t> encode(std::string_view text, bool parse_special = true,
                                   bool add_special_tokens = true) const;

  // Text of `ids` (see the header comment). Ids that are neither vocabulary nor added tokens are skipped
  // (as Hugging Face does); skip_special drops added tokens with special=true.
  std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const;
  // Raw bytes of one token as the ByteLevel decoder produces them (may be an incomplete UTF-8 sequence);
  // empty for unknown ids and, with skip_special, for special tokens.
  std::string_view token_bytes(std::int32_t id, bool skip_special = false) const;

  // Vocabulary string of `id` (byte-level alphabet, e.g. "Ġworld"; added tokens: their content), or
  // nullopt for an unknown id.
  std::optional<std::string_view> id_to_token(std::int32_t id) const;
  // Id of a vocabulary or added-token string, or nullopt.
  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  // 1 + the largest id (vocabulary and added tokens). Qwen2.5-VL: 151665.
  std::size_t vocab_size() const;
  // Number of BPE merges. Qwen: 151387.
  std::size_t merge_count() const;
  const std::vector<AddedToken>& added_tokens() const;
  // True for added tokens with special=true.
  bool is_special(std::int32_t id) const;
  // Where the tokenizer was loaded from (file path or the `origin` given to from_json_text).
  const std::string& origin() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental decoding for streamed generation: push ids one at a time and get the text that became
// complete. Bytes of an incomplete UTF-8 sequence at the end are held back until the next token completes
// them; the concatenation of all push() results plus finish() equals Tokenizer::decode(all ids).
class StreamDecoder {
 public:
  // `tok` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  // Appends one id; returns the newly completed text (possibly empty).
  std::string push(std::int32_t id);
  // Returns what is still held back, with an unfinished sequence replaced by U+FFFD, and resets.
  std::string finish();
  // Number of bytes currently held back (0..3).
  std::size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace vlq::text
