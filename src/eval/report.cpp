// The self-contained HTML report of quantize / eval (see vlq/eval/report.h): inline SVG horizontal bar
// charts, tables, no scripts or external assets.
#include "vlq/eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "vlq/core/numerics.h"
#include "vlq/formats/names.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"

namespace vlq::eval {

namespace {

std::string esc(std::string_view s) {
  std::string o;
  for (char c : s) switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  return o;
}

struct Bar {
  std::string label;
  double value = 0;
  std::optional<double> marker;  // a second value drawn as a tick (e.g. the calibrated max)
  std::string color = "#4c78a8";
  std::string text;              // value text (default: formatted value)
};

// A horizontal bar chart as one <svg>. log: log10 axis over the positive values.
std::string svg_bars(const std::string& name, const std::vector<Bar>& bars, bool log, const std::string& unit,
                     const std::string& marker_legend = "") {
  const int label_w = 300, plot_w = 470, value_w = 110, row = 14, top = 28, W = label_w + plot_w + value_w;
  const int H = top + row * static_cast<int>(std::max<std::size_t>(bars.size(), 1)) + 10;
  std::string s = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{}" width="{}" height="{}" viewBox="0 0 {} {}">)",
                              esc(name), W, H, W, H);
  s += "\n";
  if (bars.empty()) {
    s += fmt::format(R"(<text x="10" y="20" class="note">no data</text></svg>)");
    return s + "\n";
  }
  double lo = INFINITY, hi = 0;
  for (const auto& b : bars)
    for (double v : {b.value, b.marker.value_or(0.0)})
      if (v > 0) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  if (!(hi > 0)) {
    lo = 1e-3;
    hi = 1;
  }
  double a0 = 0, a1 = hi;
  if (log) {
    a0 = std::floor(std::log10(lo));
    a1 = std::ceil(std::log10(hi));
    if (a1 <= a0) a1 = a0 + 1;
  }
  auto x_of = [&](double v) -> double {
    if (log) return v > 0 ? std::clamp((std::log10(v) - a0) / (a1 - a0), 0.0, 1.0) * plot_w : 0.0;
    return a1 > 0 ? std::clamp(v / a1, 0.0, 1.0) * plot_w : 0.0;
  };
  // axis and ticks
  s += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#888"/>)", label_w, top - 4, label_w + plot_w, top - 4) + "\n";
  std::vector<double> ticks;
  if (log)
    for (double e = a0; e <= a1 + 1e-9; e += std::max(1.0, std::ceil((a1 - a0) / 8))) ticks.push_back(std::pow(10.0, e));
  else
    for (int i = 0; i <= 4; ++i) ticks.push_back(a1 * i / 4);
  for (double t : ticks) {
    const double x = label_w + x_of(t);
    s += fmt::format(R"(<line x1="{:.1f}" y1="{}" x2="{:.1f}" y2="{}" stroke="#ddd"/><text x="{:.1f}" y="{}" class="tick">{}</text>)",
                     x, top - 4, x, H - 8, x, top - 10, esc(fmt::format("{:.3g}", t))) + "\n";
  }
  s += fmt::format(R"(<text x="{}" y="12" class="unit">{}{}</text>)", label_w + plot_w, esc(unit),
                   marker_legend.empty() ? "" : esc("  | tick: " + marker_legend)) + "\n";
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const int y = top + row * static_cast<int>(i);
    s += fmt::format(R"(<text x="{}" y="{}" class="label">{}</text>)", label_w - 6, y + 10, esc(b.label));
    s += fmt::format(R"(<rect x="{}" y="{}" width="{:.1f}" height="{}" fill="{}"><title>{}</title></rect>)", label_w, y + 1,
                     x_of(b.value), row - 3, b.color, esc(b.label + ": " + fmt::format("{:.4g}", b.value)));
    if (b.marker)
      s += fmt::format(R"(<line x1="{:.1f}" y1="{}" x2="{:.1f}" y2="{}" stroke="#e45756" stroke-width="2"/>)", label_w + x_of(*b.marker),
                       y, label_w + x_of(*b.marker), y + row - 1);
    s += fmt::format(R"(<text x="{}" y="{}" class="value">{}</text>)", label_w + plot_w + 6, y + 10,
                     esc(b.text.empty() ? fmt::format("{:.4g}", b.value) : b.text));
    s += "\n";
  }
  return s + "</svg>\n";
}

