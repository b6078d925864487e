// Byte-level BPE tokenizer from a Hugging Face tokenizer.json (see include/vlq/model/tokenizer.h):
// loading (simdjson), added-token splitting, NFC, Oniguruma pre-tokenization, BPE with a word cache,
// ByteLevel decoding and the streaming decoder.
#include "vlq/text/tokenizer.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "text/onig_regex.h"
#include "vlq/text/utf8.h"
#include "vlq/core/error.h"

namespace vlq::text {

namespace {

// GPT-2 bytes_to_unicode: bytes 33..126, 161..172, 174..255 map to themselves, the other 68 bytes to
// 256, 257, ... in increasing byte order.
struct ByteLevelAlphabet {
  std::array<char32_t, 256> byte_to_cp{};
  std::array<std::int16_t, 512> cp_to_byte{};  // -1 when the code point is not in the alphabet
  ByteLevelAlphabet() {
    cp_to_byte.fill(-1);
    char32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_to_cp[b] = keep ? static_cast<char32_t>(b) : 256 + n++;
      cp_to_byte[byte_to_cp[b]] = static_cast<std::int16_t>(b);
    }
  }
};
const ByteLevelAlphabet& alphabet() {
  static const ByteLevelAlphabet a;
  return a;
}

// ByteLevel decoding of one token string: each character mapped back to its byte; if some character is
// outside the alphabet the token's own UTF-8 bytes are used (Hugging Face ByteLevel::decode_chain).
void byte_level_decode_into(std::string_view token, std::string& out) {
  const auto& a = alphabet();
  const std::size_t start = out.size();
  std::size_t i = 0;
  while (i < token.size()) {
    const char32_t cp = utf8::next(token, i);
    if (cp >= 512 || a.cp_to_byte[cp] < 0) {
      out.resize(start);
      out.append(token);
      return;
    }
    out += static_cast<char>(a.cp_to_byte[cp]);
  }
}

// Transparent string hashing so maps keyed by std::string can be probed with a string_view.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Open-addressing map (left id, right id) -> (rank, merged id); ~2x faster than std::unordered_map here.
class MergeTable {
 public:
  struct Value {
    std::int32_t rank;
    std::int32_t id;
  };
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    values_.assign(cap, Value{0, 0});
    mask_ = cap - 1;
  }
  // Inserts or overwrites (a later duplicate merge wins, as when Hugging Face collects into a HashMap).
  void put(std::uint64_t key, Value v) {
    std::size_t i = hash(key) & mask_;
    while (keys_[i] != kEmpty && keys_[i] != key) i = (i + 1) & mask_;
    if (keys_[i] == kEmpty) ++size_;
    keys_[i] = key;
    values_[i] = v;
  }
  const Value* find(std::uint64_t key) const {
    std::size_t i = hash(key) & mask_;
    while (true) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }
  std::size_t size() const { return size_; }
  static std::uint64_t key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

