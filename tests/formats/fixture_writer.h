// Test helper: writes tiny synthetic safetensors checkpoints (bytes written directly, independent of the
// vlq writer) and builds Qwen2.5-VL-shaped FP8 layouts (ModelOpt / compressed-tensors, LM-only or
// whole-VLM, any KV-scale spelling) for the checker and converter tests. Names, dtypes and shapes are
// what matters; values are zeros except scales and KV scales.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "vlq/core/dtype.h"
#include "vlq/core/numerics.h"
#include "vlq/formats/names.h"

namespace vlq::testing {

namespace fs = std::filesystem;
using nlohmann::json;

struct FxTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::vector<float> values;  // empty: zeros; one value: fill; else one per element
};

inline std::vector<std::byte> encode(const FxTensor& t) {
  std::size_t n = 1;
  for (auto d : t.shape) n *= static_cast<std::size_t>(d);
  std::size_t es = dtype_size(t.dtype);
  std::vector<std::byte> out(n * es);
  auto val = [&](std::size_t i) -> float {
    if (t.values.empty()) return 0.f;
    if (t.values.size() == 1) return t.values[0];
    return t.values[i];
  };
  for (std::size_t i = 0; i < n; ++i) {
    float v = val(i);
    std::byte* p = out.data() + i * es;
    switch (t.dtype) {
      case DType::F32: std::memcpy(p, &v, 4); break;
      case DType::BF16: {
        std::uint16_t b = f32_to_bf16(v);
        std::memcpy(p, &b, 2);
        break;
      }
      case DType::F16: {
        std::uint16_t h = f32_to_f16(v);
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::F8_E4M3: {
        std::uint8_t c = f32_to_e4m3fn(v);
        std::memcpy(p, &c, 1);
        break;
      }
      default: break;  // zeros
    }
  }
  return out;
}

// Writes one safetensors file: [u64 N][header JSON][data], tensors in name order.
inline void write_safetensors(const fs::path& file, std::vector<FxTensor> tensors,
                              const std::map<std::string, std::string>& header_dtype_override = {}) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  json h = json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::vector<std::byte> data;
  for (const auto& t : tensors) {
    auto bytes = encode(t);
    std::string dt(dtype_name(t.dtype));
    if (auto it = header_dtype_override.find(t.name); it != header_dtype_override.end()) dt = it->second;
    h[t.name] = {{"dtype", dt}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data.insert(data.end(), bytes.begin(), bytes.end());
  }
  std::string hs = h.dump();
  while (hs.size() % 8) hs += ' ';
  std::ofstream out(file, std::ios::binary);
  std::uint64_t n = hs.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(hs.data(), static_cast<std::streamsize>(hs.size()));
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// A checkpoint folder under construction.
struct Fixture {
  std::vector<FxTensor> tensors;
  std::optional<json> config;
  std::optional<json> hf_quant;
  std::map<std::string, std::string> files;          // other files: name -> contents
  std::map<std::string, std::string> dtype_override;  // tensor -> dtype string written in the header
  int shards = 1;

  Fixture& add(std::string name, DType dt, std::vector<std::int64_t> shape, std::vector<float> values = {}) {
    remove(name);
    tensors.push_back({std::move(name), dt, std::move(shape), std::move(values)});
    return *this;
  }
  Fixture& scalar(std::string name, float v, DType dt = DType::F32, std::vector<std::int64_t> shape = {}) {
    return add(std::move(name), dt, std::move(shape), {v});
  }
  Fixture& remove(const std::string& name) {
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == name; }),
                  tensors.end());
    return *this;
  }
  // Removes every tensor whose name contains `part`.
  Fixture& remove_matching(const std::string& part) {
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [&](const auto& t) { return t.name.find(part) != std::string::npos; }),
                  tensors.end());
    return *this;
  }
  FxTensor* find(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  bool has(const std::string& name) const {
    return std::any_of(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == name; });
  }
  Fixture& rename(const std::string& from, const std::string& to) {
    for (auto& t : tensors)
      if (t.name == from) t.name = to;
    return *this;
  }
  json& qc() { return (*config)["quantization_config"]; }

  void write(const fs::path& dir) const {
    fs::create_directories(dir);
    if (shards <= 1) {
      write_safetensors(dir / "model.safetensors", tensors, dtype_override);
    } else {
      std::vector<FxTensor> sorted = tensors;
      std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
      json wm = json::object();
      std::size_t per = (sorted.size() + shards - 1) / shards;
      for (int s = 0; s < shards; ++s) {
        std::string fn = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards);
        std::vector<FxTensor> part;
        for (std::size_t i = s * per; i < std::min(sorted.size(), (s + 1) * per); ++i) {
          part.push_back(sorted[i]);
          wm[sorted[i].name] = fn;
        }
        write_safetensors(dir / fn, part, dtype_override);
      }
      json idx = {{"metadata", {{"total_size", 0}}}, {"weight_map", wm}};
      std::ofstream(dir / "model.safetensors.index.json") << idx.dump(2);
    }
    if (config) std::ofstream(dir / "config.json") << config->dump(2);
    if (hf_quant) std::ofstream(dir / "hf_quant_config.json") << hf_quant->dump(2);
    for (const auto& [n, c] : files) std::ofstream(dir / n, std::ios::binary) << c;
  }
};

