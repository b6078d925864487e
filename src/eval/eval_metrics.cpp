// Logit metrics (KL, top-1, NLL/perplexity), the exact_normalized answer rule, the held-out JSONL reader and
// per-task accuracy (see vlq/engine/eval_metrics.h).
#include "vlq/eval/eval_metrics.h"

#include <fmt/format.h>
#include <utf8proc.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <system_error>

#include "vlq/io/json.h"
#include "vlq/text/utf8.h"

namespace vlq::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Neumaier's compensated sum.
struct CompensatedSum {
  double sum = 0.0;
  double c = 0.0;
  void add(double x) {
    const double t = sum + x;
    if (std::fabs(sum) >= std::fabs(x)) c += (sum - t) + x;
    else c += (x - t) + sum;
    sum = t;
  }
  double value() const { return sum + c; }
};

void check_row(std::span<const float> logits, const char* what) {
  if (logits.empty())
    throw UsageError({what, "empty logits row", "a row of V >= 1 logits", "0 entries", ""});
}

// Validates the row and returns (m, r) in double: m = max x, r = log(sum exp(x - m)) = log1p(sum over the
// non-max entries); log_softmax(x)_i = (x_i - m) - r.
std::pair<double, double> max_and_lse(std::span<const float> logits, const char* what) {
  check_row(logits, what);
  double m = -kInf;
  std::size_t im = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (std::isnan(v) || v == std::numeric_limits<float>::infinity())
      throw FormatError({what, "logits contain a non-finite value", "finite values (or -inf for masked tokens)",
                         fmt::format("{} at index {}", std::isnan(v) ? "NaN" : "+inf", i),
                         "the forward pass produced overflow or NaN; check the scales of the quantized model"});
    if (v > m) {
      m = v;
      im = i;
    }
  }
  if (m == -kInf)
    throw FormatError({what, "every logit is -inf", "at least one finite logit", "all -inf", ""});
  // lse = m + log(1 + sum_{i != im} exp(x_i - m)), with log1p so that the log-probability of the top token
  // keeps its precision in peaked rows (e.g. -log p = 3.7e-44 for logits (0, -100), not 0).
  CompensatedSum rest;
  for (std::size_t i = 0; i < logits.size(); ++i)
    if (i != im) rest.add(std::exp(static_cast<double>(logits[i]) - m));  // exp(-inf) = 0
  return {m, std::log1p(rest.value())};
}

std::int64_t argmax_unchecked(std::span<const float> logits) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<std::int64_t>(best);
}

void check_target(std::int64_t target, std::size_t v) {
  if (target < 0 || static_cast<std::uint64_t>(target) >= v)
    throw UsageError({"target token", "target token id outside the vocabulary", fmt::format("0 <= id < {}", v),
                      std::to_string(target), ""});
}

nlohmann::ordered_json num_or_null(double x) {
  if (std::isnan(x)) return nullptr;
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

// ---- Python str.lower / str.isspace on code points ----

bool is_cased(char32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

bool is_case_ignorable(char32_t cp) {
  switch (cp) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default: break;
  }
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK;
}

// Python's handle_capital_sigma (Objects/unicodeobject.c).
bool final_sigma(const std::u32string& s, std::size_t i) {
  std::size_t j = i;
  char32_t c = 0;
  bool found = false;
  while (j > 0) {
    c = s[--j];
    if (!is_case_ignorable(c)) {
      found = true;
      break;
    }
  }
  if (!found || !is_cased(c)) return false;
  for (j = i + 1; j < s.size(); ++j) {
    if (!is_case_ignorable(s[j])) return !is_cased(s[j]);
  }
  return true;
}

}  // namespace

// ---- logits ------------------------------------------------------------------------------------------------

void log_softmax(std::span<const float> logits, std::span<double> out) {
  if (out.size() != logits.size())
    throw UsageError({"log_softmax", "output size differs from the row", fmt::format("{}", logits.size()),
                      fmt::format("{}", out.size()), ""});
  const auto [m, r] = max_and_lse(logits, "log_softmax");
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = (static_cast<double>(logits[i]) - m) - r;
}