 private:
  static constexpr std::uint64_t kEmpty = ~0ull;
  static std::size_t hash(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<std::size_t>(k);
  }
  std::vector<std::uint64_t> keys_;
  std::vector<Value> values_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

// String -> id table with open addressing; keys live in one arena (2 cache misses per lookup instead of
// the 3-4 of std::unordered_map<std::string, int>, which dominated load time).
class StringIdTable {
 public:
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }
  // Inserts, or overwrites the id of an existing key.
  void put(std::string_view key, std::int32_t id) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const std::uint32_t h = hash(key);
    std::size_t i = h & mask_;
    while (slots_[i].id >= 0) {
      if (slots_[i].hash == h && at(slots_[i]) == key) {
        slots_[i].id = id;
        return;
      }
      i = (i + 1) & mask_;
    }
    slots_[i] = Slot{h, id, static_cast<std::uint32_t>(arena_.size()), static_cast<std::uint32_t>(key.size())};
    arena_.append(key);
    ++size_;
  }
  // Id of `key`, or -1.
  std::int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const std::uint32_t h = hash(key);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == h && at(s) == key) return s.id;
    }
  }

 private:
  struct Slot {
    std::uint32_t hash = 0;
    std::int32_t id = -1;  // -1: empty
    std::uint32_t off = 0;
    std::uint32_t len = 0;
  };
  static std::uint32_t hash(std::string_view s) {
    std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, then a final mix; tokens are short
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    h ^= h >> 29;
    return static_cast<std::uint32_t>(h ^ (h >> 32));
  }
  std::string_view at(const Slot& s) const { return std::string_view(arena_).substr(s.off, s.len); }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<std::size_t>(16, old.size()));
    for (const Slot& s : old) {
      if (s.id < 0) continue;
      std::size_t i = s.hash & mask_;
      while (slots_[i].id >= 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::string arena_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

// Strings indexed by id, stored back to back.
class StringList {
 public:
  void start(std::size_t n) {
    offsets_.clear();
    offsets_.reserve(n + 1);
    offsets_.push_back(0);
    arena_.clear();
  }
  std::string& arena() { return arena_; }
  void end_item() { offsets_.push_back(static_cast<std::uint32_t>(arena_.size())); }
  std::string_view operator[](std::size_t i) const {
    return std::string_view(arena_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }

 private:
  std::string arena_;
  std::vector<std::uint32_t> offsets_;
};

// Added tokens matched literally in a text: leftmost match first, the longest at that position.
class AddedMatcher {
 public:
  void add(std::size_t index, const std::string& content) {
    if (content.empty()) return;
    buckets_[static_cast<unsigned char>(content[0])].push_back({index, content});
    any_ = true;
  }
  void finish() {
    for (auto& b : buckets_)
      std::stable_sort(b.begin(), b.end(), [](const Entry& x, const Entry& y) { return x.text.size() > y.text.size(); });
  }
  bool empty() const { return !any_; }
  // Finds the first match at or after `from`: returns false if none; else sets begin and token index.
  bool find(std::string_view s, std::size_t from, std::size_t& begin, std::size_t& index, std::size_t& len) const {
    for (std::size_t i = from; i < s.size(); ++i) {
      const auto& bucket = buckets_[static_cast<unsigned char>(s[i])];
      for (const Entry& e : bucket) {
        if (s.size() - i >= e.text.size() && s.compare(i, e.text.size(), e.text) == 0) {
          begin = i;
          index = e.index;
          len = e.text.size();
          return true;
        }
      }
    }
    return false;
  }

 private:
  struct Entry {
    std::size_t index;
    std::string text;
  };
  std::array<std::vector<Entry>, 256> buckets_;
  bool any_ = false;
};

// One pre-tokenizer step; ByteLevel is always the last one.
struct PreStage {
  enum Kind { kSplitRegex, kSplitLiteral, kByteLevel } kind = kByteLevel;
  std::unique_ptr<OnigRegex> regex;  // Split regex, or the GPT-2 regex of ByteLevel(use_regex=true)
  std::string literal;               // Split with a String pattern
  bool removed = false;              // Split behaviour Removed (else Isolated)
  bool add_prefix_space = false;     // ByteLevel
};

bool is_word_char(char32_t c) { return c == '_' || utf8::is_alnum(c); }

// Last code point of a non-empty valid UTF-8 string.
char32_t last_cp(std::string_view s) {
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return utf8::next(s, i);
}

}  // namespace

// ---- implementation -----------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string origin;
  // Vocabulary: id -> byte-level string, id -> decoded bytes, string -> id (vocabulary then added tokens).
  StringList id_to_token;
  StringList id_bytes;
  std::vector<std::uint8_t> id_kind;  // 0 unknown, 1 vocabulary, 2 added, 3 added special
  StringIdTable token_to_id;
  StringMap<std::int32_t> bytes_to_id;  // raw bytes -> id, filled only when ignore_merges
  std::array<std::int32_t, 256> byte_id{};
  MergeTable merges;
  std::size_t merge_count = 0;
  bool ignore_merges = false;

  std::vector<AddedToken> added;
  AddedMatcher raw_matcher, normalized_matcher;

  // Post-processor (TemplateProcessing "single"): ids added around the sequence when add_special_tokens.
  std::vector<std::int32_t> prefix_ids, suffix_ids;

  bool nfc = false;
  using Stage = PreStage;
  std::vector<Stage> stages;

  // Word cache: raw bytes of a pre-tokenized piece -> its BPE ids.
  static constexpr std::size_t kCacheCapacity = 100000;
  static constexpr std::size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mu;
  mutable StringMap<std::vector<std::int32_t>> cache;

  // ---- encoding ----
  template <typename OnText, typename OnToken>
  void split_added(const AddedMatcher& m, std::string_view s, bool parse_special, OnText&& on_text,
                   OnToken&& on_token) const {
    if (m.empty()) {
      if (!s.empty()) on_text(s);
      return;
    }
    std::size_t start_offset = 0, i = 0, begin = 0, index = 0, len = 0;
    while (i < s.size() && m.find(s, i, begin, index, len)) {
      const AddedToken& tok = added[index];
      std::size_t start = begin, stop = begin + len;
      i = stop;
      if (begin < start_offset) continue;  // inside a region already swallowed by rstrip
      if (!parse_special && tok.special) continue;
      if (tok.single_word) {
        const bool start_ok = start == 0 || !is_word_char(last_cp(s.substr(0, start)));
        std::size_t j = stop;
        const bool stop_ok = stop == s.size() || !is_word_char(utf8::next(s, j));
        if (!start_ok || !stop_ok) continue;
      }
      if (tok.lstrip) {
        std::size_t ns = start;
        while (ns > start_offset) {
          std::size_t k = ns - 1;
          while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
          std::size_t kk = k;
          if (!utf8::is_space(utf8::next(s, kk))) break;
          ns = k;
        }
        start = ns;
      }
      if (tok.rstrip) {
        while (stop < s.size()) {
          std::size_t k = stop;
          if (!utf8::is_space(utf8::next(s, k))) break;
          stop = k;
        }
        i = stop;
      }
      if (start > start_offset) on_text(s.substr(start_offset, start - start_offset));
      on_token(tok.id);
      start_offset = stop;
    }
    if (start_offset < s.size()) on_text(s.substr(start_offset));
  }

  void run_stage(std::size_t k, std::string_view piece, std::vector<std::int32_t>& out) const {
    if (piece.empty()) return;
    if (k == stages.size()) {
      bpe(piece, out);
      return;
    }
    const Stage& st = stages[k];
    switch (st.kind) {
      case Stage::kSplitRegex:
      case Stage::kSplitLiteral: {
        std::size_t prev = 0;
        auto on_match = [&](std::size_t b, std::size_t e) {
          if (b > prev) run_stage(k + 1, piece.substr(prev, b - prev), out);
          if (!st.removed) run_stage(k + 1, piece.substr(b, e - b), out);
          prev = e;
        };
        if (st.kind == Stage::kSplitRegex) {
          st.regex->for_each_match(piece, on_match);
        } else if (!st.literal.empty()) {
          for (std::size_t p = piece.find(st.literal); p != std::string_view::npos;
               p = piece.find(st.literal, p + st.literal.size()))
            on_match(p, p + st.literal.size());
        }
        if (prev < piece.size()) run_stage(k + 1, piece.substr(prev), out);
        break;
      }
      case Stage::kByteLevel: {
        std::string prefixed;
        if (st.add_prefix_space && piece[0] != ' ') {
          prefixed.reserve(piece.size() + 1);
          prefixed += ' ';
          prefixed += piece;
          piece = prefixed;
        }
        if (st.regex) {
          std::size_t prev = 0;
          st.regex->for_each_match(piece, [&](std::size_t b, std::size_t e) {
            if (b > prev) run_stage(k + 1, piece.substr(prev, b - prev), out);
            run_stage(k + 1, piece.substr(b, e - b), out);
            prev = e;
          });
          if (prev < piece.size()) run_stage(k + 1, piece.substr(prev), out);
        } else {
          run_stage(k + 1, piece, out);
        }
        break;
      }
    }
  }

  // BPE of one pre-tokenized piece (raw bytes), appending the ids to `out`.
  void bpe(std::string_view word, std::vector<std::int32_t>& out) const {
    if (word.size() == 1) {
      const std::int32_t id = byte_id[static_cast<unsigned char>(word[0])];
      if (id >= 0) out.push_back(id);
      return;
    }
    if (ignore_merges) {
      if (auto it = bytes_to_id.find(word); it != bytes_to_id.end()) {
        out.push_back(it->second);
        return;
      }
    }
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mu);
      if (auto it = cache.find(word); it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const std::size_t before = out.size();
    merge_word(word, out);
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mu);
      if (cache.size() < kCacheCapacity)
        cache.emplace(std::string(word), std::vector<std::int32_t>(out.begin() + static_cast<std::ptrdiff_t>(before), out.end()));
    }
  }

  // Hugging Face Word::merge_all without dropout: a min-heap on (rank, position); stale entries are
  // skipped when the pair at that position no longer yields the same merged id.
  void merge_word(std::string_view word, std::vector<std::int32_t>& out) const {
    struct Symbol {
      std::int32_t id;
      std::int32_t prev;
      std::int32_t next;
      bool alive;
    };
    struct Merge {
      std::int32_t rank;
      std::int32_t pos;
      std::int32_t new_id;
      bool operator<(const Merge& o) const {  // std heaps pop the largest: lowest rank, then position
        if (rank != o.rank) return rank > o.rank;
        return pos > o.pos;
      }
    };
    thread_local std::vector<Symbol> sym;
    thread_local std::vector<Merge> heap;
    sym.clear();
    for (unsigned char b : word) {
      const std::int32_t id = byte_id[b];
      if (id < 0) continue;  // byte missing from the vocabulary: dropped (no unk token)
      sym.push_back({id, static_cast<std::int32_t>(sym.size()) - 1, static_cast<std::int32_t>(sym.size()) + 1, true});
    }
    if (sym.empty()) return;
    sym.back().next = -1;
    heap.clear();
    auto push = [&](std::int32_t rank, std::int32_t pos, std::int32_t id) {
      heap.push_back({rank, pos, id});
      std::push_heap(heap.begin(), heap.end());
    };
    for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
      if (const auto* m = merges.find(MergeTable::key(sym[i].id, sym[i + 1].id)))
        push(m->rank, static_cast<std::int32_t>(i), m->id);
    }
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const Merge top = heap.back();
      heap.pop_back();
      Symbol& cur = sym[top.pos];
      if (!cur.alive || cur.next < 0) continue;
      const Symbol right = sym[cur.next];
      const auto* m = merges.find(MergeTable::key(cur.id, right.id));
      if (!m || m->id != top.new_id) continue;
      cur.id = top.new_id;
      sym[cur.next].alive = false;
      cur.next = right.next;
      if (right.next >= 0) sym[right.next].prev = top.pos;
      if (cur.prev >= 0) {
        if (const auto* pm = merges.find(MergeTable::key(sym[cur.prev].id, cur.id))) push(pm->rank, cur.prev, pm->id);
      }
      if (cur.next >= 0) {
        if (const auto* nm = merges.find(MergeTable::key(cur.id, sym[cur.next].id))) push(nm->rank, top.pos, nm->id);
      }
    }
    for (const Symbol& s : sym)
      if (s.alive) out.push_back(s.id);
  }
};