// ---- Qwen2.5-VL-shaped layouts -------------------------------------------------------------------

enum class LmQuant { kBF16, kModelOpt, kCtTensor, kCtChannel };

struct QwenSpec {
  bool legacy_names = true;  // model.layers.* / visual.* (else model.language_model.* / model.visual.*)
  int layers = 2, hidden = 64, inter = 128, heads = 4, kv_heads = 2, vocab = 1024;
  int vdepth = 2, vhidden = 64, vinter = 128;  // vinter 3420 reproduces the Qwen2.5-VL-7B vision MLP
  LmQuant lm = LmQuant::kModelOpt;
  bool vision_fp8 = false;       // ViT Linears FP8 (the format of `lm`; ModelOpt when lm is BF16)
  bool vision_kv = false;        // ModelOpt orphan ViT K/V scales (attn.k_proj.k_scale / v_proj.v_scale)
  bool lm_kv = true;             // decoder KV-cache scales
  formats::KvStyle kv_style = formats::KvStyle::kModelOpt;
  bool kv_single = false;        // one `kv_scale` per layer (NeuralMagic) instead of k/v
  float kv_value = 0.05f;
  float weight_scale = 0.01f, input_scale = 0.02f;
  bool hf_quant_config = true;   // ModelOpt: write hf_quant_config.json
  bool config_json_quant = true; // write config.json quantization_config
  std::string modelopt_version = "0.35.0";
  std::vector<std::string> exclude;  // default: ModelOpt ["lm_head", "<vision>*"], CT explicit vision names
  bool exclude_set = false;
};

inline std::string lm_prefix(const QwenSpec& s) { return s.legacy_names ? "model." : "model.language_model."; }
inline std::string vis_prefix(const QwenSpec& s) { return s.legacy_names ? "visual." : "model.visual."; }

inline json qwen_config(const QwenSpec& s) {
  json text = {{"hidden_size", s.hidden},      {"intermediate_size", s.inter}, {"num_hidden_layers", s.layers},
               {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv_heads}, {"vocab_size", s.vocab},
               {"rms_norm_eps", 1e-6},         {"rope_theta", 1000000.0},      {"max_position_embeddings", 4096},
               {"bos_token_id", 1000},         {"eos_token_id", 1002},         {"model_type", "qwen2_5_vl_text"},
               {"rope_scaling", {{"type", "default"}, {"rope_type", "default"}, {"mrope_section", {2, 3, 3}}}}};
  json c = text;
  c["architectures"] = {"Qwen2_5_VLForConditionalGeneration"};
  c["model_type"] = "qwen2_5_vl";
  c["torch_dtype"] = "bfloat16";
  c["tie_word_embeddings"] = false;
  c["image_token_id"] = 1012;
  c["video_token_id"] = 1013;
  c["vision_start_token_id"] = 1009;
  c["vision_end_token_id"] = 1010;
  c["text_config"] = text;
  c["vision_config"] = {{"depth", s.vdepth},  {"hidden_size", s.vhidden}, {"intermediate_size", s.vinter},
                        {"num_heads", 2},      {"out_hidden_size", s.hidden}, {"patch_size", 14},
                        {"spatial_merge_size", 2}, {"temporal_patch_size", 2}, {"window_size", 56},
                        {"fullatt_block_indexes", {1}}, {"in_channels", 3}, {"tokens_per_second", 2}};
  return c;
}