std::vector<double> log_softmax(std::span<const float> logits) {
  std::vector<double> out(logits.size());
  log_softmax(logits, out);
  return out;
}

std::int64_t argmax(std::span<const float> logits) {
  (void)max_and_lse(logits, "argmax");
  return argmax_unchecked(logits);
}

double token_nll(std::span<const float> logits, std::int64_t target) {
  const auto [m, r] = max_and_lse(logits, "token_nll");
  check_target(target, logits.size());
  const double x = logits[static_cast<std::size_t>(target)];
  if (x == -kInf) return kInf;
  return std::max(0.0, r - (x - m));
}

TokenComparison compare_token_logits(std::span<const float> ref_logits, std::span<const float> quant_logits,
                                     std::optional<std::int64_t> target) {
  if (ref_logits.size() != quant_logits.size())
    throw UsageError({"logit comparison", "reference and quantized rows differ in length",
                      fmt::format("{} (reference)", ref_logits.size()), fmt::format("{} (quantized)", quant_logits.size()),
                      "both models must use the same vocabulary"});
  const auto [mr, rr] = max_and_lse(ref_logits, "reference logits");
  const auto [mq, rq] = max_and_lse(quant_logits, "quantized logits");
  TokenComparison c;
  CompensatedSum kl;
  bool infinite = false;
  for (std::size_t i = 0; i < ref_logits.size(); ++i) {
    const double lp = (static_cast<double>(ref_logits[i]) - mr) - rr;
    if (lp == -kInf) continue;
    const double p = std::exp(lp);
    if (p == 0.0) continue;
    const double lq = (static_cast<double>(quant_logits[i]) - mq) - rq;
    if (lq == -kInf) {
      infinite = true;
      break;
    }
    kl.add(p * (lp - lq));
  }
  c.kl = infinite ? kInf : kl.value();
  if (c.kl < 0.0) c.kl = 0.0;  // rounding of near-identical rows; the exact value is >= 0
  c.top1_ref = argmax_unchecked(ref_logits);
  c.top1_quant = argmax_unchecked(quant_logits);
  c.top1_agree = c.top1_ref == c.top1_quant;
  if (target) {
    check_target(*target, ref_logits.size());
    const auto t = static_cast<std::size_t>(*target);
    const double xr = ref_logits[t], xq = quant_logits[t];
    c.nll_ref = xr == -kInf ? kInf : std::max(0.0, rr - (xr - mr));
    c.nll_quant = xq == -kInf ? kInf : std::max(0.0, rq - (xq - mq));
  }
  return c;
}

double kl_divergence(std::span<const float> ref_logits, std::span<const float> quant_logits) {
  return compare_token_logits(ref_logits, quant_logits).kl;
}

void LogitMetrics::add(const TokenComparison& c) {
  ++tokens;
  kl_sum += c.kl;
  if (c.kl > kl_max) kl_max = c.kl;
  if (c.top1_agree) ++top1_agree;
  if (c.nll_ref && c.nll_quant) {
    ++nll_tokens;
    nll_sum_ref += *c.nll_ref;
    nll_sum_quant += *c.nll_quant;
  }
}

TokenComparison LogitMetrics::add(std::span<const float> ref_logits, std::span<const float> quant_logits,
                                  std::optional<std::int64_t> target) {
  TokenComparison c = compare_token_logits(ref_logits, quant_logits, target);
  add(c);
  return c;
}

void LogitMetrics::merge(const LogitMetrics& o) {
  tokens += o.tokens;
  kl_sum += o.kl_sum;
  kl_max = std::max(kl_max, o.kl_max);
  top1_agree += o.top1_agree;
  nll_tokens += o.nll_tokens;
  nll_sum_ref += o.nll_sum_ref;
  nll_sum_quant += o.nll_sum_quant;
}

double LogitMetrics::mean_kl() const { return tokens ? kl_sum / static_cast<double>(tokens) : kNaN; }
double LogitMetrics::top1_agreement() const {
  return tokens ? static_cast<double>(top1_agree) / static_cast<double>(tokens) : kNaN;
}
double LogitMetrics::mean_nll_ref() const { return nll_tokens ? nll_sum_ref / static_cast<double>(nll_tokens) : kNaN; }
double LogitMetrics::mean_nll_quant() const {
  return nll_tokens ? nll_sum_quant / static_cast<double>(nll_tokens) : kNaN;
}
double LogitMetrics::ppl_ref() const { return std::exp(mean_nll_ref()); }
double LogitMetrics::ppl_quant() const { return std::exp(mean_nll_quant()); }