// ---- loading ------------------------------------------------------------------------------------

namespace {

using simdjson::dom::element;

[[noreturn]] void bad_field(const std::string& origin, const std::string& field, const std::string& expected,
                            const std::string& found) {
  throw FormatError({origin, "tokenizer.json field '" + field + "' is invalid", expected, found,
                     "the file is corrupt or not a Hugging Face tokenizer.json"});
}

std::string type_name(const element& e) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: return "an array";
    case simdjson::dom::element_type::OBJECT: return "an object";
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64: return "an integer";
    case simdjson::dom::element_type::DOUBLE: return "a number";
    case simdjson::dom::element_type::STRING: return "a string";
    case simdjson::dom::element_type::BOOL: return "a boolean";
    case simdjson::dom::element_type::NULL_VALUE: return "null";
  }
  return "?";
}

// Optional member of an object: nullopt when absent or null.
std::optional<element> member(const element& obj, std::string_view key) {
  element v;
  if (obj.at_key(key).get(v) != simdjson::SUCCESS || v.is_null()) return std::nullopt;
  return v;
}

element require(const std::string& origin, const element& obj, std::string_view key, const std::string& path) {
  element v;
  if (obj.at_key(key).get(v) != simdjson::SUCCESS)
    throw FormatError({origin, "tokenizer.json has no field '" + path + "'", "", "",
                       "the file is corrupt or not a Hugging Face tokenizer.json"});
  return v;
}

