// Calibration statistics: the vlq.calibration/1 JSON form and its file (see vlq/quant/calibration_stats.h).
#include "vlq/quant/calibration_stats.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

#include "vlq/core/error.h"
#include "vlq/io/json.h"
#include "vlq/io/safetensors_writer.h"

namespace vlq::quant {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr const char* kCalibSchema = "vlq.calibration/1";

// f32 mantissa thresholds of the 32 sub-bins of an octave: sub-bin j starts at mantissa bits
// of f32(2^(j/32)) (j = 0 → 1.0, mantissa 0).
const std::array<std::uint32_t, AbsHistogram::kBinsPerOctave>& sub_bin_thresholds() {
  static const auto t = [] {
    std::array<std::uint32_t, AbsHistogram::kBinsPerOctave> a{};
    for (int j = 0; j < AbsHistogram::kBinsPerOctave; ++j)
      a[j] = std::bit_cast<std::uint32_t>(static_cast<float>(std::exp2(j / double(AbsHistogram::kBinsPerOctave)))) & 0x7fffffu;
    return a;
  }();
  return t;
}
}  // namespace

int AbsHistogram::bin_of(float abs_x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(abs_x) & 0x7fffffffu;
  if (u >= 0x7f800000u) return kBins - 1;  // inf, NaN
  const int e = static_cast<int>(u >> 23) - 127;
  if (e < kMinLog2) return -1;             // below the range (zeros, subnormals)
  if (e >= kMaxLog2) return kBins - 1;
  const auto& t = sub_bin_thresholds();
  const int j = static_cast<int>(std::upper_bound(t.begin(), t.end(), u & 0x7fffffu) - t.begin()) - 1;
  return (e - kMinLog2) * kBinsPerOctave + j;
}

std::uint32_t AbsHistogram::sub_bin_threshold(int j) { return sub_bin_thresholds().at(static_cast<std::size_t>(j)); }

double AbsHistogram::lower_edge(int bin) { return std::exp2(kMinLog2 + bin / double(kBinsPerOctave)); }

void AbsHistogram::add(const float* x, std::int64_t n) {
  if (counts.empty()) counts.assign(kBins, 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const int b = bin_of(std::fabs(x[i]));
    if (b < 0) ++zeros;
    else ++counts[static_cast<std::size_t>(b)];
  }
}

void AbsHistogram::merge(const AbsHistogram& o) {
  zeros += o.zeros;
  if (o.counts.empty()) return;
  if (counts.empty()) counts.assign(kBins, 0);
  for (int b = 0; b < kBins; ++b) counts[b] += o.counts[b];
}

std::uint64_t AbsHistogram::total() const {
  std::uint64_t t = zeros;
  for (auto c : counts) t += c;
  return t;
}

json calibration_stats_to_json(const CalibrationStats& s) {
  auto m = [](const std::map<std::string, float>& x) {
    json o = json::object();
    for (const auto& [k, v] : x) o[k] = static_cast<double>(v);  // f32 → double is exact; dumped round-trip
    return o;
  };
  json j{{"schema", kCalibSchema}, {"samples", s.samples}, {"text_tokens", s.text_tokens},
         {"image_tokens", s.image_tokens}, {"input_amax", m(s.input_amax)}, {"k_amax", m(s.k_amax)},
         {"v_amax", m(s.v_amax)}};
  if (!s.input_hist.empty()) {
    json h = json::object();
    for (const auto& [k, v] : s.input_hist) {
      std::size_t first = 0, last = 0;  // [first, last) of the non-zero bins
      for (std::size_t b = 0; b < v.counts.size(); ++b)
        if (v.counts[b]) {
          if (last == 0) first = b;
          last = b + 1;
        }
      json counts = json::array();
      for (std::size_t b = first; b < last; ++b) counts.push_back(v.counts[b]);
      h[k] = json{{"bins_per_octave", AbsHistogram::kBinsPerOctave}, {"min_log2", AbsHistogram::kMinLog2},
                  {"zeros", v.zeros}, {"first", first}, {"counts", counts}};
    }
    j["input_hist"] = h;
  }
  return j;
}

