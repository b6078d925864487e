// Streaming detokenization for the serving engine: token ids in, UTF-8 text out as soon as it is safe to
// send, with OpenAI `stop` strings. Text is held back while it ends in an incomplete UTF-8 sequence
// (text::StreamDecoder) or in a tail that could still become a stop string; when a stop string completes,
// the text before it is returned, the stop string itself is dropped, and generation should stop.
// Spec: OpenAI Chat Completions `stop` ("the returned text will not contain the stop sequence");
// vLLM's detokenizer / stop checker (earliest match wins).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vlq/text/tokenizer.h"

namespace vlq::engine {

struct DetokenizerOutput {
  std::string text;      // newly releasable text (possibly empty)
  bool stopped = false;  // a stop string completed; `text` ends right before it
};

class Detokenizer {
 public:
  // `tok` must outlive the detokenizer. Empty stop strings are ignored. skip_special drops special
  // tokens' text (OpenAI servers' default: EOS / <|im_end|> are not shown).
  Detokenizer(const text::Tokenizer& tok, std::vector<std::string> stop_strings, bool skip_special = true);

  // Appends one id. After a stop, further calls return {"", true}.
  DetokenizerOutput push(std::int32_t id);
  // End of generation: releases what is held back (an unfinished UTF-8 sequence becomes U+FFFD), still
  // cutting at a stop string that completes within it.
  DetokenizerOutput finish();

  bool stopped() const { return stopped_; }
  // All text released so far.
  const std::string& text() const { return released_; }

 private:
  DetokenizerOutput release(bool final);

  text::StreamDecoder decoder_;
  std::vector<std::string> stops_;
  std::string pending_;   // decoded but not yet released
  std::string released_;
  bool stopped_ = false;
};

// Length of the longest suffix of `text` that is a proper prefix of one of `stops` (the part that must be
// held back), moved back to a UTF-8 character boundary.
std::size_t stop_holdback(const std::string& text, const std::vector<std::string>& stops);

}  // namespace vlq::engine