std::string get_string(const std::string& origin, const element& e, const std::string& path) {
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) bad_field(origin, path, "a string", type_name(e));
  return std::string(s);
}

bool get_bool(const std::string& origin, const element& obj, std::string_view key, const std::string& path,
              bool dflt) {
  auto v = member(obj, key);
  if (!v) return dflt;
  bool b = false;
  if (v->get_bool().get(b) != simdjson::SUCCESS) bad_field(origin, path, "a boolean", type_name(*v));
  return b;
}

std::int32_t get_id(const std::string& origin, const element& e, const std::string& path) {
  std::int64_t v = 0;
  if (e.get_int64().get(v) != simdjson::SUCCESS) bad_field(origin, path, "an integer id", type_name(e));
  if (v < 0 || v > 0x7fffffff) bad_field(origin, path, "an id in 0..2^31-1", std::to_string(v));
  return static_cast<std::int32_t>(v);
}

[[noreturn]] void unsupported(const std::string& origin, const std::string& field, const std::string& found,
                              const std::string& expected) {
  throw UnsupportedError({origin, "unsupported tokenizer component '" + field + "'", expected, found,
                          "vlq supports byte-level BPE tokenizers (Qwen2/2.5/3, GPT-2 style)"});
}

std::string type_of(const std::string& origin, const element& obj, const std::string& path) {
  element t = require(origin, obj, "type", path + ".type");
  return get_string(origin, t, path + ".type");
}