// Adds a Linear `m` with weight [n, k] in the given quantization.
inline void add_linear(Fixture& f, const std::string& m, std::int64_t n, std::int64_t k, bool bias, LmQuant q,
                       const QwenSpec& s) {
  if (q == LmQuant::kBF16) {
    f.add(m + ".weight", DType::BF16, {n, k});
  } else {
    f.add(m + ".weight", DType::F8_E4M3, {n, k});
    if (q == LmQuant::kModelOpt) {
      f.scalar(m + ".weight_scale", s.weight_scale);
      f.scalar(m + ".input_scale", s.input_scale);
    } else if (q == LmQuant::kCtTensor) {
      f.scalar(m + ".weight_scale", s.weight_scale, DType::BF16, {1});
      f.scalar(m + ".input_scale", s.input_scale, DType::BF16, {1});
    } else {
      f.add(m + ".weight_scale", DType::BF16, {n, 1}, {s.weight_scale});
    }
  }
  if (bias) f.add(m + ".bias", DType::BF16, {n});
}

inline json ct_args(const std::string& strategy, bool dynamic) {
  return {{"num_bits", 8}, {"type", "float"}, {"strategy", strategy}, {"symmetric", true}, {"dynamic", dynamic},
          {"group_size", nullptr}, {"block_structure", nullptr}};
}

