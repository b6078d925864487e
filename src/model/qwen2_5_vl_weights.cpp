// Loader of Qwen2.5-VL weights for the CPU runtime (see vlq/model/qwen2_5_vl_weights.h): canonical names
// through formats/names.h, both-direction name check, BF16/F16/F32/E4M3 → f32.
#include "vlq/model/qwen2_5_vl_weights.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/formats/names.h"
#include "vlq/ops/bulk_convert.h"

namespace vlq::model {
namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Converts a checkpoint tensor to f32, then drops its mapped file pages (page cache would otherwise count
// on top of the f32 copy while a large model loads).
// Decoded on every core (ops::decode_to_f32_parallel; the same values as the serial decode).
std::vector<float> to_f32(const io::Checkpoint& ck, const io::TensorInfo& t) {
  std::vector<float> v = ops::large_f32_vector(static_cast<std::size_t>(t.numel()));
  ops::decode_to_f32_parallel(t.dtype, ck.data(t.name), v);  // callers accept only F32/F16/BF16/F8_E4M3
  if (t.nbytes() >= (1u << 20)) {
    const io::TensorRef ref = ck.find(t.name);
    ck.shard(ref.shard).advise_dontneed(t);
  }
  return v;
}

bool is_float_dtype(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F16; }

class Loader {
 public:
  Loader(const io::Checkpoint& ckpt, const WeightFilter& decode) : ckpt_(ckpt), decode_(decode) {
    legacy_ = formats::detect_naming(ckpt.names()) == formats::NamingGeneration::kLegacy;
    for (const std::string& n : ckpt.names()) {
      std::string c = formats::canonical_name(n);
      auto [it, fresh] = by_canonical_.emplace(c, n);
      if (!fresh)
        problems_.push_back(fmt::format("{} and {}: both name the same tensor {} (two naming generations mixed?)",
                                        it->second, n, c));
    }
  }

  const io::TensorInfo* find(const std::string& canonical) {
    auto it = by_canonical_.find(canonical);
    if (it == by_canonical_.end()) return nullptr;
    return &ckpt_.info(it->second);
  }
  // A missing tensor in the checkpoint's own naming ("model.layers.0..." for a legacy checkpoint), with the
  // canonical name in parentheses when they differ.
  std::string display(const std::string& canonical) const {
    return legacy_ ? formats::qwen_vl_canonical_to_legacy().apply(canonical) : canonical;
  }
  std::string original(const std::string& canonical) const {
    auto it = by_canonical_.find(canonical);
    return it == by_canonical_.end() ? canonical : it->second;
  }

  // A plain float tensor (norm weight, bias, embedding) of exactly `shape`.
  std::vector<float> plain(const std::string& canonical, const std::vector<std::int64_t>& shape) {
    const io::TensorInfo* t = find(canonical);
    if (!t) {
      problems_.push_back(fmt::format("{}: missing (expected {} BF16/F16/F32; canonical name {})", display(canonical),
                                      shape_str(shape), canonical));
      return std::vector<float>(numel(shape), 0.0f);
    }
    used_.insert(canonical);
    if (!is_float_dtype(t->dtype) || t->shape != shape) {
      problems_.push_back(fmt::format("{}: expected {} BF16/F16/F32, found {} {}", original(canonical),
                                      shape_str(shape), shape_str(t->shape), dtype_name(t->dtype)));
      return std::vector<float>(numel(shape), 0.0f);
    }
    if (!wanted(canonical)) return {};
    return to_f32(ckpt_, *t);
  }
  bool wanted(const std::string& canonical) const { return !decode_ || decode_(canonical); }

  std::optional<float> scalar(const std::string& canonical, bool required, const char* what) {
    const io::TensorInfo* t = find(canonical);
    if (!t) {
      if (required) problems_.push_back(fmt::format("{}: missing ({} F32 [] or [1])", canonical, what));
      return std::nullopt;
    }
    used_.insert(canonical);
    if (!is_float_dtype(t->dtype) || t->numel() != 1) {
      problems_.push_back(fmt::format("{}: expected a {} F32/BF16 [] or [1], found {} {}", original(canonical), what,
                                      shape_str(t->shape), dtype_name(t->dtype)));
      return std::nullopt;
    }
    const float v = to_f32(ckpt_, *t)[0];
    if (!(std::isfinite(v) && v > 0)) {
      problems_.push_back(fmt::format("{}: {} must be finite and > 0, found {}", original(canonical), what, v));
      return std::nullopt;
    }
    return v;
  }

  // A Linear module: weight [out, in] (or `kernel_shape` for the Conv3d patch embedding), optional bias,
  // and FP8 scales when the weight is E4M3.
  ops::LinearWeights linear(const std::string& module, std::int64_t out, std::int64_t in, bool has_bias,
                            std::vector<std::int64_t> kernel_shape = {}) {
    ops::LinearWeights lin;
    lin.name = module;
    lin.out_features = out;
    lin.in_features = in;
    const std::vector<std::int64_t> wshape = kernel_shape.empty() ? std::vector<std::int64_t>{out, in} : kernel_shape;
    const std::string wname = module + ".weight";
    const io::TensorInfo* t = find(wname);
    if (!t) {
      problems_.push_back(fmt::format("{}: missing (expected {} BF16/F16/F32 or F8_E4M3; canonical name {})", display(wname),
                                      shape_str(wshape), wname));
      if (has_bias) (void)plain(module + ".bias", {out});
      return lin;
    }
    used_.insert(wname);
    if (t->shape != wshape || !(is_float_dtype(t->dtype) || t->dtype == DType::F8_E4M3)) {
      problems_.push_back(fmt::format("{}: expected {} BF16/F16/F32 or F8_E4M3, found {} {}", original(wname),
                                      shape_str(wshape), shape_str(t->shape), dtype_name(t->dtype)));
      // The module's other tensors belong to it: check the bias, don't report them as unexpected.
      if (has_bias) (void)plain(module + ".bias", {out});
      for (const char* leaf : {".weight_scale", ".input_scale"})
        if (find(module + leaf)) used_.insert(module + leaf);
      return lin;
    }
    if (wanted(wname)) lin.w = to_f32(ckpt_, *t);
    if (has_bias) lin.bias = plain(module + ".bias", {out});
    if (t->dtype == DType::F8_E4M3) {
      ++report_.fp8_linears;
      const std::string sname = module + ".weight_scale";
      const io::TensorInfo* s = find(sname);
      if (!s) {
        problems_.push_back(fmt::format("{}: F8_E4M3 weight without weight_scale (expected {} F32 [] or [{}])",
                                        original(wname), sname, out));
        return lin;
      }
      used_.insert(sname);
      const auto nscale = s->numel();
      if (!is_float_dtype(s->dtype) || !(nscale == 1 || nscale == static_cast<std::uint64_t>(out))) {
        problems_.push_back(fmt::format("{}: expected F32 [] / [1] (per-tensor) or [{}] / [{}, 1] (per-channel), found {} {}",
                                        original(sname), out, out, shape_str(s->shape), dtype_name(s->dtype)));
        return lin;
      }
      lin.weight_scale = to_f32(ckpt_, *s);
      for (float v : lin.weight_scale)
        if (!(std::isfinite(v) && v > 0)) {
          problems_.push_back(fmt::format("{}: weight_scale must be finite and > 0, found {}", original(sname), v));
          break;
        }
      lin.input_scale = scalar(module + ".input_scale", false, "input_scale");
      lin.kind = lin.input_scale ? ops::LinearKind::kFp8Static : ops::LinearKind::kFp8Dynamic;
    } else {
      ++report_.dense_linears;
      for (const char* leaf : {".weight_scale", ".input_scale"})
        if (find(module + leaf)) {
          used_.insert(module + leaf);
          problems_.push_back(fmt::format("{}: scale for a {} (not FP8) weight", original(module + leaf),
                                          dtype_name(t->dtype)));
        }
    }
    return lin;
  }

  // Everything not used: vision K/V scales are ignored (the ViT has no KV cache), the rest is an error.
  void finish() {
    for (const auto& [canonical, name] : by_canonical_) {
      if (used_.count(canonical)) continue;
      if (auto kv = formats::parse_kv_scale_name(canonical);
          kv && formats::tower_of(canonical) == formats::Tower::kVision) {
        report_.ignored.push_back(name + " (vision attention K/V scale: the vision tower has no KV cache)");
        continue;
      }
      problems_.push_back(fmt::format("{}: unexpected tensor (canonical name {}) that no part of Qwen2.5-VL uses",
                                      name, canonical));
    }
    if (!problems_.empty()) {
      std::string list;
      const std::size_t shown = std::min<std::size_t>(problems_.size(), 40);
      for (std::size_t i = 0; i < shown; ++i) list += "\n  - " + problems_[i];
      if (shown < problems_.size()) list += fmt::format("\n  - ... and {} more", problems_.size() - shown);
      throw FormatError({ckpt_.dir().string(),
                         fmt::format("checkpoint does not match its config.json ({} problem(s)):{}", problems_.size(), list),
                         "", "",
                         "run `vlq check --target vlq` on the folder; a checkpoint of another model size or a "
                         "truncated download gives these"});
    }
  }

  LoadReport report_;

 private:
  static std::size_t numel(const std::vector<std::int64_t>& s) {
    std::size_t n = 1;
    for (auto d : s) n *= static_cast<std::size_t>(d);
    return n;
  }
  const io::Checkpoint& ckpt_;
  WeightFilter decode_;
  bool legacy_ = false;
  std::map<std::string, std::string> by_canonical_;
  std::set<std::string> used_;
  std::vector<std::string> problems_;
};

}  // namespace

Qwen2_5_VLWeights load_qwen2_5_vl_weights(const io::Checkpoint& ckpt, const formats::ModelConfig& cfg,
                                          const WeightFilter& decode) {
  Loader L(ckpt, decode);
  Qwen2_5_VLWeights W;
  const formats::VisionConfig& vc = cfg.vision;
  const formats::TextConfig& tc = cfg.text;
  const std::int64_t Dv = vc.hidden_size, Iv = vc.intermediate_size;
  const std::int64_t unit = vc.spatial_merge_size * vc.spatial_merge_size;
  const std::int64_t patch_dim = vc.in_chans * vc.temporal_patch_size * vc.patch_size * vc.patch_size;
  const std::string V = std::string(formats::kCanonicalVisionRoot) + ".";
  W.vision.patch_embed = L.linear(V + "patch_embed.proj", Dv, patch_dim, false,
                                  {Dv, vc.in_chans, vc.temporal_patch_size, vc.patch_size, vc.patch_size});
  for (std::int64_t i = 0; i < vc.depth; ++i) {
    const std::string b = V + "blocks." + std::to_string(i) + ".";
    VisionBlockWeights bw;
    bw.norm1 = L.plain(b + "norm1.weight", {Dv});
    bw.norm2 = L.plain(b + "norm2.weight", {Dv});
    bw.qkv = L.linear(b + "attn.qkv", 3 * Dv, Dv, true);
    bw.proj = L.linear(b + "attn.proj", Dv, Dv, true);
    bw.gate = L.linear(b + "mlp.gate_proj", Iv, Dv, true);
    bw.up = L.linear(b + "mlp.up_proj", Iv, Dv, true);
    bw.down = L.linear(b + "mlp.down_proj", Dv, Iv, true);
    W.vision.blocks.push_back(std::move(bw));
  }
  W.vision.ln_q = L.plain(V + "merger.ln_q.weight", {Dv});
  W.vision.merger0 = L.linear(V + "merger.mlp.0", unit * Dv, unit * Dv, true);
  W.vision.merger2 = L.linear(V + "merger.mlp.2", vc.out_hidden_size, unit * Dv, true);

  const std::int64_t H = tc.hidden_size, I = tc.intermediate_size, hd = tc.head_dim;
  const std::int64_t qw = tc.num_attention_heads * hd, kvw = tc.num_key_value_heads * hd;
  const std::string M = std::string(formats::kCanonicalLanguageRoot) + ".";
  W.lm.embed = L.plain(M + "embed_tokens.weight", {tc.vocab_size, H});
  for (std::int64_t l = 0; l < tc.num_hidden_layers; ++l) {
    const std::string p = M + "layers." + std::to_string(l) + ".";
    DecoderLayerWeights lw;
    lw.input_norm = L.plain(p + "input_layernorm.weight", {H});
    lw.post_norm = L.plain(p + "post_attention_layernorm.weight", {H});
    lw.q = L.linear(p + "self_attn.q_proj", qw, H, tc.qkv_bias);
    lw.k = L.linear(p + "self_attn.k_proj", kvw, H, tc.qkv_bias);
    lw.v = L.linear(p + "self_attn.v_proj", kvw, H, tc.qkv_bias);
    lw.o = L.linear(p + "self_attn.o_proj", H, qw, tc.attention_bias.value_or(false));
    lw.gate = L.linear(p + "mlp.gate_proj", I, H, false);
    lw.up = L.linear(p + "mlp.up_proj", I, H, false);
    lw.down = L.linear(p + "mlp.down_proj", H, I, false);
    const std::string attn = p + "self_attn";
    lw.k_scale = L.scalar(formats::kv_scale_name(attn, formats::KvKind::kK, formats::KvStyle::kCanonical), false, "k_scale");
    lw.v_scale = L.scalar(formats::kv_scale_name(attn, formats::KvKind::kV, formats::KvStyle::kCanonical), false, "v_scale");
    if (lw.k_scale && lw.v_scale) ++L.report_.kv_scale_layers;
    W.lm.layers.push_back(std::move(lw));
  }
  W.lm.norm = L.plain(M + "norm.weight", {H});
  const std::string head(formats::kLmHeadRoot);
  if (tc.tie_word_embeddings && !L.find(head + ".weight")) {
    W.lm.lm_head.name = head;
    W.lm.lm_head.out_features = tc.vocab_size;
    W.lm.lm_head.in_features = H;
    W.lm.lm_head.w = std::move(W.lm.embed);  // one copy: embed lookups read lm_head.w (embedding())
    W.lm.embed.clear();
  } else {
    W.lm.lm_head = L.linear(head, tc.vocab_size, H, false);
  }
  L.finish();
  W.report = L.report_;
  W.report.tensors = static_cast<std::int64_t>(ckpt.names().size());
  W.report.naming = std::string(formats::naming_generation_name(formats::detect_naming(ckpt.names())));
  return W;
}

}  // namespace vlq::model