void parse_normalizer(const std::string& origin, const element& n, const std::string& path, bool& nfc) {
  const std::string type = type_of(origin, n, path);
  if (type == "NFC") {
    nfc = true;
  } else if (type == "Sequence") {
    simdjson::dom::array arr;
    if (require(origin, n, "normalizers", path + ".normalizers").get_array().get(arr) != simdjson::SUCCESS)
      bad_field(origin, path + ".normalizers", "an array", "another type");
    std::size_t i = 0;
    for (element sub : arr) parse_normalizer(origin, sub, path + ".normalizers[" + std::to_string(i++) + "]", nfc);
  } else {
    unsupported(origin, path, "type " + type, "NFC, Sequence of NFC, or null");
  }
}

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void parse_pre_tokenizer(const std::string& origin, const element& p, const std::string& path,
                         std::vector<PreStage>& stages) {
  const std::string type = type_of(origin, p, path);
  using Stage = PreStage;
  if (type == "Sequence") {
    simdjson::dom::array arr;
    if (require(origin, p, "pretokenizers", path + ".pretokenizers").get_array().get(arr) != simdjson::SUCCESS)
      bad_field(origin, path + ".pretokenizers", "an array", "another type");
    std::size_t i = 0;
    for (element sub : arr)
      parse_pre_tokenizer(origin, sub, path + ".pretokenizers[" + std::to_string(i++) + "]", stages);
    return;
  }
  if (!stages.empty() && stages.back().kind == Stage::kByteLevel)
    unsupported(origin, path, type + " after ByteLevel", "ByteLevel as the last pre-tokenizer");
  Stage st;
  if (type == "Split") {
    const element pat = require(origin, p, "pattern", path + ".pattern");
    if (auto rx = member(pat, "Regex")) {
      st.kind = Stage::kSplitRegex;
      st.regex = std::make_unique<OnigRegex>(get_string(origin, *rx, path + ".pattern.Regex"), origin);
    } else if (auto lit = member(pat, "String")) {
      st.kind = Stage::kSplitLiteral;
      st.literal = get_string(origin, *lit, path + ".pattern.String");
    } else {
      bad_field(origin, path + ".pattern", "{\"Regex\": ...} or {\"String\": ...}", type_name(pat));
    }
    const std::string behavior = get_string(origin, require(origin, p, "behavior", path + ".behavior"),
                                            path + ".behavior");
    if (behavior == "Removed") {
      st.removed = true;
    } else if (behavior != "Isolated") {
      unsupported(origin, path + ".behavior", behavior, "Isolated or Removed");
    }
    if (get_bool(origin, p, "invert", path + ".invert", false)) unsupported(origin, path + ".invert", "true", "false");
  } else if (type == "ByteLevel") {
    st.kind = Stage::kByteLevel;
    st.add_prefix_space = get_bool(origin, p, "add_prefix_space", path + ".add_prefix_space", true);
    if (get_bool(origin, p, "use_regex", path + ".use_regex", true))
      st.regex = std::make_unique<OnigRegex>(kGpt2Pattern, origin);
  } else {
    unsupported(origin, path, "type " + type, "Split, ByteLevel or a Sequence of them");
  }
  stages.push_back(std::move(st));
}

// ByteLevel (adds nothing), TemplateProcessing (its "single" template: special-token ids around the
// sequence), or a Sequence of those.
void parse_post_processor(const std::string& origin, const element& p, const std::string& path,
                          std::vector<std::int32_t>& prefix_ids, std::vector<std::int32_t>& suffix_ids);

std::string read_file(const std::filesystem::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    const int err = errno;
    throw IoError({path.string(), "cannot open tokenizer file", "", std::strerror(err),
                   "pass a model folder that contains the Hugging Face tokenizer.json"});
  }
  std::string data;
  char buf[1 << 16];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  const bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) throw IoError({path.string(), "cannot read tokenizer file", "", std::strerror(errno), ""});
  return data;
}

}  // namespace

