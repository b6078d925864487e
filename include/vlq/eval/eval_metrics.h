// Metrics for `vlq eval`: per-token comparison of a reference and a quantized model's logits (KL divergence,
// top-1 agreement, NLL / perplexity), the held-out answer scoring rule (`exact_normalized`), the reader of
// data/heldout/heldout.jsonl and per-task accuracy.
//
// Logit metrics: a logits row is f32 [V] (V = vocabulary size, unnormalized scores of one position). All
// arithmetic is in double: log_softmax(x)_i = (x_i - m) - log1p(sum_{k != a} exp(x_k - m)) with m = x_a the
// maximum, so rows with huge values (1e30) or huge spreads do not overflow, and the log-probability of the top
// token keeps full precision in peaked rows (-log p = 3.7e-44 for logits (0, -100), not 0). Logs are natural (nats). -inf entries are allowed (masked tokens: probability 0); NaN and
// +inf are FormatErrors (a broken forward pass should not average into a number).
// KL(P_ref || P_quant) = sum_i p_ref_i * (log p_ref_i - log p_quant_i), over i with p_ref_i > 0 (terms with
// p_ref_i = 0 are 0 by convention); +inf when P_quant gives 0 to a token P_ref does not; summed with
// Neumaier compensation; a negative sum (rounding, for near-identical rows) is clamped to 0.
// Top-1: index of the largest logit, the first one on ties (as torch.argmax).
//
// Scoring rule: data/README.md "exact_normalized", reference tools/train/tiny_vl_data.py normalize_answer:
//   s = re.sub(r"\s+", " ", s.strip().lower()); if s.endswith("."): s = s[:-1].rstrip()
// reproduced on Unicode code points: whitespace = Python str.isspace; lower = Unicode full lower-case mapping
// as Python's str.lower (simple mappings from utf8proc, U+0130 -> "i" U+0307, Greek capital sigma -> final
// sigma at the end of a word by Python's Final_Sigma rule, with Cased / Case_Ignorable approximated from
// general categories). Invalid UTF-8 input is first repaired (each bad sequence -> U+FFFD, like Python's
// bytes.decode(errors="replace")).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/engine/messages.h"

namespace vlq::eval {

// ---- logits ------------------------------------------------------------------------------------------------

// log_softmax of one row: out[V] double. Throws UsageError (empty row, out.size() != logits.size()),
// FormatError (NaN or +inf entry, naming its index; every entry -inf).
void log_softmax(std::span<const float> logits, std::span<double> out);
std::vector<double> log_softmax(std::span<const float> logits);

// Index of the largest logit (first on ties). Throws as log_softmax for bad rows.
std::int64_t argmax(std::span<const float> logits);

// Negative log-likelihood -log p(target) of one position, nats (>= 0; +inf when the target's logit is -inf).
// Throws UsageError (target outside [0, V)) and as log_softmax.
double token_nll(std::span<const float> logits, std::int64_t target);

// KL(P_ref || P_quant) of one position in nats (file comment). Throws UsageError when the rows differ in
// length, and as log_softmax.
double kl_divergence(std::span<const float> ref_logits, std::span<const float> quant_logits);

// Everything about one position, from one log_softmax per row.
struct TokenComparison {
  double kl = 0.0;                 // KL(P_ref || P_quant), nats
  std::int64_t top1_ref = 0;       // argmax of the reference row
  std::int64_t top1_quant = 0;     // argmax of the quantized row
  bool top1_agree = false;         // top1_ref == top1_quant
  std::optional<double> nll_ref;   // -log P_ref(target), when a target was given
  std::optional<double> nll_quant; // -log P_quant(target)
};
// Throws as kl_divergence, and UsageError for a target outside [0, V).
TokenComparison compare_token_logits(std::span<const float> ref_logits, std::span<const float> quant_logits,
                                     std::optional<std::int64_t> target = std::nullopt);

// Aggregate over positions (and over sequences: merge()). Empty aggregates report NaN means (written as null
// by to_json).
struct LogitMetrics {
  std::int64_t tokens = 0;          // positions compared
  double kl_sum = 0.0;              // sum of per-position KL (nats)
  double kl_max = 0.0;              // largest per-position KL
  std::int64_t top1_agree = 0;      // positions whose top-1 tokens agree
  std::int64_t nll_tokens = 0;      // positions with a target
  double nll_sum_ref = 0.0;         // sum of -log P_ref(target)
  double nll_sum_quant = 0.0;       // sum of -log P_quant(target)