CalibrationStats calibration_stats_from_json(const json& j, const std::string& file) {
  if (!j.is_object()) throw ConfigError({file, "calibration statistics must be a JSON object", "object", j.type_name(), ""});
  if (!j.contains("schema") || j["schema"] != kCalibSchema)
    throw ConfigError({file + ": schema", "not a vlq calibration file", kCalibSchema,
                       j.contains("schema") ? j["schema"].dump() : "no \"schema\" key",
                       "write it with vlq quantize --save-calib"});
  CalibrationStats s;
  auto counter = [&](const char* key, std::int64_t& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_number_integer() || j[key].get<std::int64_t>() < 0)
      throw ConfigError({file + ": " + key, "counter must be a non-negative integer", "integer >= 0", j[key].dump(), ""});
    out = j[key].get<std::int64_t>();
  };
  counter("samples", s.samples);
  counter("text_tokens", s.text_tokens);
  counter("image_tokens", s.image_tokens);
  auto map = [&](const char* key, std::map<std::string, float>& out) {
    if (!j.contains(key) || !j[key].is_object())
      throw ConfigError({file + ": " + key, "missing or not an object", "{module: amax}",
                         j.contains(key) ? j[key].type_name() : "absent", ""});
    for (const auto& [k, v] : j[key].items()) {
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
        throw ConfigError({file + ": " + key + "." + k, "amax must be a finite number >= 0", "0 <= amax < inf", v.dump(),
                           "recalibrate"});
      out[k] = static_cast<float>(v.get<double>());
    }
  };
  map("input_amax", s.input_amax);
  map("k_amax", s.k_amax);
  map("v_amax", s.v_amax);
  if (j.contains("input_hist")) {
    const json& h = j["input_hist"];
    if (!h.is_object())
      throw ConfigError({file + ": input_hist", "not an object", "{module: histogram}", h.type_name(), ""});
    for (const auto& item : h.items()) {
      // Not a structured binding: clang 14 (the fuzz build) cannot capture one in the lambda below.
      const std::string& k = item.key();
      const json& v = item.value();
      const std::string where = file + ": input_hist." + k;
      auto integer = [&](const char* key) -> std::int64_t {
        if (!v.is_object() || !v.contains(key) || !v[key].is_number_integer())
          throw ConfigError({where + "." + key, "missing or not an integer", "integer", v.is_object() && v.contains(key) ? v[key].dump() : "absent", "recalibrate"});
        return v[key].get<std::int64_t>();
      };
      if (integer("bins_per_octave") != AbsHistogram::kBinsPerOctave || integer("min_log2") != AbsHistogram::kMinLog2)
        throw ConfigError({where, "histogram bin layout differs from this vlq's", "bins_per_octave 32, min_log2 -32",
                           v.dump().substr(0, 80), "recalibrate with this vlq"});
      const std::int64_t zeros = integer("zeros"), first = integer("first");
      if (!v.contains("counts") || !v["counts"].is_array())
        throw ConfigError({where + ".counts", "missing or not an array", "[count...]", "", "recalibrate"});
      const json& c = v["counts"];
      if (zeros < 0 || first < 0 || first + static_cast<std::int64_t>(c.size()) > AbsHistogram::kBins)
        throw ConfigError({where, "histogram out of range", "0 <= first, first + len(counts) <= 2048",
                           std::to_string(first) + " + " + std::to_string(c.size()), "recalibrate"});
      AbsHistogram hist;
      hist.zeros = static_cast<std::uint64_t>(zeros);
      hist.counts.assign(AbsHistogram::kBins, 0);
      for (std::size_t i = 0; i < c.size(); ++i) {
        if (!c[i].is_number_integer() || c[i].get<std::int64_t>() < 0)
          throw ConfigError({where + ".counts[" + std::to_string(i) + "]", "count must be a non-negative integer", "integer >= 0", c[i].dump(), ""});
        hist.counts[static_cast<std::size_t>(first) + i] = c[i].get<std::uint64_t>();
      }
      s.input_hist[k] = std::move(hist);
    }
  }
  return s;
}

void save_calibration_stats(const CalibrationStats& s, const fs::path& file) {
  io::write_text_file(file, calibration_stats_to_json(s).dump(2) + "\n");
}

CalibrationStats load_calibration_stats(const fs::path& file) {
  return calibration_stats_from_json(io::read_json_file(file), file.string());
}

}  // namespace vlq::quant