std::string svg_note(const std::string& name, const std::string& note) {
  return fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{}" width="880" height="30" viewBox="0 0 880 30"><text x="10" y="20" class="note">{}</text></svg>)",
                     esc(name), esc(note)) + "\n";
}

std::string section(const std::string& id, const std::string& title, const std::string& intro, const std::string& body) {
  return fmt::format("<section id=\"{}\">\n<h2>{}</h2>\n<p>{}</p>\n{}</section>\n", esc(id), esc(title), esc(intro), body);
}

std::string short_name(const std::string& m) {
  std::string s = m;
  for (const char* p : {"model.language_model.", "model.visual.", "model.", "visual."})
    if (s.rfind(p, 0) == 0) {
      s = (std::string(p).find("visual") != std::string::npos ? "visual." : "") + s.substr(std::strlen(p));
      break;
    }
  return s;
}

const char* verdict_color(formats::Verdict v) {
  switch (v) {
    case formats::Verdict::kLoads: return "#54a24b";
    case formats::Verdict::kLoadsWithWarnings: return "#eeca3b";
    default: return "#e45756";
  }
}

}  // namespace

std::string render_report_html(const ReportData& d) {
  std::string h;
  h += "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  h += "<title>" + esc(d.title) + "</title>\n<style>\n"
       "body{font-family:sans-serif;margin:24px;color:#222;max-width:960px}\n"
       "h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ccc}\n"
       "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}\n"
       "p{font-size:13px}svg text{font-size:10px;font-family:sans-serif}svg .label{text-anchor:end}\n"
       "svg .tick{text-anchor:middle;fill:#666}svg .unit{text-anchor:end;fill:#444}svg .note{fill:#666;font-size:12px}\n"
       "</style>\n</head>\n<body>\n";
  h += "<h1>" + esc(d.title) + "</h1>\n";
  // summary
  {
    std::string t = "<table>\n";
    for (const auto& [k, v] : d.facts) t += "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>\n";
    t += "</table>\n";
    if (!d.scores.empty()) {
      t += "<p>Models against the reference (KL = mean KL(P_ref || P_model) per teacher-forced position, nats):</p>\n<table>\n"
           "<tr><th>model</th><th>weights</th><th>size MB</th><th>KL mean</th><th>KL max</th><th>top-1</th><th>task accuracy</th></tr>\n";
      for (const auto& m : d.scores) {
        LogitMetrics all = m.task_logits;
        all.merge(m.text_logits);
        const auto acc = m.accuracy.overall();
        t += fmt::format("<tr><td>{}</td><td>{}</td><td>{:.2f}</td><td>{:.3e}</td><td>{:.3g}</td><td>{:.2f} %</td><td>{}</td></tr>\n",
                         esc(m.label), esc(m.quantization), m.tensor_bytes / 1e6, all.tokens ? all.mean_kl() : 0.0, all.kl_max,
                         all.tokens ? 100 * all.top1_agreement() : 0.0,
                         acc.total ? fmt::format("{:.1f} %", 100 * acc.accuracy()) : "-");
      }
      t += "</table>\n";
    }
    h += section("summary", "Summary", "What was made and from what.", t);
  }
  // amax
  {
    std::vector<Bar> bars;
    bool any_marker = false;
    for (const auto& l : d.linears) {
      if (!l.quantized) continue;
      Bar b{short_name(l.module), l.amax, std::nullopt, "#4c78a8", ""};
      if (l.max_amax > 0 && l.amax < l.max_amax * (1 - 1e-6f)) {
        b.marker = l.max_amax;
        any_marker = true;
        b.text = fmt::format("{:.4g} (max {:.4g})", l.amax, l.max_amax);
      }
      bars.push_back(b);
    }
    h += section("amax", "Activation amax per Linear",
                 "amax behind each FP8 Linear's input_scale (input_scale = amax / 448), log scale; a red tick marks the "
                 "calibrated max where the chosen amax is lower.",
                 svg_bars("amax", bars, true, "amax (log)", any_marker ? "calibrated max" : ""));
  }
  // clipped
  {
    std::vector<Bar> bars;
    bool known = false;
    for (const auto& l : d.linears) {
      if (!l.quantized) continue;
      known |= l.clipped.has_value();
      const double c = 100.0 * l.clipped.value_or(0);
      bars.push_back({short_name(l.module), c, std::nullopt, "#f58518", l.clipped ? fmt::format("{:.3g} %", c) : "n/a"});
    }
    h += section("clipped", "Clipped fraction per Linear",
                 "Share of the calibration values |x| above the chosen amax (they saturate at +-448 x input_scale), from "
                 "the calibration histogram.",
                 known ? svg_bars("clipped", bars, false, "% of calibration values clipped")
                       : svg_note("clipped", "no calibration histogram here: see the vlq quantize --report page"));
  }
  // group KL
  {
    std::vector<Bar> bars;
    for (const auto& g : d.groups)
      bars.push_back({g.group, g.logits.mean_kl(), std::nullopt, g.group == "lm.kv_cache" ? "#b279a2" : "#72b7b2",
                      fmt::format("{:.3e}", g.logits.mean_kl())});
    std::string body = d.groups.empty() ? svg_note("group-kl", "not measured (vlq eval --per-layer, vlq quantize --auto-precision)")
                                        : svg_bars("group-kl", bars, true, "mean KL, nats (log)");
    if (d.auto_precision) {
      const auto& ap = *d.auto_precision;
      std::vector<Bar> steps;
      for (const auto& s : ap.steps)
        steps.push_back({s.kept_bf16.empty() ? "all FP8" : "+ BF16 " + s.kept_bf16, s.kl_mean, std::nullopt, "#54a24b",
                         fmt::format("{:.3e}, {:.3f} x", s.kl_mean, ap.reference_bytes ? double(s.tensor_bytes) / ap.reference_bytes : 0)});
      std::string kept;
      for (const auto& g : ap.kept_bf16) kept += (kept.empty() ? "" : ", ") + g;
      body += "<p>" + esc(fmt::format("Auto-precision (greedy, most sensitive group first, the whole model re-measured "
                                      "after each): kept in BF16: {}; final mean KL {:.3e} over {} positions, size {:.3f} x BF16.",
                                      kept.empty() ? "nothing" : kept, ap.kl_mean, ap.tokens, ap.size_ratio())) +
              "</p>\n";
      body += svg_bars("auto-precision", steps, true, "whole-model mean KL after each step (log); text: KL, size / BF16");
    }
    h += section("group-kl", "KL per module group", d.groups_note.empty() ? "The reference with only this group in FP8." : d.groups_note,
                 body);
  }
  // size
  {
    std::vector<Bar> bars;
    std::uint64_t ref = 0, out = 0;
    for (const auto& l : d.linears) {
      ref += l.bytes_reference;
      out += l.bytes_out;
      if (!l.quantized) continue;
      const double saved = (static_cast<double>(l.bytes_reference) - static_cast<double>(l.bytes_out)) / 1024.0;
      bars.push_back({short_name(l.module), saved, std::nullopt, "#54a24b", fmt::format("{:.1f} KiB", saved)});
    }
    h += section("size", "Size saved per Linear",
                 fmt::format("Weight and scale bytes of each FP8 Linear vs the reference's BF16 weight; all Linears: {:.2f} MB "
                             "-> {:.2f} MB ({:.1f} % saved).",
                             ref / 1e6, out / 1e6, ref ? 100.0 * (1.0 - double(out) / double(ref)) : 0.0),
                 svg_bars("size", bars, false, "KiB saved"));
  }
  // KV scales
  {
    std::vector<Bar> bars;
    for (const auto& k : d.kv) {
      bars.push_back({short_name(k.attention) + " k_scale", k.k_scale, std::nullopt, "#4c78a8", ""});
      bars.push_back({short_name(k.attention) + " v_scale", k.v_scale, std::nullopt, "#9d755d", ""});
    }
    h += section("kv-scales", "KV-cache scales", "k_scale / v_scale per language-model attention (max calibration, amax / 448).",
                 d.kv.empty() ? svg_note("kv-scales", "no FP8 KV cache") : svg_bars("kv-scales", bars, false, "scale"));
  }
  // checks
  {
    std::string t = "<table>\n<tr><th>target</th><th>verdict</th><th>first problem</th></tr>\n";
    for (const auto& c : d.checks) {
      const formats::Finding* f = c.first_failure();
      std::string first = f ? f->message : "";
      if (!f)
        for (const auto& x : c.findings)
          if (x.severity == formats::Severity::kWarning) {
            first = x.message;
            break;
          }
      t += fmt::format("<tr><td>{}</td><td style=\"background:{}\">{}</td><td>{}</td></tr>\n", esc(c.target), verdict_color(c.verdict),
                       esc(std::string(formats::verdict_name(c.verdict))), esc(first));
    }
    t += "</table>\n";
    h += section("checks", "vlq check verdicts", "Whether each runtime target loads this checkpoint (vlq check).", t);
  }
  h += "</body>\n</html>\n";
  return h;
}