namespace {
void parse_post_processor(const std::string& origin, const element& p, const std::string& path,
                          std::vector<std::int32_t>& prefix_ids, std::vector<std::int32_t>& suffix_ids) {
  const std::string type = type_of(origin, p, path);
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    simdjson::dom::array arr;
    if (require(origin, p, "processors", path + ".processors").get_array().get(arr) != simdjson::SUCCESS)
      bad_field(origin, path + ".processors", "an array", "another type");
    std::size_t i = 0;
    for (element sub : arr) parse_post_processor(origin, sub, path + ".processors[" + std::to_string(i++) + "]", prefix_ids, suffix_ids);
    return;
  }
  if (type != "TemplateProcessing")
    unsupported(origin, path, "type " + type, "ByteLevel, TemplateProcessing or null");
  simdjson::dom::array single;
  if (require(origin, p, "single", path + ".single").get_array().get(single) != simdjson::SUCCESS)
    bad_field(origin, path + ".single", "an array", "another type");
  const auto specials = member(p, "special_tokens");
  bool seen_sequence = false;
  std::size_t i = 0;
  for (element item : single) {
    const std::string ipath = path + ".single[" + std::to_string(i++) + "]";
    if (member(item, "Sequence")) {
      seen_sequence = true;
      continue;
    }
    const auto st = member(item, "SpecialToken");
    if (!st) bad_field(origin, ipath, "{\"Sequence\": ...} or {\"SpecialToken\": ...}", type_name(item));
    const std::string name = get_string(origin, require(origin, *st, "id", ipath + ".SpecialToken.id"), ipath + ".SpecialToken.id");
    std::optional<element> entry;
    if (specials) entry = member(*specials, name);
    if (!entry) bad_field(origin, path + ".special_tokens", "an entry for '" + name + "'", "none");
    simdjson::dom::array ids;
    if (require(origin, *entry, "ids", path + ".special_tokens." + name + ".ids").get_array().get(ids) != simdjson::SUCCESS)
      bad_field(origin, path + ".special_tokens." + name + ".ids", "an array", "another type");
    for (element id : ids) {
      const std::int32_t v = get_id(origin, id, path + ".special_tokens." + name + ".ids");
      (seen_sequence ? suffix_ids : prefix_ids).push_back(v);
    }
  }
}
}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& tokenizer_json) {
  std::error_code ec;
  if (std::filesystem::is_directory(tokenizer_json, ec))
    throw IoError({tokenizer_json.string(), "is a folder, not a tokenizer.json file", "", "",
                   "pass the file itself, or use the model folder form"});
  return from_json_text(read_file(tokenizer_json), tokenizer_json.string());
}

Tokenizer Tokenizer::from_model_dir(const std::filesystem::path& dir) {
  const auto file = dir / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec))
    throw IoError({dir.string(), "model folder has no tokenizer.json", "tokenizer.json", "no such file",
                   "use a Hugging Face model folder (the fast-tokenizer file tokenizer.json is required)"});
  return load(file);
}