  void add(const TokenComparison& c);
  // compare_token_logits + add; returns the comparison.
  TokenComparison add(std::span<const float> ref_logits, std::span<const float> quant_logits,
                      std::optional<std::int64_t> target = std::nullopt);
  void merge(const LogitMetrics& other);

  double mean_kl() const;           // kl_sum / tokens
  double top1_agreement() const;    // top1_agree / tokens, in [0, 1]
  double mean_nll_ref() const;      // nll_sum_ref / nll_tokens
  double mean_nll_quant() const;
  double ppl_ref() const;           // exp(mean_nll_ref): perplexity of the reference model on the targets
  double ppl_quant() const;         // exp(mean_nll_quant)
  // {"tokens", "mean_kl", "max_kl", "top1_agreement", "nll_tokens", "mean_nll_ref", "mean_nll_quant",
  //  "ppl_ref", "ppl_quant"}; NaN -> null, +inf -> the string "inf" (JSON has no infinity).
  nlohmann::ordered_json to_json() const;
};

// ---- answers -----------------------------------------------------------------------------------------------

// The `exact_normalized` normalization (file comment). UTF-8 in, UTF-8 out.
std::string normalize_answer(std::string_view s);
// normalize_answer(prediction) == normalize_answer(expected).
bool answer_matches(std::string_view prediction, std::string_view expected);

// ---- held-out set ------------------------------------------------------------------------------------------

// One line of data/heldout/heldout.jsonl (data/README.md).
struct EvalItem {
  std::string id;                                  // "<task>-NNNN"
  std::string task;                                // color, shape, count, position, text, stamp_caption, ...
  std::filesystem::path image;                     // the "image" field resolved against the JSONL's folder
  std::string question;                            // "question" (empty when absent)
  engine::ParsedMessages chat;                             // "messages" through engine::parse_messages (base = JSONL folder)
  std::string answer;                              // expected answer
  std::optional<std::vector<std::string>> choices; // closed answer set; nullopt for null/absent
  std::string source;                              // "file:line"
};

// Reads a held-out JSONL file; blank lines skipped. Image paths (the "image" field and those in "messages")
// are resolved against the file's folder and must exist. Throws IoError (file or an image missing),
// FormatError (corrupt line, missing/mistyped id, task, image, messages, answer, choices; duplicate id; each
// naming file:line), UnsupportedError (a "rule" other than "exact_normalized"), ConfigError (no items).
std::vector<EvalItem> load_eval_items(const std::filesystem::path& jsonl);
// Deterministic, task-balanced subset: `limit` evenly spaced items (every k-th); all of them when limit <= 0
// or limit >= items.size(). (`vlq eval --limit`, `vlq quantize --auto-limit`.)
std::vector<EvalItem> evenly_spaced(std::vector<EvalItem> items, std::int64_t limit);

// Per-task accuracy.
struct TaskAccuracy {
  std::string task;
  std::int64_t correct = 0;
  std::int64_t total = 0;
  double accuracy() const;  // correct / total; NaN when total == 0
};

class AccuracyTable {
 public:
  void add(const std::string& task, bool correct);
  // Tasks in order of first appearance.
  const std::vector<TaskAccuracy>& per_task() const { return tasks_; }
  // All items together (micro average).
  TaskAccuracy overall() const;
  // Mean of the per-task accuracies (macro average); NaN with no tasks.
  double macro_accuracy() const;
  // {"tasks": {task: {"correct", "total", "accuracy"}}, "overall": {...}, "macro_accuracy"}; NaN -> null.
  nlohmann::ordered_json to_json() const;

 private:
  std::vector<TaskAccuracy> tasks_;
  std::map<std::string, std::size_t> index_;
};

}  // namespace vlq::eval
