// Streaming detokenization with stop strings (see vlq/engine/detokenizer.h).
#include "vlq/engine/detokenizer.h"

#include <algorithm>

namespace vlq::engine {

std::size_t stop_holdback(const std::string& text, const std::vector<std::string>& stops) {
  std::size_t hold = 0;
  for (const std::string& s : stops) {
    const std::size_t most = std::min(text.size(), s.size() - 1);
    for (std::size_t n = most; n > hold; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  }
  // Never cut inside a UTF-8 sequence: move the cut left to a lead byte.
  std::size_t cut = text.size() - hold;
  while (cut > 0 && cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.size() - cut;
}

Detokenizer::Detokenizer(const text::Tokenizer& tok, std::vector<std::string> stop_strings, bool skip_special)
    : decoder_(tok, skip_special) {
  for (auto& s : stop_strings)
    if (!s.empty()) stops_.push_back(std::move(s));
}

DetokenizerOutput Detokenizer::release(bool final) {
  DetokenizerOutput out;
  std::size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    out.text = pending_.substr(0, first);
    out.stopped = stopped_ = true;
    pending_.clear();
  } else {
    const std::size_t hold = final ? 0 : stop_holdback(pending_, stops_);
    out.text = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
  }
  released_ += out.text;
  return out;
}

DetokenizerOutput Detokenizer::push(std::int32_t id) {
  if (stopped_) return {"", true};
  pending_ += decoder_.push(id);
  return release(false);
}

DetokenizerOutput Detokenizer::finish() {
  if (stopped_) return {"", true};
  pending_ += decoder_.finish();
  return release(true);
}

}  // namespace vlq::engine