Tokenizer Tokenizer::from_json_text(std::string_view json_text, const std::string& origin) {
  auto impl = std::make_unique<Impl>();
  impl->origin = origin;
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json_text);
  element root;
  if (auto err = parser.parse(padded).get(root); err != simdjson::SUCCESS)
    throw FormatError({origin, "tokenizer.json is not valid JSON", "a JSON object", simdjson::error_message(err),
                       "the file is truncated or corrupt; download it again"});
  if (!root.is_object()) bad_field(origin, "(root)", "an object", type_name(root));

  // ---- model ----
  const element model = require(origin, root, "model", "model");
  if (const std::string t = type_of(origin, model, "model"); t != "BPE")
    unsupported(origin, "model", "type " + t, "BPE");
  if (auto d = member(model, "dropout")) {
    double p = 0;
    if (d->get_double().get(p) == simdjson::SUCCESS && p > 0) unsupported(origin, "model.dropout", std::to_string(p), "null");
  }
  if (get_bool(origin, model, "byte_fallback", "model.byte_fallback", false))
    unsupported(origin, "model.byte_fallback", "true", "false");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (auto v = member(model, key)) {
      if (!get_string(origin, *v, std::string("model.") + key).empty())
        unsupported(origin, std::string("model.") + key, "a non-empty string", "empty or null");
    }
  }
  impl->ignore_merges = get_bool(origin, model, "ignore_merges", "model.ignore_merges", false);

  simdjson::dom::object vocab;
  const element vocab_el = require(origin, model, "vocab", "model.vocab");
  if (vocab_el.get_object().get(vocab) != simdjson::SUCCESS) bad_field(origin, "model.vocab", "an object", type_name(vocab_el));
  std::int32_t max_id = -1;
  std::vector<std::pair<std::string_view, std::int32_t>> entries;
  entries.reserve(vocab.size());
  for (auto field : vocab) {
    const std::int32_t id = get_id(origin, field.value, "model.vocab[\"" + std::string(field.key) + "\"]");
    entries.emplace_back(field.key, id);
    max_id = std::max(max_id, id);
  }
  impl->token_to_id.reserve(entries.size() + 64);
  impl->id_kind.assign(static_cast<std::size_t>(max_id + 1), 0);
  impl->byte_id.fill(-1);
  for (const auto& [tok, id] : entries) {
    impl->token_to_id.put(tok, id);
    impl->id_kind[id] = 1;
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8::append(s, alphabet().byte_to_cp[b]);
    impl->byte_id[b] = impl->token_to_id.find(s);
  }
  if (impl->ignore_merges) {
    impl->bytes_to_id.reserve(entries.size());
    std::string bytes;
    for (const auto& [tok, id] : entries) {
      bytes.clear();
      byte_level_decode_into(tok, bytes);
      impl->bytes_to_id.emplace(bytes, id);
    }
  }

  // ---- merges ----
  simdjson::dom::array merges;
  const element merges_el = require(origin, model, "merges", "model.merges");
  if (merges_el.get_array().get(merges) != simdjson::SUCCESS) bad_field(origin, "model.merges", "an array", type_name(merges_el));
  impl->merges.reserve(merges.size());
  std::int32_t rank = 0;
  std::string joined;
  auto lookup = [&](std::string_view tok, std::int32_t r, std::string_view a, std::string_view b) {
    const std::int32_t id = impl->token_to_id.find(tok);
    if (id < 0)
      throw FormatError({origin, "merge #" + std::to_string(r) + " refers to a token missing from model.vocab",
                         "both parts and their concatenation in the vocabulary",
                         "'" + std::string(tok) + "' in merge '" + std::string(a) + " " + std::string(b) + "'",
                         "the file is corrupt or vocab and merges come from different tokenizers"});
    return id;
  };
  for (element m : merges) {
    std::string_view a, b;
    if (m.is_string()) {
      std::string_view s = m.get_string().value_unsafe();
      const std::size_t sp = s.find(' ');
      if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos)
        bad_field(origin, "model.merges[" + std::to_string(rank) + "]", "\"a b\" (two tokens separated by one space)",
                  "\"" + std::string(s) + "\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array()) {
      simdjson::dom::array pair = m.get_array().value_unsafe();
      if (pair.size() != 2 || !pair.at(0).is_string() || !pair.at(1).is_string())
        bad_field(origin, "model.merges[" + std::to_string(rank) + "]", "[\"a\", \"b\"]", "another array");
      a = pair.at(0).get_string().value_unsafe();
      b = pair.at(1).get_string().value_unsafe();
    } else {
      bad_field(origin, "model.merges[" + std::to_string(rank) + "]", "a string or a 2-element array", type_name(m));
    }
    const std::int32_t ia = lookup(a, rank, a, b), ib = lookup(b, rank, a, b);
    joined.assign(a);
    joined.append(b);
    const std::int32_t inew = lookup(joined, rank, a, b);
    impl->merges.put(MergeTable::key(ia, ib), {rank, inew});
    ++rank;
  }
  impl->merge_count = static_cast<std::size_t>(rank);

  // ---- added tokens ----
  if (auto added = member(root, "added_tokens")) {
    simdjson::dom::array arr;
    if (added->get_array().get(arr) != simdjson::SUCCESS) bad_field(origin, "added_tokens", "an array", type_name(*added));
    std::size_t i = 0;
    for (element t : arr) {
      const std::string path = "added_tokens[" + std::to_string(i++) + "]";
      AddedToken tok;
      tok.id = get_id(origin, require(origin, t, "id", path + ".id"), path + ".id");
      tok.content = get_string(origin, require(origin, t, "content", path + ".content"), path + ".content");
      if (!utf8::is_valid(tok.content)) bad_field(origin, path + ".content", "UTF-8 text", "invalid UTF-8");
      tok.special = get_bool(origin, t, "special", path + ".special", false);
      tok.lstrip = get_bool(origin, t, "lstrip", path + ".lstrip", false);
      tok.rstrip = get_bool(origin, t, "rstrip", path + ".rstrip", false);
      tok.normalized = get_bool(origin, t, "normalized", path + ".normalized", !tok.special);
      tok.single_word = get_bool(origin, t, "single_word", path + ".single_word", false);
      impl->added.push_back(std::move(tok));
    }
  }
  for (const AddedToken& t : impl->added) max_id = std::max(max_id, t.id);
  impl->id_kind.resize(static_cast<std::size_t>(max_id + 1), 0);

  // ---- normalizer, pre-tokenizer, decoder, post-processor ----
  if (auto n = member(root, "normalizer")) parse_normalizer(origin, *n, "normalizer", impl->nfc);
  if (auto p = member(root, "pre_tokenizer")) parse_pre_tokenizer(origin, *p, "pre_tokenizer", impl->stages);
  if (impl->stages.empty() || impl->stages.back().kind != PreStage::kByteLevel)
    unsupported(origin, "pre_tokenizer", "no ByteLevel step", "a ByteLevel pre-tokenizer (byte-level BPE)");
  if (auto d = member(root, "decoder")) {
    if (const std::string t = type_of(origin, *d, "decoder"); t != "ByteLevel")
      unsupported(origin, "decoder", "type " + t, "ByteLevel");
  }
  if (auto pp = member(root, "post_processor")) parse_post_processor(origin, *pp, "post_processor", impl->prefix_ids, impl->suffix_ids);

  // Per-id strings: vocabulary entries, then added tokens (which win, as in Hugging Face id_to_token).
  std::vector<std::string_view> by_id(static_cast<std::size_t>(max_id + 1));
  for (const auto& [tok, id] : entries) by_id[id] = tok;
  for (std::size_t i = 0; i < impl->added.size(); ++i) {
    const AddedToken& t = impl->added[i];
    by_id[t.id] = t.content;
    impl->id_kind[t.id] = t.special ? 3 : 2;
    impl->token_to_id.put(t.content, t.id);
    if (t.normalized && impl->nfc)
      impl->normalized_matcher.add(i, utf8::nfc(t.content));
    else if (t.normalized)
      impl->normalized_matcher.add(i, t.content);
    else
      impl->raw_matcher.add(i, t.content);
  }
  impl->id_to_token.start(by_id.size());
  impl->id_bytes.start(by_id.size());
  impl->id_to_token.arena().reserve(json_text.size() / 4);
  impl->id_bytes.arena().reserve(json_text.size() / 8);
  for (std::string_view tok : by_id) {
    impl->id_to_token.arena().append(tok);
    impl->id_to_token.end_item();
    byte_level_decode_into(tok, impl->id_bytes.arena());
    impl->id_bytes.end_item();
  }
  impl->raw_matcher.finish();
  impl->normalized_matcher.finish();
  return Tokenizer(std::move(impl));
}