inline Fixture make_qwen(const QwenSpec& s) {
  Fixture f;
  const std::string L = lm_prefix(s), V = vis_prefix(s);
  const int hd = s.hidden / s.heads;
  f.add("lm_head.weight", DType::BF16, {s.vocab, s.hidden});
  f.add(L + "embed_tokens.weight", DType::BF16, {s.vocab, s.hidden});
  f.add(L + "norm.weight", DType::BF16, {s.hidden});
  for (int i = 0; i < s.layers; ++i) {
    std::string p = L + "layers." + std::to_string(i) + ".";
    f.add(p + "input_layernorm.weight", DType::BF16, {s.hidden});
    f.add(p + "post_attention_layernorm.weight", DType::BF16, {s.hidden});
    add_linear(f, p + "self_attn.q_proj", s.hidden, s.hidden, true, s.lm, s);
    add_linear(f, p + "self_attn.k_proj", s.kv_heads * hd, s.hidden, true, s.lm, s);
    add_linear(f, p + "self_attn.v_proj", s.kv_heads * hd, s.hidden, true, s.lm, s);
    add_linear(f, p + "self_attn.o_proj", s.hidden, s.hidden, false, s.lm, s);
    add_linear(f, p + "mlp.gate_proj", s.inter, s.hidden, false, s.lm, s);
    add_linear(f, p + "mlp.up_proj", s.inter, s.hidden, false, s.lm, s);
    add_linear(f, p + "mlp.down_proj", s.hidden, s.inter, false, s.lm, s);
    if (s.lm_kv && s.lm != LmQuant::kBF16) {
      const std::string A = p + "self_attn";
      const DType kvdt = s.lm == LmQuant::kModelOpt ? DType::F32 : DType::BF16;
      const std::vector<std::int64_t> kvshape = s.lm == LmQuant::kModelOpt ? std::vector<std::int64_t>{}
                                                                         : std::vector<std::int64_t>{1};
      if (s.kv_single) {
        f.scalar(A + ".kv_scale", s.kv_value, kvdt, kvshape);
      } else {
        f.scalar(formats::kv_scale_name(A, formats::KvKind::kK, s.kv_style), s.kv_value, kvdt, kvshape);
        f.scalar(formats::kv_scale_name(A, formats::KvKind::kV, s.kv_style), s.kv_value, kvdt, kvshape);
      }
    }
  }
  const LmQuant vq = !s.vision_fp8 ? LmQuant::kBF16 : (s.lm == LmQuant::kBF16 ? LmQuant::kModelOpt : s.lm);
  f.add(V + "patch_embed.proj.weight", DType::BF16, {s.vhidden, 3, 2, 14, 14});
  for (int b = 0; b < s.vdepth; ++b) {
    std::string p = V + "blocks." + std::to_string(b) + ".";
    f.add(p + "norm1.weight", DType::BF16, {s.vhidden});
    f.add(p + "norm2.weight", DType::BF16, {s.vhidden});
    add_linear(f, p + "attn.qkv", 3 * s.vhidden, s.vhidden, true, vq, s);
    add_linear(f, p + "attn.proj", s.vhidden, s.vhidden, true, vq, s);
    add_linear(f, p + "mlp.gate_proj", s.vinter, s.vhidden, true, vq, s);
    add_linear(f, p + "mlp.up_proj", s.vinter, s.vhidden, true, vq, s);
    add_linear(f, p + "mlp.down_proj", s.vhidden, s.vinter, true, vq, s);
    if (s.vision_kv) {
      f.scalar(p + "attn.k_proj.k_scale", 1.0f);
      f.scalar(p + "attn.v_proj.v_scale", 1.0f);
    }
  }
  f.add(V + "merger.ln_q.weight", DType::BF16, {s.vhidden});
  add_linear(f, V + "merger.mlp.0", 4 * s.vhidden, 4 * s.vhidden, true, vq, s);
  add_linear(f, V + "merger.mlp.2", s.hidden, 4 * s.vhidden, true, vq, s);

  // configs
  f.config = qwen_config(s);
  const bool modelopt = s.lm == LmQuant::kModelOpt || (s.lm == LmQuant::kBF16 && s.vision_fp8);
  const bool any_q = s.lm != LmQuant::kBF16 || s.vision_fp8;
  if (!any_q) return f;
  std::vector<std::string> excl = s.exclude;
  if (!s.exclude_set) {
    if (modelopt) {
      excl = {"lm_head"};
      if (!s.vision_fp8) excl.insert(excl.begin(), (s.legacy_names ? "visual*" : "model.visual*"));
    } else {
      excl = {"lm_head"};
      if (!s.vision_fp8)
        for (int b = 0; b < s.vdepth; ++b)
          for (const char* m : {"attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
            excl.push_back(V + "blocks." + std::to_string(b) + "." + m);
      if (!s.vision_fp8) {
        excl.push_back(V + "merger.mlp.0");
        excl.push_back(V + "merger.mlp.2");
      }
    }
  }
  const bool kv = s.lm_kv && s.lm != LmQuant::kBF16;
  if (modelopt) {
    json producer = {{"name", "modelopt"}, {"version", s.modelopt_version}};
    if (s.hf_quant_config)
      f.hf_quant = json{{"producer", producer},
                        {"quantization",
                         {{"quant_algo", "FP8"},
                          {"kv_cache_quant_algo", kv ? json("FP8") : json(nullptr)},
                          {"exclude_modules", excl}}}};
    if (s.config_json_quant) {
      json fp8 = {{"dynamic", false}, {"num_bits", 8}, {"type", "float"}};
      json qc = {{"quant_method", "modelopt"},
                 {"quant_algo", "FP8"},
                 {"config_groups", {{"group_0", {{"weights", fp8}, {"input_activations", fp8}, {"targets", {"Linear"}}}}}},
                 {"ignore", excl},
                 {"producer", producer}};
      if (kv) qc["kv_cache_scheme"] = fp8;
      (*f.config)["quantization_config"] = qc;
    }
  } else {
    const bool channel = s.lm == LmQuant::kCtChannel;
    json group = {{"targets", {"Linear"}},
                  {"weights", ct_args(channel ? "channel" : "tensor", false)},
                  {"input_activations", ct_args(channel ? "token" : "tensor", channel)},
                  {"output_activations", nullptr},
                  {"format", "float-quantized"}};
    json qc = {{"quant_method", "compressed-tensors"},
               {"format", "float-quantized"},
               {"quantization_status", "compressed"},
               {"config_groups", {{"group_0", group}}},
               {"ignore", excl},
               {"kv_cache_scheme", kv ? ct_args("tensor", false) : json(nullptr)},
               {"version", "0.11.0"}};
    (*f.config)["quantization_config"] = qc;
  }
  return f;
}

// A fresh, empty temporary folder for one test (removed by the caller's TempDir).
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static std::mt19937_64 rng{std::random_device{}()};
    path = fs::temp_directory_path() / fmt::format("vlq-fmt-{}-{:x}", tag, rng());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& s) const { return path / s; }
};

}  // namespace vlq::testing
