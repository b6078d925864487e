// Thin RAII wrapper over an Oniguruma regex (UTF-8, default syntax, as the Rust `onig` crate that
// Hugging Face tokenizers uses for Split pre-tokenizer patterns).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace vlq::text {

class OnigRegex {
 public:
  // Compiles `pattern`; throws FormatError naming `where` with Oniguruma's message on a bad pattern.
  OnigRegex(const std::string& pattern, const std::string& where);
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;
  ~OnigRegex();

  // Calls on_match(begin, end) for each successive non-empty, non-overlapping match in `text`
  // (byte offsets), scanning left to right like find_iter. `text` must be valid UTF-8.
  template <typename F>
  void for_each_match(std::string_view text, F&& on_match) const {
    std::size_t pos = 0;
    std::size_t b = 0, e = 0;
    while (pos < text.size() && search(text, pos, b, e)) {
      if (e == b) {  // empty match: step one character, like Rust's find_iter
        pos = b + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
        continue;
      }
      on_match(b, e);
      pos = e;
    }
  }

 private:
  // Finds the first match at or after `from`; false when there is none.
  bool search(std::string_view text, std::size_t from, std::size_t& begin, std::size_t& end) const;
  void* regex_ = nullptr;  // OnigRegex (regex_t*)
};

}  // namespace vlq::text