void write_report(const std::filesystem::path& file, const ReportData& data) { io::write_text_file(file, render_report_html(data)); }

namespace {
float scalar_f32(const io::Checkpoint& ck, const std::string& name) {
  const auto& info = ck.info(name);
  const auto b = ck.data(name);
  if (info.dtype == DType::F32) {
    float f;
    std::memcpy(&f, b.data(), 4);
    return f;
  }
  std::uint16_t u;
  std::memcpy(&u, b.data(), 2);
  return info.dtype == DType::BF16 ? bf16_to_f32(u) : f16_to_f32(u);
}
}  // namespace

void read_checkpoint_for_report(const std::filesystem::path& dir, const std::filesystem::path& reference_dir, ReportData& d) {
  const io::Checkpoint ck = io::Checkpoint::open(dir), ref = io::Checkpoint::open(reference_dir);
  std::map<std::string, std::uint64_t> ref_weight;  // canonical module → weight bytes
  for (const auto& n : ref.names())
    if (formats::leaf_of(n) == "weight") ref_weight[std::string(formats::module_of(formats::canonical_name(n)))] = ref.info(n).nbytes();
  auto has = [&](const std::string& n) { return ck.find(n).info != nullptr; };
  for (const auto& n : ck.names()) {
    if (formats::leaf_of(n) != "weight" || ck.info(n).shape.size() != 2) continue;
    const std::string m(formats::module_of(n));
    const std::string canon(formats::module_of(formats::canonical_name(n)));
    if (canon.find("embed_tokens") != std::string::npos) continue;
    ReportLinear l;
    l.module = m;
    l.quantized = has(m + ".weight_scale");
    l.bytes_out = ck.info(n).nbytes();
    for (const char* sfx : {".weight_scale", ".input_scale"})
      if (has(m + sfx)) l.bytes_out += ck.info(m + sfx).nbytes();
    l.bytes_reference = ref_weight.count(canon) ? ref_weight[canon] : l.bytes_out;
    if (has(m + ".input_scale")) l.amax = scalar_f32(ck, m + ".input_scale") * kE4M3Max;
    d.linears.push_back(l);
  }
  std::map<std::string, ReportKv> kv;
  for (const auto& n : ck.names()) {
    const std::string_view leaf = formats::leaf_of(n);
    if (leaf != "k_scale" && leaf != "v_scale") continue;
    std::string att(formats::module_of(n));
    for (const char* p : {".k_proj", ".v_proj"})
      if (att.size() > 7 && att.compare(att.size() - 7, 7, p) == 0) att.resize(att.size() - 7);
    auto& e = kv[att];
    e.attention = att;
    (leaf == "k_scale" ? e.k_scale : e.v_scale) = scalar_f32(ck, n);
  }
  for (auto& [k, v] : kv) d.kv.push_back(v);
}

}  // namespace vlq::eval
