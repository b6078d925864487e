// Calibration statistics: the vlq.calibration/1 JSON form and its file (see vlq/quant/calibration_stats.h).
#include "vlq/quant/calibration_stats.h"

#include <cmath>

#include "vlq/core/error.h"
#include "vlq/io/json.h"
#include "vlq/io/safetensors_writer.h"

namespace vlq::quant {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr const char* kCalibSchema = "vlq.calibration/1";
}  // namespace

json calibration_stats_to_json(const CalibrationStats& s) {
  auto m = [](const std::map<std::string, float>& x) {
    json o = json::object();
    for (const auto& [k, v] : x) o[k] = static_cast<double>(v);  // f32 → double is exact; dumped round-trip
    return o;
  };
  return json{{"schema", kCalibSchema}, {"samples", s.samples}, {"text_tokens", s.text_tokens},
              {"image_tokens", s.image_tokens}, {"input_amax", m(s.input_amax)}, {"k_amax", m(s.k_amax)},
              {"v_amax", m(s.v_amax)}};
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
  return s;
}

void save_calibration_stats(const CalibrationStats& s, const fs::path& file) {
  io::write_text_file(file, calibration_stats_to_json(s).dump(2) + "\n");
}

CalibrationStats load_calibration_stats(const fs::path& file) {
  return calibration_stats_from_json(io::read_json_file(file), file.string());
}

}  // namespace vlq::quant
