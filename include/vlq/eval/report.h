// The HTML report of `vlq quantize --report FILE` and `vlq eval --report FILE`: one self-contained page
// (inline SVG plots and CSS, no scripts, no external assets) with, per Linear, the activation amax (chosen
// and calibrated max), the fraction of calibration values clipped under the chosen scale (from the |x|
// histogram), the bytes FP8 saves; per module group the KL when measured (eval --per-layer, auto-precision);
// the KV-scale distribution; and the `vlq check` verdict per target. The page is well-formed XML (XHTML
// served as HTML), so tests parse it. Written through io::write_text_file (temporary file renamed into place).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vlq/eval/auto_precision.h"
#include "vlq/eval/evaluate.h"
#include "vlq/formats/check.h"

namespace vlq::eval {

struct ReportLinear {
  std::string module;              // checkpoint module name
  bool quantized = false;
  float max_amax = 0;              // calibrated max |input| (0 = unknown)
  float amax = 0;                  // amax behind the written input_scale (= input_scale · 448)
  std::optional<double> clipped;   // fraction of calibration |x| above amax; nullopt without a histogram
  std::uint64_t bytes_reference = 0, bytes_out = 0;  // weight + its scales, reference vs this checkpoint
};

struct ReportKv {
  std::string attention;           // checkpoint module name
  float k_scale = 0, v_scale = 0;
};

struct ReportData {
  std::string title;                                        // "vlq quantize: out/fp8-vlm"
  std::vector<std::pair<std::string, std::string>> facts;   // key/value table at the top
  std::vector<ReportLinear> linears;                        // model order
  std::vector<ReportKv> kv;
  std::vector<GroupScore> groups;                           // per-group KL (empty: not measured)
  std::string groups_note;                                  // how they were measured
  std::vector<formats::Report> checks;
  std::vector<ModelScore> scores;                           // eval: the model table
  std::optional<AutoPrecisionResult> auto_precision;
};

// The page. Pure function of the data (deterministic).
std::string render_report_html(const ReportData& data);
// render_report_html into `file` (atomic). Throws IoError.
void write_report(const std::filesystem::path& file, const ReportData& data);

// Reads what a checkpoint says about itself for the report: every Linear (a `.weight` of a module with a
// weight_scale, or a 2-D BF16/F16/F32 weight under the vision tower / language model / lm_head), its
// input_scale · 448, weight bytes vs the same tensors of `reference_dir`, and the language model's KV scales.
void read_checkpoint_for_report(const std::filesystem::path& dir, const std::filesystem::path& reference_dir,
                                ReportData& data);

}  // namespace vlq::eval
