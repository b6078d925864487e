// Parsing of Hugging Face Qwen2.5-VL metadata files (config.json in the 4.x/4.5x/5.x forms,
// generation_config.json, preprocessor_config.json) and tokenizer/chat-template file discovery.
#include "vlq/formats/hf_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>

#include "vlq/core/error.h"
#include "vlq/io/json.h"

namespace vlq::formats {

namespace fs = std::filesystem;
using nlohmann::json;

const char* config_form_name(ConfigForm f) noexcept {
  switch (f) {
    case ConfigForm::kFlatV4: return "transformers-4-flat";
    case ConfigForm::kFlatWithText: return "transformers-4.5x-flat+text_config";
    case ConfigForm::kNestedV5: return "transformers-5-nested";
  }
  return "unknown";
}

namespace {

std::string type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean " + v.dump();
  if (v.is_number_integer()) return "integer " + v.dump();
  if (v.is_number_float()) return "number " + v.dump();
  if (v.is_string()) return "string " + v.dump();
  if (v.is_array()) return "array";
  return "object";
}

// Typed access to one JSON object with error messages that name the file and the key path.
class Reader {
 public:
  Reader(const json* obj, std::string file, std::string prefix)
      : obj_(obj), file_(std::move(file)), prefix_(std::move(prefix)) {}

  bool present() const { return obj_ != nullptr && obj_->is_object(); }
  // Present and not null.
  bool has(const std::string& key) const {
    return present() && obj_->contains(key) && !(*obj_)[key].is_null();
  }
  const json& at(const std::string& key) const { return (*obj_)[key]; }
  std::string path(const std::string& key) const { return prefix_ + key; }
  const std::string& file() const { return file_; }

  [[noreturn]] void type_error(const std::string& key, const std::string& expected) const {
    throw ConfigError({file_ + ": " + path(key), "wrong type", expected, type_name(at(key)),
                       "fix the value in " + file_ + " (re-export with transformers if unsure)"});
  }

  std::optional<std::int64_t> opt_int(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    const json& v = at(key);
    if (v.is_number_integer()) return v.get<std::int64_t>();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<std::int64_t>(d);
    }
    type_error(key, "an integer");
  }
  std::optional<double> opt_double(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    const json& v = at(key);
    if (v.is_number()) return v.get<double>();
    type_error(key, "a number");
  }
  std::optional<bool> opt_bool(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    const json& v = at(key);
    if (v.is_boolean()) return v.get<bool>();
    type_error(key, "true or false");
  }
  std::optional<std::string> opt_string(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    const json& v = at(key);
    if (v.is_string()) return v.get<std::string>();
    type_error(key, "a string");
  }
  std::optional<std::vector<std::int64_t>> opt_int_list(const std::string& key, bool allow_scalar) const {
    if (!has(key)) return std::nullopt;
    const json& v = at(key);
    if (allow_scalar && v.is_number_integer()) return std::vector<std::int64_t>{v.get<std::int64_t>()};
    if (!v.is_array()) type_error(key, allow_scalar ? "an integer or a list of integers" : "a list of integers");
    std::vector<std::int64_t> out;
    for (const auto& e : v) {
      if (!e.is_number_integer()) type_error(key, "a list of integers");
      out.push_back(e.get<std::int64_t>());
    }
    return out;
  }
  std::optional<std::vector<double>> opt_double_list(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    const json& v = at(key);
    if (!v.is_array()) type_error(key, "a list of numbers");
    std::vector<double> out;
    for (const auto& e : v) {
      if (!e.is_number()) type_error(key, "a list of numbers");
      out.push_back(e.get<double>());
    }
    return out;
  }
  const json* opt_object(const std::string& key) const {
    if (!has(key)) return nullptr;
    if (!at(key).is_object()) type_error(key, "an object");
    return &at(key);
  }

 private:
  const json* obj_;
  std::string file_;
  std::string prefix_;
};

[[noreturn]] void missing(const std::string& file, const std::string& key, const std::string& expected,
                          const std::string& hint) {
  throw ConfigError({file + ": " + key, "missing required key", expected, "absent", hint});
}

[[noreturn]] void inconsistent(const std::string& file, const std::string& key, const std::string& what,
                               const std::string& expected, const std::string& found) {
  throw ConfigError({file + ": " + key, what, expected, found,
                     "the config does not describe a valid Qwen2.5-VL model; re-export it with transformers"});
}

