// Qwen2_5_VLCuda: construction (weight upload, KV block pool), block reservation, and the single-sequence
// prefill/decode built on the batch-first forward (forward_cuda.cpp).
#include "vlq/model_cuda/qwen2_5_vl_cuda.h"

#include <algorithm>
#include <functional>

#include "impl.h"
#include "vlq/core/error.h"
#include "vlq/model/rope_index.h"

namespace vlq::model_cuda {

namespace {
void make_kv_pool(Qwen2_5_VLCuda::Impl& im) {
  const DType dt = im.kv_fp8 ? DType::F8_E4M3 : DType::BF16;
  const std::size_t per_block_layer = static_cast<std::size_t>(im.opt.block_size * im.kvh * im.hd) * dtype_size(dt) * 2;
  int blocks = im.opt.num_blocks;
  if (blocks <= 0) blocks = static_cast<int>(im.opt.kv_cache_bytes / (per_block_layer * std::max<std::int64_t>(im.layers_n, 1)));
  if (blocks < 1)
    throw UsageError({"kv_cache_bytes", "KV cache budget smaller than one block", ">= " + std::to_string(per_block_layer * im.layers_n) + " bytes",
                      std::to_string(im.opt.kv_cache_bytes), "raise the KV cache budget"});
  im.kv_pool = cuda::DeviceBuffer(per_block_layer * blocks * im.layers_n);
  auto* base = static_cast<std::uint8_t*>(im.kv_pool.data());
  for (std::int64_t l = 0; l < im.layers_n; ++l) {
    cuda::PagedKvLayer p;
    p.dtype = dt;
    p.num_blocks = blocks;
    p.block_size = im.opt.block_size;
    p.kv_heads = static_cast<int>(im.kvh);
    p.head_dim = static_cast<int>(im.hd);
    p.k_scale = im.kv_fp8 ? im.layers[l].k_scale : 1.0f;
    p.v_scale = im.kv_fp8 ? im.layers[l].v_scale : 1.0f;
    p.k = base;
    p.v = base + p.bytes_per_side();
    base += 2 * p.bytes_per_side();
    im.kv.push_back(p);
  }
  im.free_blocks.resize(static_cast<std::size_t>(blocks));
  for (int i = 0; i < blocks; ++i) im.free_blocks[i] = blocks - 1 - i;  // pop_back hands out 0, 1, 2, ...
}
}  // namespace

Qwen2_5_VLCuda::Qwen2_5_VLCuda(const model::Qwen2_5_VL& cpu, const CudaOptions& options)
    : cpu_(cpu), impl_(nullptr) {
  if (cuda::device_count() <= options.device)
    throw CudaError({"--device cuda", "no CUDA device", "device " + std::to_string(options.device),
                     std::to_string(cuda::device_count()) + " devices", "run with --device cpu"});
  VLQ_CUDA_CHECK(cudaSetDevice(options.device));
  impl_ = std::make_unique<Impl>();
  impl_->opt = options;
  upload_language_model(cpu, *impl_);
  if (options.vision) impl_->vision = upload_vision(cpu);
  // VLQ_KV_FP8=0: a BF16 cache even for a checkpoint with FP8 KV scales (A/B of what the FP8 cache costs or saves).
  impl_->kv_fp8 = cpu.fp8_kv_cache() && cuda::env_switch("VLQ_KV_FP8", true);
  make_kv_pool(*impl_);
}

Qwen2_5_VLCuda::~Qwen2_5_VLCuda() = default;

bool Qwen2_5_VLCuda::fp8_kv_cache() const { return impl_->kv_fp8; }
std::size_t Qwen2_5_VLCuda::weight_bytes() const { return impl_->arena->used(); }
std::size_t Qwen2_5_VLCuda::kv_cache_bytes() const { return impl_->kv_pool.bytes(); }
int Qwen2_5_VLCuda::free_blocks() const { return static_cast<int>(impl_->free_blocks.size()); }
int Qwen2_5_VLCuda::block_size() const { return impl_->opt.block_size; }

bool Qwen2_5_VLCuda::reserve(CudaSequence& s, std::int64_t positions) {
  const std::int64_t bs = impl_->opt.block_size;
  const std::int64_t need = (positions + bs - 1) / bs - static_cast<std::int64_t>(s.blocks.size());
  if (need <= 0) return true;
  if (need > static_cast<std::int64_t>(impl_->free_blocks.size())) return false;
  for (std::int64_t i = 0; i < need; ++i) {
    s.blocks.push_back(impl_->free_blocks.back());
    impl_->free_blocks.pop_back();
  }
  return true;
}

void Qwen2_5_VLCuda::release(CudaSequence& s) {
  impl_->free_blocks.insert(impl_->free_blocks.end(), s.blocks.rbegin(), s.blocks.rend());
  s.blocks.clear();
  s.length = 0;
  s.rope_deltas = 0;
}

namespace {
// The two prefill overloads: `device_feats` (when set) runs the device tower and returns its features; else the
// prompt is embedded by the CPU model (with `images` through the CPU tower).
ops::Matrix prefill_common(Qwen2_5_VLCuda& self, Qwen2_5_VLCuda::Impl& im, const model::Qwen2_5_VL& cpu, CudaSequence& s,
                           std::span<const std::int32_t> ids, const std::vector<model::GridThw>& grid,
                           const std::function<cuda::Tensor()>& device_feats, const image::ProcessedImages* images,
                           std::int64_t capacity, std::int64_t logits_last_k) {
  if (s.length != 0)
    throw UsageError({"prefill", "sequence already holds a prompt", "an empty sequence", std::to_string(s.length), ""});
  const std::int64_t S = static_cast<std::int64_t>(ids.size());
  if (S == 0) throw UsageError({"prompt", "empty prompt", "at least one token", "0", ""});
  if (S > im.opt.max_batch_tokens)
    throw UnsupportedError({"prompt", "prompt longer than one CUDA batch (chunked prefill is not wired here yet)",
                            "<= " + std::to_string(im.opt.max_batch_tokens) + " tokens", std::to_string(S), ""});
  capacity = std::max(capacity, S);
  if (capacity > im.max_pos)
    throw UsageError({"prompt", "prompt longer than the context", "<= " + std::to_string(im.max_pos) + " positions",
                      std::to_string(capacity), "shorten the prompt or lower --max-new-tokens"});
  if (!self.reserve(s, capacity))
    throw UsageError({"KV cache", "not enough free KV blocks", std::to_string((capacity + self.block_size() - 1) / self.block_size()),
                      std::to_string(self.free_blocks()) + " free", "raise the KV cache budget"});
  const auto& cfg = cpu.config();
  const model::RopeIndex ri = model::get_rope_index(ids, grid, cfg.tokens.image_token_id, cfg.tokens.video_token_id,
                                                    cfg.vision.spatial_merge_size);
  Batch b;
  b.token_ids.assign(ids.begin(), ids.end());
  ops::Matrix e;  // host rows (kept alive until forward returns)
  if (device_feats) {
    // Text rows from the CPU model's embedding (as embed_prompt), image rows straight from the device tower.
    const std::int64_t H = cfg.text.hidden_size, image_id = cfg.tokens.image_token_id;
    const std::int64_t n_pad = std::count(ids.begin(), ids.end(), static_cast<std::int32_t>(image_id));
    const cuda::Tensor feats = device_feats();
    if (feats.dim(0) != n_pad)
      throw UsageError({"input_ids", "number of <|image_pad|> tokens differs from the image features",
                        std::to_string(feats.dim(0)), std::to_string(n_pad),
                        "expand each <|image_pad|> to grid_t·grid_h·grid_w/4 copies"});
    if (feats.dim(1) != H || feats.stride[0] != H)  // the rows are copied H floats at a time below
      throw UsageError({"visual.merger", "image feature width differs from the language model's hidden_size",
                        "contiguous rows of " + std::to_string(H), feats.describe(),
                        "vision_config.out_hidden_size must equal text hidden_size in config.json"});
    e = ops::Matrix(S - n_pad, H);
    std::int64_t text_row = 0, feat_row = 0;
    for (std::int64_t i = 0; i < S;) {
      std::int64_t j = i;
      const bool image = ids[i] == image_id;
      while (j < S && (ids[j] == image_id) == image) ++j;
      if (image) {
        b.embeds.push_back({i, j - i, feats.as<float>() + feat_row * H, true});
        feat_row += j - i;
      } else {
        cpu.embed_tokens(ids.subspan(static_cast<std::size_t>(i), static_cast<std::size_t>(j - i)), e.row(text_row));
        b.embeds.push_back({i, j - i, e.row(text_row), false});
        text_row += j - i;
      }
      i = j;
    }
  } else {
    // Token embeddings + vision features (the CPU tower), placed on the host.
    e = cpu.embed_prompt(ids, images, nullptr, nullptr);
    b.embeds.push_back({0, S, e.data.data()});
  }
  b.positions.resize(static_cast<std::size_t>(3 * S));
  for (std::size_t i = 0; i < b.positions.size(); ++i) b.positions[i] = static_cast<std::int32_t>(ri.positions[i]);
  b.seq_of_row.assign(static_cast<std::size_t>(S), 0);
  b.cache_pos.resize(static_cast<std::size_t>(S));
  for (std::int64_t i = 0; i < S; ++i) b.cache_pos[i] = static_cast<std::int32_t>(i);
  b.sequences = {&s};
  const std::int64_t k = std::clamp<std::int64_t>(logits_last_k, 0, S);
  for (std::int64_t r = S - k; r < S; ++r) b.logits_rows.push_back(static_cast<std::int32_t>(r));
  ops::Matrix logits = self.forward(b);
  s.length = S;
  s.rope_deltas = ri.rope_deltas;
  return logits;
}
}  // namespace

ops::Matrix Qwen2_5_VLCuda::prefill(CudaSequence& s, std::span<const std::int32_t> ids,
                                    const image::ProcessedImages* images, std::int64_t capacity,
                                    std::int64_t logits_last_k) {
  std::vector<model::GridThw> grid;
  if (images) grid = images->grid_thw;
  std::function<cuda::Tensor()> feats;
  if (images && images->n_patches > 0 && impl_->vision)
    feats = [&] {
      return encode_images_device(*impl_, *impl_->vision, images->pixel_values.data(), images->n_patches,
                                  images->patch_dim, images->grid_thw);
    };
  return prefill_common(*this, *impl_, cpu_, s, ids, grid, feats, images, capacity, logits_last_k);
}

ops::Matrix Qwen2_5_VLCuda::prefill(CudaSequence& s, std::span<const std::int32_t> ids, const image::RawImages& images,
                                    std::int64_t capacity, std::int64_t logits_last_k) {
  if (!impl_->vision)
    throw UsageError({"images", "raw images need the device vision tower, and this checkpoint has none",
                      "a checkpoint with visual.* weights", "none",
                      "send text-only prompts, or preprocess on the CPU (image::preprocess_images)"});
  std::vector<model::GridThw> grid(images.grid_thw.begin(), images.grid_thw.end());
  std::function<cuda::Tensor()> feats;
  if (images.n_patches > 0) feats = [&] { return encode_images_device(*impl_, *impl_->vision, images); };
  return prefill_common(*this, *impl_, cpu_, s, ids, grid, feats, nullptr, capacity, logits_last_k);
}

ops::Matrix Qwen2_5_VLCuda::decode(CudaSequence& s, std::int32_t id) {
  if (!reserve(s, s.length + 1))
    throw UsageError({"decode", "KV cache full", "a free block", "0 free", "raise the KV cache budget"});
  if (s.length + 1 > impl_->max_pos)
    throw UsageError({"decode", "context full", "<= " + std::to_string(impl_->max_pos) + " positions",
                      std::to_string(s.length + 1), ""});
  Batch b;
  const auto p = static_cast<std::int32_t>(s.length + s.rope_deltas);
  b.token_ids = {id};
  b.positions = {p, p, p};
  b.seq_of_row = {0};
  b.cache_pos = {static_cast<std::int32_t>(s.length)};
  b.sequences = {&s};
  b.logits_rows = {0};
  ops::Matrix logits = forward(b);
  s.length += 1;
  return logits;
}

}  // namespace vlq::model_cuda