nlohmann::ordered_json LogitMetrics::to_json() const {
  nlohmann::ordered_json j;
  j["tokens"] = tokens;
  j["mean_kl"] = num_or_null(mean_kl());
  j["max_kl"] = tokens ? num_or_null(kl_max) : nlohmann::ordered_json(nullptr);
  j["top1_agreement"] = num_or_null(top1_agreement());
  j["nll_tokens"] = nll_tokens;
  j["mean_nll_ref"] = num_or_null(mean_nll_ref());
  j["mean_nll_quant"] = num_or_null(mean_nll_quant());
  j["ppl_ref"] = num_or_null(ppl_ref());
  j["ppl_quant"] = num_or_null(ppl_quant());
  return j;
}

// ---- answers -----------------------------------------------------------------------------------------------

std::string normalize_answer(std::string_view input) {
  std::string repaired;
  if (!text::utf8::is_valid(input)) {
    repaired = text::utf8::lossy(input);
    input = repaired;
  }
  std::u32string cps;
  cps.reserve(input.size());
  for (std::size_t i = 0; i < input.size();) cps.push_back(text::utf8::next(input, i));
  // strip (str.isspace)
  std::size_t b = 0, e = cps.size();
  while (b < e && text::utf8::is_py_space(cps[b])) ++b;
  while (e > b && text::utf8::is_py_space(cps[e - 1])) --e;
  const std::u32string s = cps.substr(b, e - b);
  // lower (full mapping), then collapse whitespace runs to one space
  std::u32string out;
  out.reserve(s.size());
  bool in_space = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (text::utf8::is_py_space(c)) {
      if (!in_space) out.push_back(U' ');
      in_space = true;
      continue;
    }
    in_space = false;
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    } else if (c == 0x130) {
      out.push_back(U'i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {
      out.push_back(final_sigma(s, i) ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(text::utf8::to_lower(c));
    }
  }
  if (!out.empty() && out.back() == U'.') {
    out.pop_back();
    while (!out.empty() && text::utf8::is_py_space(out.back())) out.pop_back();
  }
  std::string result;
  result.reserve(out.size());
  for (const char32_t c : out) text::utf8::append(result, c);
  return result;
}

bool answer_matches(std::string_view prediction, std::string_view expected) {
  return normalize_answer(prediction) == normalize_answer(expected);
}

// ---- held-out set ------------------------------------------------------------------------------------------

std::vector<EvalItem> evenly_spaced(std::vector<EvalItem> items, std::int64_t limit) {
  if (limit <= 0 || static_cast<std::int64_t>(items.size()) <= limit) return items;
  std::vector<EvalItem> sub;
  const double step = static_cast<double>(items.size()) / static_cast<double>(limit);
  for (std::int64_t i = 0; i < limit; ++i) sub.push_back(std::move(items[static_cast<std::size_t>(i * step)]));
  return sub;
}