// Looks a key up in the first reader that has it.
struct Chain {
  std::vector<const Reader*> readers;
  const Reader* find(const std::string& key) const {
    for (const Reader* r : readers)
      if (r->has(key)) return r;
    return nullptr;
  }
  std::string where(const std::string& key) const {
    // For "missing" errors: name every place that was searched.
    std::string s;
    for (const Reader* r : readers) {
      if (!r->present()) continue;
      if (!s.empty()) s += " or ";
      s += r->path(key);
    }
    return s.empty() ? key : s;
  }
};

std::string join_ints(const std::vector<std::int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string join_strs(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + ("\"" + v[i] + "\"");
  return s + "]";
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
ModelConfig parse_model_config(const json& j, const std::string& file) {
  if (!j.is_object()) {
    throw FormatError({file, "top-level JSON value is not an object", "an object", type_name(j),
                       "the file is not a Hugging Face config"});
  }
  ModelConfig c;
  Reader top(&j, file, "");

  // ---- architecture -------------------------------------------------------------------------------
  if (top.has("architectures")) {
    const json& a = top.at("architectures");
    if (!a.is_array()) top.type_error("architectures", "a list of strings");
    for (const auto& e : a) {
      if (!e.is_string()) top.type_error("architectures", "a list of strings");
      c.architectures.push_back(e.get<std::string>());
    }
  }
  c.model_type = top.opt_string("model_type").value_or("");
  c.transformers_version = top.opt_string("transformers_version").value_or("");
  if (c.model_type.empty() && c.architectures.empty()) {
    missing(file, "model_type", "\"qwen2_5_vl\" (and architectures [\"Qwen2_5_VLForConditionalGeneration\"])",
            "this does not look like a Hugging Face model config");
  }
  const bool arch_ok = c.architectures.empty() ||
                       std::find(c.architectures.begin(), c.architectures.end(),
                                 "Qwen2_5_VLForConditionalGeneration") != c.architectures.end();
  const bool type_ok = c.model_type.empty() || c.model_type == "qwen2_5_vl";
  if (!arch_ok || !type_ok) {
    throw UnsupportedError(
        {file, "model not supported yet",
         "model_type \"qwen2_5_vl\" / architectures [\"Qwen2_5_VLForConditionalGeneration\"]",
         "model_type \"" + c.model_type + "\", architectures " + join_strs(c.architectures),
         "vlq currently handles Qwen2.5-VL (3B/7B/32B/72B) only; other architectures are not supported yet"});
  }
  if (c.model_type.empty()) c.model_type = "qwen2_5_vl";

  // ---- form -----------------------------------------------------------------------------------------
  const json* tc_obj = top.opt_object("text_config");
  const json* vc_obj = top.opt_object("vision_config");
  if (!vc_obj) {
    missing(file, "vision_config", "an object with the ViT fields (depth, hidden_size, ...)",
            "Qwen2.5-VL configs always carry vision_config; is this a text-only Qwen2.5 config?");
  }
  Reader text(tc_obj, file, "text_config.");
  Reader vision(vc_obj, file, "vision_config.");
  if (!tc_obj) c.form = ConfigForm::kFlatV4;
  else if (top.has("hidden_size") || top.has("num_hidden_layers")) c.form = ConfigForm::kFlatWithText;
  else c.form = ConfigForm::kNestedV5;

  Chain tchain{{&text, &top}};   // text fields: nested first
  Chain idchain{{&top, &text}};  // multimodal token ids: top level first

  auto req_int = [&](const Chain& ch, const std::string& key, const std::string& hint) -> std::int64_t {
    const Reader* r = ch.find(key);
    if (!r) missing(file, ch.where(key), "an integer", hint);
    std::int64_t v = *r->opt_int(key);
    if (v <= 0) inconsistent(file, r->path(key), "must be positive", "> 0", std::to_string(v));
    return v;
  };
  auto opt_int = [&](const Chain& ch, const std::string& key) -> std::optional<std::int64_t> {
    const Reader* r = ch.find(key);
    return r ? r->opt_int(key) : std::nullopt;
  };
  auto def_int = [&](const Chain& ch, const std::string& key, std::int64_t dflt, const std::string& dpath) {
    if (auto v = opt_int(ch, key)) return *v;
    c.defaulted.push_back(dpath);
    return dflt;
  };
  auto def_double = [&](const Chain& ch, const std::string& key, double dflt, const std::string& dpath) {
    const Reader* r = ch.find(key);
    if (r) return *r->opt_double(key);
    c.defaulted.push_back(dpath);
    return dflt;
  };
  const std::string text_hint = "add it to config.json (text fields sit at the top level in transformers 4.x "
                                "files and under text_config in 5.x files)";

  // ---- text -----------------------------------------------------------------------------------------
  TextConfig& t = c.text;
  t.hidden_size = req_int(tchain, "hidden_size", text_hint);
  t.intermediate_size = req_int(tchain, "intermediate_size", text_hint);
  t.num_hidden_layers = req_int(tchain, "num_hidden_layers", text_hint);
  t.num_attention_heads = req_int(tchain, "num_attention_heads", text_hint);
  t.num_key_value_heads = req_int(tchain, "num_key_value_heads", text_hint);
  t.vocab_size = req_int(tchain, "vocab_size", text_hint);
  if (auto hd = opt_int(tchain, "head_dim")) {
    t.head_dim = *hd;
  } else {
    if (t.hidden_size % t.num_attention_heads != 0) {
      inconsistent(file, "num_attention_heads", "does not divide hidden_size",
                   "a divisor of " + std::to_string(t.hidden_size), std::to_string(t.num_attention_heads));
    }
    t.head_dim = t.hidden_size / t.num_attention_heads;
  }
  if (t.num_attention_heads % t.num_key_value_heads != 0) {
    inconsistent(file, "num_key_value_heads", "does not divide num_attention_heads",
                 "a divisor of " + std::to_string(t.num_attention_heads), std::to_string(t.num_key_value_heads));
  }
  t.max_position_embeddings = def_int(tchain, "max_position_embeddings", 32768, "text.max_position_embeddings");
  t.rms_norm_eps = def_double(tchain, "rms_norm_eps", 1e-5, "text.rms_norm_eps");
  {
    const Reader* r = tchain.find("hidden_act");
    if (r) t.hidden_act = *r->opt_string("hidden_act");
    else { t.hidden_act = "silu"; c.defaulted.push_back("text.hidden_act"); }
  }
  // RoPE: rope_parameters (5.x) or rope_scaling + rope_theta (4.x).
  {
    const Reader* rp = tchain.find("rope_parameters");
    const Reader* rs = tchain.find("rope_scaling");
    const json* rope_obj = nullptr;
    std::string rope_key;
    if (rp) { rope_obj = rp->opt_object("rope_parameters"); rope_key = rp->path("rope_parameters"); }
    else if (rs) { rope_obj = rs->opt_object("rope_scaling"); rope_key = rs->path("rope_scaling"); }
    if (!rope_obj) {
      missing(file, tchain.where("rope_scaling") + " or " + tchain.where("rope_parameters"),
              "an object with mrope_section (e.g. {\"type\": \"mrope\", \"mrope_section\": [16, 24, 24]})",
              "Qwen2.5-VL needs M-RoPE sections; copy rope_scaling from the original hub config.json");
    }
    Reader rope(rope_obj, file, rope_key + ".");
    auto ms = rope.opt_int_list("mrope_section", false);
    if (!ms) {
      missing(file, rope_key + ".mrope_section", "a list of 3 integers, e.g. [16, 24, 24]",
              "copy rope_scaling from the original hub config.json");
    }
    t.mrope_section = *ms;
    std::int64_t sum = std::accumulate(t.mrope_section.begin(), t.mrope_section.end(), std::int64_t{0});
    if (t.mrope_section.size() != 3 || sum * 2 != t.head_dim) {
      inconsistent(file, rope_key + ".mrope_section", "does not fit head_dim",
                   "3 sections summing to head_dim/2 = " + std::to_string(t.head_dim / 2),
                   join_ints(t.mrope_section));
    }
    if (auto rt = rope.opt_string("rope_type")) t.rope_type = *rt;
    else if (auto ty = rope.opt_string("type")) t.rope_type = *ty;
    if (auto th = rope.opt_double("rope_theta")) {
      t.rope_theta = *th;
    } else {
      t.rope_theta = def_double(tchain, "rope_theta", 1e6, "text.rope_theta");
    }
  }
  {
    bool tie = false;
    bool seen = false;
    if (auto v = text.opt_bool("tie_word_embeddings")) { tie = tie || *v; seen = true; }
    if (auto v = top.opt_bool("tie_word_embeddings")) { tie = tie || *v; seen = true; }
    if (!seen) c.defaulted.push_back("tie_word_embeddings");
    t.tie_word_embeddings = tie;
  }
  {
    const Reader* r = tchain.find("dtype");
    const Reader* r2 = tchain.find("torch_dtype");
    if (r) t.dtype = *r->opt_string("dtype");
    else if (r2) t.dtype = *r2->opt_string("torch_dtype");
  }
  if (const Reader* r = tchain.find("attention_bias")) t.attention_bias = r->opt_bool("attention_bias");
  if (const Reader* r = tchain.find("use_sliding_window")) t.use_sliding_window = *r->opt_bool("use_sliding_window");
  t.sliding_window = opt_int(tchain, "sliding_window");
  t.max_window_layers = opt_int(tchain, "max_window_layers");

  // ---- vision ---------------------------------------------------------------------------------------
  Chain vchain{{&vision}};
  const std::string vhint = "add it to vision_config in config.json (copy it from the original hub file)";
  VisionConfig& v = c.vision;
  v.depth = req_int(vchain, "depth", vhint);
  v.hidden_size = req_int(vchain, "hidden_size", vhint);
  v.intermediate_size = req_int(vchain, "intermediate_size", vhint);
  v.num_heads = req_int(vchain, "num_heads", vhint);
  v.out_hidden_size = req_int(vchain, "out_hidden_size", vhint);
  if (v.hidden_size % v.num_heads != 0) {
    inconsistent(file, "vision_config.num_heads", "does not divide vision_config.hidden_size",
                 "a divisor of " + std::to_string(v.hidden_size), std::to_string(v.num_heads));
  }
  if (v.out_hidden_size != t.hidden_size) {
    inconsistent(file, "vision_config.out_hidden_size", "differs from the text hidden_size",
                 std::to_string(t.hidden_size), std::to_string(v.out_hidden_size));
  }
  v.patch_size = def_int(vchain, "patch_size", 14, "vision.patch_size");
  v.spatial_merge_size = def_int(vchain, "spatial_merge_size", 2, "vision.spatial_merge_size");
  v.temporal_patch_size = def_int(vchain, "temporal_patch_size", 2, "vision.temporal_patch_size");
  v.window_size = def_int(vchain, "window_size", 112, "vision.window_size");
  v.tokens_per_second = def_int(vchain, "tokens_per_second", 4, "vision.tokens_per_second");
  if (vision.has("in_chans")) v.in_chans = *vision.opt_int("in_chans");
  else v.in_chans = def_int(vchain, "in_channels", 3, "vision.in_chans");
  if (auto h = vision.opt_string("hidden_act")) v.hidden_act = *h;
  else { v.hidden_act = "silu"; c.defaulted.push_back("vision.hidden_act"); }
  if (auto f = vision.opt_int_list("fullatt_block_indexes", false)) {
    v.fullatt_block_indexes = *f;
  } else {
    v.fullatt_block_indexes = {7, 15, 23, 31};
    c.defaulted.push_back("vision.fullatt_block_indexes");
  }
  for (auto i : v.fullatt_block_indexes) {
    if (i < 0 || i >= v.depth) {
      inconsistent(file, "vision_config.fullatt_block_indexes", "index outside the ViT blocks",
                   "indexes in [0, " + std::to_string(v.depth) + ")", join_ints(v.fullatt_block_indexes));
    }
  }
  for (auto [val, name] : {std::pair{v.patch_size, "patch_size"}, {v.spatial_merge_size, "spatial_merge_size"},
                           {v.temporal_patch_size, "temporal_patch_size"}, {v.window_size, "window_size"},
                           {v.in_chans, "in_chans"}}) {
    if (val <= 0) inconsistent(file, std::string("vision_config.") + name, "must be positive", "> 0", std::to_string(val));
  }

  // ---- token ids ------------------------------------------------------------------------------------
  TokenIds& k = c.tokens;
  k.image_token_id = def_int(idchain, "image_token_id", 151655, "image_token_id");
  k.video_token_id = def_int(idchain, "video_token_id", 151656, "video_token_id");
  k.vision_start_token_id = def_int(idchain, "vision_start_token_id", 151652, "vision_start_token_id");
  k.vision_end_token_id = def_int(idchain, "vision_end_token_id", 151653, "vision_end_token_id");
  k.vision_token_id = opt_int(idchain, "vision_token_id");
  k.bos_token_id = opt_int(tchain, "bos_token_id");
  k.pad_token_id = opt_int(tchain, "pad_token_id");
  if (const Reader* r = tchain.find("eos_token_id")) k.eos_token_ids = *r->opt_int_list("eos_token_id", true);
  auto check_id = [&](std::optional<std::int64_t> id, const std::string& name) {
    if (id && (*id < 0 || *id >= t.vocab_size)) {
      inconsistent(file, name, "token id outside the vocabulary", "0 <= id < vocab_size " + std::to_string(t.vocab_size),
                   std::to_string(*id));
    }
  };
  check_id(k.image_token_id, "image_token_id");
  check_id(k.video_token_id, "video_token_id");
  check_id(k.vision_start_token_id, "vision_start_token_id");
  check_id(k.vision_end_token_id, "vision_end_token_id");
  check_id(k.vision_token_id, "vision_token_id");
  check_id(k.bos_token_id, "bos_token_id");
  check_id(k.pad_token_id, "pad_token_id");
  for (auto e : k.eos_token_ids) check_id(e, "eos_token_id");

  if (top.has("quantization_config")) {
    if (!top.at("quantization_config").is_object()) top.type_error("quantization_config", "an object");
    c.quantization_config = top.at("quantization_config");
  }
  return c;
}

ModelConfig load_model_config(const fs::path& path) {
  return parse_model_config(io::read_json_file(path), path.string());
}

// ---------------------------------------------------------------------------------------------------
GenerationConfig parse_generation_config(const json& j, const std::string& file) {
  if (!j.is_object()) {
    throw FormatError({file, "top-level JSON value is not an object", "an object", type_name(j), ""});
  }
  Reader r(&j, file, "");
  GenerationConfig g;
  g.bos_token_id = r.opt_int("bos_token_id");
  if (auto e = r.opt_int_list("eos_token_id", true)) g.eos_token_ids = *e;
  g.pad_token_id = r.opt_int("pad_token_id");
  g.do_sample = r.opt_bool("do_sample");
  g.temperature = r.opt_double("temperature");
  g.top_p = r.opt_double("top_p");
  g.top_k = r.opt_int("top_k");
  g.repetition_penalty = r.opt_double("repetition_penalty");
  g.max_new_tokens = r.opt_int("max_new_tokens");
  g.max_length = r.opt_int("max_length");
  g.transformers_version = r.opt_string("transformers_version").value_or("");
  if (g.temperature && *g.temperature < 0) {
    inconsistent(file, "temperature", "negative temperature", ">= 0", std::to_string(*g.temperature));
  }
  if (g.top_p && (*g.top_p < 0 || *g.top_p > 1)) {
    inconsistent(file, "top_p", "top_p outside [0, 1]", "0 <= top_p <= 1", std::to_string(*g.top_p));
  }
  return g;
}

GenerationConfig load_generation_config(const fs::path& path) {
  return parse_generation_config(io::read_json_file(path), path.string());
}

// ---------------------------------------------------------------------------------------------------
PreprocessorConfig parse_preprocessor_config(const json& j, const std::string& file) {
  if (!j.is_object()) {
    throw FormatError({file, "top-level JSON value is not an object", "an object", type_name(j), ""});
  }
  Reader r(&j, file, "");
  PreprocessorConfig p;
  const json* size = r.opt_object("size");
  Reader sz(size, file, "size.");
  auto minp = r.opt_int("min_pixels");
  auto maxp = r.opt_int("max_pixels");
  auto se = sz.opt_int("shortest_edge");
  auto le = sz.opt_int("longest_edge");
  const std::string hint =
      "add \"min_pixels\"/\"max_pixels\" (Qwen2.5-VL: 3136 / 12845056) to preprocessor_config.json; vlq does not "
      "use the transformers class default max_pixels (1003520), which is 12.8x lower";
  if (!minp && !se) missing(file, "min_pixels or size.shortest_edge", "an integer (pixels)", hint);
  if (!maxp && !le) missing(file, "max_pixels or size.longest_edge", "an integer (pixels)", hint);
  p.min_pixels = minp ? *minp : *se;
  p.max_pixels = maxp ? *maxp : *le;
  p.pixels_source = (minp || maxp) ? (minp && maxp ? "min_pixels/max_pixels" : "min_pixels/max_pixels+size")
                                   : "size";
  if (p.min_pixels <= 0 || p.max_pixels < p.min_pixels) {
    inconsistent(file, "min_pixels/max_pixels", "invalid pixel bounds", "0 < min_pixels <= max_pixels",
                 std::to_string(p.min_pixels) + " / " + std::to_string(p.max_pixels));
  }
  auto def_int = [&](const std::string& key, std::int64_t dflt) {
    if (auto v = r.opt_int(key)) {
      if (*v <= 0) inconsistent(file, key, "must be positive", "> 0", std::to_string(*v));
      return *v;
    }
    p.defaulted.push_back(key);
    return dflt;
  };
  p.patch_size = def_int("patch_size", 14);
  p.temporal_patch_size = def_int("temporal_patch_size", 2);
  p.merge_size = def_int("merge_size", 2);
  if (auto m = r.opt_double_list("image_mean")) p.image_mean = *m; else p.defaulted.push_back("image_mean");
  if (auto s = r.opt_double_list("image_std")) p.image_std = *s; else p.defaulted.push_back("image_std");
  if (p.image_mean.size() != 3) {
    inconsistent(file, "image_mean", "wrong length", "3 numbers (R, G, B)", std::to_string(p.image_mean.size()));
  }
  if (p.image_std.size() != 3 || std::any_of(p.image_std.begin(), p.image_std.end(), [](double x) { return x <= 0; })) {
    inconsistent(file, "image_std", "wrong length or non-positive entry", "3 positive numbers (R, G, B)",
                 std::to_string(p.image_std.size()) + " numbers");
  }
  if (auto v = r.opt_double("rescale_factor")) p.rescale_factor = *v; else p.defaulted.push_back("rescale_factor");
  if (auto v = r.opt_int("resample")) p.resample = *v; else p.defaulted.push_back("resample");
  if (auto v = r.opt_bool("do_resize")) p.do_resize = *v;
  if (auto v = r.opt_bool("do_rescale")) p.do_rescale = *v;
  if (auto v = r.opt_bool("do_normalize")) p.do_normalize = *v;
  if (auto v = r.opt_bool("do_convert_rgb")) p.do_convert_rgb = *v;
  p.image_processor_type = r.opt_string("image_processor_type").value_or("");
  return p;
}

PreprocessorConfig load_preprocessor_config(const fs::path& path) {
  return parse_preprocessor_config(io::read_json_file(path), path.string());
}

// ---------------------------------------------------------------------------------------------------
TokenizerFiles find_tokenizer_files(const fs::path& dir) {
  TokenizerFiles t;
  auto pick = [&](const char* name) -> fs::path {
    fs::path p = dir / name;
    std::error_code ec;
    return fs::is_regular_file(p, ec) ? p : fs::path{};
  };
  t.tokenizer_json = pick("tokenizer.json");
  t.tokenizer_config_json = pick("tokenizer_config.json");
  t.vocab_json = pick("vocab.json");
  t.merges_txt = pick("merges.txt");
  t.special_tokens_map_json = pick("special_tokens_map.json");
  t.added_tokens_json = pick("added_tokens.json");
  t.chat_template_jinja = pick("chat_template.jinja");
  t.chat_template_json = pick("chat_template.json");
  auto has_template = [](const fs::path& p) {
    json j = io::read_json_file(p);
    return j.contains("chat_template") && !j["chat_template"].is_null();
  };
  if (!t.chat_template_jinja.empty()) t.chat_template_source = "chat_template.jinja";
  else if (!t.chat_template_json.empty() && has_template(t.chat_template_json))
    t.chat_template_source = "chat_template.json";
  else if (!t.tokenizer_config_json.empty() && has_template(t.tokenizer_config_json))
    t.chat_template_source = "tokenizer_config.json";
  return t;
}

HfModelFiles load_hf_model_files(const fs::path& dir) {
  HfModelFiles h;
  h.dir = dir;
  std::error_code ec;
  if (fs::is_regular_file(dir / "config.json", ec)) h.config = load_model_config(dir / "config.json");
  if (fs::is_regular_file(dir / "generation_config.json", ec))
    h.generation = load_generation_config(dir / "generation_config.json");
  if (fs::is_regular_file(dir / "preprocessor_config.json", ec)) {
    h.preprocessor = load_preprocessor_config(dir / "preprocessor_config.json");
    h.preprocessor_file = "preprocessor_config.json";
  } else if (fs::is_regular_file(dir / "processor_config.json", ec)) {
    const fs::path p = dir / "processor_config.json";
    json j = io::read_json_file(p);
    if (j.contains("image_processor") && j["image_processor"].is_object()) {
      h.preprocessor = parse_preprocessor_config(j["image_processor"], p.string() + ": image_processor");
      h.preprocessor_file = "processor_config.json";
    }
  }
  h.tokenizer = find_tokenizer_files(dir);
  return h;
}

}  // namespace vlq::formats
