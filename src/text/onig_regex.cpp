// Oniguruma wrapper used by the tokenizer's Split / ByteLevel pre-tokenizers (see onig_regex.h).
#include "text/onig_regex.h"

#include <oniguruma.h>

#include <mutex>

#include "vlq/core/error.h"

namespace vlq::text {

namespace {
void init_onig() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    onig_initialize(&enc, 1);
  });
}

// One match region per thread: onig_search needs a writable region; the regex itself is shared.
struct RegionHolder {
  OnigRegion* region = onig_region_new();
  ~RegionHolder() { onig_region_free(region, 1); }
};
}  // namespace

OnigRegex::OnigRegex(const std::string& pattern, const std::string& where) {
  init_onig();
  regex_t* reg = nullptr;
  OnigErrorInfo einfo{};
  const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
  const int r = onig_new(&reg, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT,
                         &einfo);
  if (r != ONIG_NORMAL) {
    OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(msg, r, &einfo);
    throw FormatError({where, "pre-tokenizer regex does not compile", "an Oniguruma pattern",
                       std::string(reinterpret_cast<const char*>(msg)) + " in /" + pattern + "/",
                       "the tokenizer.json file is corrupt or not a Hugging Face tokenizer"});
  }
  regex_ = reg;
}

OnigRegex::~OnigRegex() {
  if (regex_) onig_free(static_cast<regex_t*>(regex_));
}

bool OnigRegex::search(std::string_view text, std::size_t from, std::size_t& begin, std::size_t& end) const {
  thread_local RegionHolder holder;
  const auto* s = reinterpret_cast<const OnigUChar*>(text.data());
  const OnigUChar* e = s + text.size();
  const int r = onig_search(static_cast<regex_t*>(regex_), s, e, s + from, e, holder.region, ONIG_OPTION_NONE);
  if (r < 0) return false;  // ONIG_MISMATCH (or an error, which a compiled pattern does not produce)
  begin = static_cast<std::size_t>(holder.region->beg[0]);
  end = static_cast<std::size_t>(holder.region->end[0]);
  return true;
}

}  // namespace vlq::text