std::vector<EvalItem> load_eval_items(const std::filesystem::path& jsonl) {
  namespace fs = std::filesystem;
  const std::string name = jsonl.string();
  std::error_code ec;
  const auto st = fs::status(jsonl, ec);
  if (ec || !fs::exists(st)) throw IoError({name, "held-out file not found", "", "", "check the path"});
  if (fs::is_directory(st))
    throw IoError({name, "held-out path is a folder", "a JSONL file", "a folder", "pass DIR/heldout.jsonl"});
  std::ifstream in(jsonl, std::ios::binary);
  if (!in) throw IoError({name, "cannot open the held-out file", "", "", "check the permissions"});
  const fs::path base = jsonl.parent_path();
  engine::MessageOptions mopts;
  mopts.base_dir = base;
  std::vector<EvalItem> items;
  std::set<std::string> ids;
  std::string line;
  for (std::size_t lineno = 1; std::getline(in, line); ++lineno) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", name, lineno);
    (void)io::parse_json_strict(line, where, 64, "held-out record");
    const auto rec = nlohmann::ordered_json::parse(line);
    if (!rec.is_object())
      throw FormatError({where, "held-out record is not an object", "one JSON object per line", "another value", ""});
    auto str = [&](const char* key, bool required) -> std::string {
      const auto it = rec.find(key);
      if (it == rec.end() || it->is_null()) {
        if (!required) return {};
        throw FormatError({where, fmt::format("held-out record has no \"{}\"", key), "a string", "no such key",
                           "see data/README.md for the record format"});
      }
      if (!it->is_string())
        throw FormatError({where, fmt::format("\"{}\" must be a string", key), "a string", it->type_name(), ""});
      return it->get<std::string>();
    };
    EvalItem item;
    item.id = str("id", true);
    item.task = str("task", true);
    const std::string image = str("image", true);
    item.question = str("question", false);
    item.answer = str("answer", true);
    item.source = where;
    const std::string rule = str("rule", false);
    if (!rule.empty() && rule != "exact_normalized")
      throw UnsupportedError({where, "unknown scoring rule", "exact_normalized", "'" + rule + "'", ""});
    if (!ids.insert(item.id).second)
      throw FormatError({where, "duplicate item id", "unique ids", "'" + item.id + "' again", ""});
    fs::path img(image);
    if (img.is_relative()) img = base / img;
    item.image = img.lexically_normal();
    if (!fs::is_regular_file(item.image, ec))
      throw IoError({where, "held-out image not found", "", item.image.string(),
                     "image paths are relative to the JSONL file's folder"});
    const auto msgs = rec.find("messages");
    if (msgs == rec.end())
      throw FormatError({where, "held-out record has no \"messages\"", "a list of chat messages", "no such key", ""});
    item.chat = engine::parse_messages(*msgs, mopts, where);
    const auto ch = rec.find("choices");
    if (ch != rec.end() && !ch->is_null()) {
      if (!ch->is_array())
        throw FormatError({where, "\"choices\" must be a list of strings or null", "a list", ch->type_name(), ""});
      std::vector<std::string> choices;
      for (const auto& c : *ch) {
        if (!c.is_string())
          throw FormatError({where, "\"choices\" must hold strings", "strings", c.type_name(), ""});
        choices.push_back(c.get<std::string>());
      }
      item.choices = std::move(choices);
    }
    items.push_back(std::move(item));
  }
  if (items.empty()) throw ConfigError({name, "held-out file has no items", "JSONL lines", "none", ""});
  return items;
}

double TaskAccuracy::accuracy() const {
  return total ? static_cast<double>(correct) / static_cast<double>(total) : kNaN;
}

void AccuracyTable::add(const std::string& task, bool correct) {
  auto it = index_.find(task);
  if (it == index_.end()) {
    it = index_.emplace(task, tasks_.size()).first;
    tasks_.push_back(TaskAccuracy{task, 0, 0});
  }
  TaskAccuracy& t = tasks_[it->second];
  ++t.total;
  if (correct) ++t.correct;
}

TaskAccuracy AccuracyTable::overall() const {
  TaskAccuracy all{"overall", 0, 0};
  for (const auto& t : tasks_) {
    all.correct += t.correct;
    all.total += t.total;
  }
  return all;
}

double AccuracyTable::macro_accuracy() const {
  if (tasks_.empty()) return kNaN;
  double s = 0.0;
  for (const auto& t : tasks_) s += t.accuracy();
  return s / static_cast<double>(tasks_.size());
}

nlohmann::ordered_json AccuracyTable::to_json() const {
  auto one = [](const TaskAccuracy& t) {
    return nlohmann::ordered_json{{"correct", t.correct}, {"total", t.total}, {"accuracy", num_or_null(t.accuracy())}};
  };
  nlohmann::ordered_json j;
  j["tasks"] = nlohmann::ordered_json::object();
  for (const auto& t : tasks_) j["tasks"][t.task] = one(t);
  j["overall"] = one(overall());
  j["macro_accuracy"] = num_or_null(macro_accuracy());
  return j;
}

}  // namespace vlq::eval