// ---- public API ---------------------------------------------------------------------------------

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool parse_special, bool add_special_tokens) const {
  std::size_t bad = 0;
  if (!utf8::is_valid(text, &bad)) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[bad]));
    throw FormatError({"tokenizer input", "text is not valid UTF-8", "UTF-8",
                       std::string("byte ") + hex + " at offset " + std::to_string(bad),
                       "convert the input to UTF-8"});
  }
  const Impl& im = *impl_;
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special_tokens) out = im.prefix_ids;
  auto push_id = [&](std::int32_t id) { out.push_back(id); };
  im.split_added(im.raw_matcher, text, parse_special, [&](std::string_view piece) {
    std::string norm;
    if (im.nfc && utf8::nfc_if_needed(piece, norm)) {
      im.split_added(im.normalized_matcher, norm, parse_special,
                     [&](std::string_view p) { im.run_stage(0, p, out); }, push_id);
    } else {
      im.split_added(im.normalized_matcher, piece, parse_special,
                     [&](std::string_view p) { im.run_stage(0, p, out); }, push_id);
    }
  }, push_id);
  if (add_special_tokens) out.insert(out.end(), im.suffix_ids.begin(), im.suffix_ids.end());
  return out;
}

std::string_view Tokenizer::token_bytes(std::int32_t id, bool skip_special) const {
  const Impl& im = *impl_;
  if (id < 0 || static_cast<std::size_t>(id) >= im.id_kind.size() || im.id_kind[id] == 0) return {};
  if (skip_special && im.id_kind[id] == 3) return {};
  return im.id_bytes[id];
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (std::int32_t id : ids) bytes += token_bytes(id, skip_special);
  return utf8::lossy(bytes);
}

std::optional<std::string_view> Tokenizer::id_to_token(std::int32_t id) const {
  const Impl& im = *impl_;
  if (id < 0 || static_cast<std::size_t>(id) >= im.id_kind.size() || im.id_kind[id] == 0) return std::nullopt;
  return im.id_to_token[id];
}

std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const std::int32_t id = impl_->token_to_id.find(token);
  if (id < 0) return std::nullopt;
  return id;
}

std::size_t Tokenizer::vocab_size() const { return impl_->id_kind.size(); }
std::size_t Tokenizer::merge_count() const { return impl_->merge_count; }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
bool Tokenizer::is_special(std::int32_t id) const {
  return id >= 0 && static_cast<std::size_t>(id) < impl_->id_kind.size() && impl_->id_kind[id] == 3;
}
const std::string& Tokenizer::origin() const { return impl_->origin; }

// ---- streaming ----------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(&tok), skip_special_(skip_special) {}

std::string StreamDecoder::push(std::int32_t id) {
  pending_ += tok_->token_bytes(id, skip_special_);
  const std::size_t n = utf8::complete_prefix(pending_);
  std::string out = utf8::lossy(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8::lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace vlq::text
