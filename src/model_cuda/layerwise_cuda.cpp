// LayerwiseCalibrator (see vlq/model_cuda/layerwise.h): the residual stream of all calibration rows on the
// device, decoder layers streamed from the checkpoint one at a time through forward_cuda.cpp's decoder_layer
// with calibration taps, the vision tower resident with its taps.
#include "vlq/model_cuda/layerwise.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "impl.h"
#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/cuda/elementwise.h"
#include "vlq/formats/names.h"
#include "vlq/ops/rotary.h"

namespace vlq::model_cuda {

using cuda::Tensor;

namespace {

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Device slots of taps: amax [slots] and, with histograms, [slots, bins + 1] counters.
struct TapBuffers {
  Taps taps;
  int slots = 0;
  cuda::DeviceBuffer amax, hist;
  void allocate(int n, bool histograms, const cuda::AbsHistLayout& layout) {
    slots = n;
    taps.layout = layout;
    amax = cuda::DeviceBuffer(static_cast<std::size_t>(n) * 4);
    taps.amax = amax.as<float>();
    if (histograms) {
      hist = cuda::DeviceBuffer(static_cast<std::size_t>(n) * (layout.bins() + 1) * 8);
      taps.hist = hist.as<unsigned long long>();
    }
  }
  void clear(cudaStream_t st) {
    VLQ_CUDA_CHECK(cudaMemsetAsync(amax.data(), 0, amax.bytes(), st));
    if (hist.bytes()) VLQ_CUDA_CHECK(cudaMemsetAsync(hist.data(), 0, hist.bytes(), st));
  }
  // Downloads slot values (synchronizes the stream).
  std::vector<TapStats> download(cudaStream_t st) const {
    std::vector<float> a(static_cast<std::size_t>(slots));
    VLQ_CUDA_CHECK(cudaMemcpyAsync(a.data(), amax.data(), a.size() * 4, cudaMemcpyDeviceToHost, st));
    const std::size_t per = static_cast<std::size_t>(taps.layout.bins() + 1);
    std::vector<std::uint64_t> h(hist.bytes() / 8);
    if (!h.empty()) VLQ_CUDA_CHECK(cudaMemcpyAsync(h.data(), hist.data(), hist.bytes(), cudaMemcpyDeviceToHost, st));
    VLQ_CUDA_CHECK(cudaStreamSynchronize(st));
    std::vector<TapStats> out(static_cast<std::size_t>(slots));
    for (int i = 0; i < slots; ++i) {
      out[i].amax = a[i];
      if (!h.empty()) {
        out[i].counts.assign(h.begin() + i * per, h.begin() + i * per + per - 1);
        out[i].below = h[i * per + per - 1];
      }
    }
    return out;
  }
};

// One chunk of whole sequences: its rows in the residual stream, integer inputs and M-RoPE angles.
struct Chunk {
  std::int64_t row0 = 0, rows = 0;
  std::vector<CudaSequence> seqs;
  cuda::DeviceBuffer ints, angles;
  BatchInts in;
  std::vector<std::pair<std::int64_t, std::int64_t>> image_runs;  // (row in chunk, rows) of image-pad runs
  std::vector<const float*> image_src;                            // host features of each run
};

void merge(std::map<std::string, TapStats>& m, const std::string& name, const TapStats& t) {
  auto [it, fresh] = m.emplace(name, t);
  if (fresh) return;
  TapStats& d = it->second;
  d.amax = std::max(d.amax, t.amax);
  d.below += t.below;
  if (d.counts.empty()) d.counts = t.counts;
  else
    for (std::size_t b = 0; b < t.counts.size() && b < d.counts.size(); ++b) d.counts[b] += t.counts[b];
}
void merge_max(std::map<std::string, float>& m, const std::string& name, float v) {
  auto [it, fresh] = m.emplace(name, v);
  if (!fresh) it->second = std::max(it->second, v);
}

}  // namespace

struct LayerwiseCalibrator::State {
  const io::Checkpoint& ckpt;
  const model::Qwen2_5_VL& model;
  LayerwiseOptions opt;
  std::map<std::string, std::string> original;  // canonical tensor name → the checkpoint's name
  std::unique_ptr<Qwen2_5_VLCuda::Impl> im;
  std::unique_ptr<DevVision> vision;
  TapBuffers vision_taps, lm_taps, head_taps;
  bool vision_collected = true, ran = false;
  std::map<std::string, TapStats> inputs;
  std::map<std::string, float> k, v;
  LayerwiseReport rep;

  State(const io::Checkpoint& c, const model::Qwen2_5_VL& m, const LayerwiseOptions& o) : ckpt(c), model(m), opt(o) {}

  void note_memory() {
    std::size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) rep.peak_device_bytes = std::max(rep.peak_device_bytes, total_b - free_b);
  }

  const io::TensorInfo& tensor(const std::string& canonical) const {
    auto it = original.find(canonical);
    if (it == original.end())
      throw FormatError({ckpt.dir().string(), "tensor missing from the checkpoint", canonical, "absent",
                         "run `vlq check --target vlq` on the folder"});
    return ckpt.info(it->second);
  }
  bool has(const std::string& canonical) const { return original.count(canonical) != 0; }
  void drop_pages(const io::TensorInfo& t) const {
    if (t.nbytes() >= (1u << 20)) ckpt.shard(ckpt.find(t.name).shard).advise_dontneed(t);
  }
  std::vector<float> read_f32(const std::string& canonical) const {
    const io::TensorInfo& t = tensor(canonical);
    std::vector<float> v(static_cast<std::size_t>(t.numel()));
    decode_to_f32(t.dtype, ckpt.data(t.name), v);
    drop_pages(t);
    return v;
  }
  // BF16 copy of a float tensor in `arena` (the checkpoint's bytes when it is BF16 already).
  void* read_bf16(cuda::DeviceArena& arena, const std::string& canonical) const {
    const io::TensorInfo& t = tensor(canonical);
    if (t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F32)
      throw UnsupportedError({t.name, "calibration needs float weights", "BF16/F16/F32", std::string(dtype_name(t.dtype)),
                              "calibrate the BF16 checkpoint, not a quantized one"});
    void* d = nullptr;
    if (t.dtype == DType::BF16) {
      d = arena.upload(ckpt.data(t.name).data(), t.nbytes());
    } else {
      const std::vector<float> f = read_f32(canonical);
      d = upload_bf16(arena, f);
    }
    drop_pages(t);
    return d;
  }
  DevLinear dense(cuda::DeviceArena& arena, const ops::LinearWeights& shape) const {
    DevLinear d;
    d.name = shape.name;
    d.n = shape.out_features;
    d.k = d.kp = shape.in_features;
    if (d.k % 8 != 0)
      throw UnsupportedError({shape.name, "decoder Linears need in_features % 8 == 0 on the CUDA path", "a multiple of 8",
                              std::to_string(d.k), "calibrate with --device cpu"});
    d.w = read_bf16(arena, shape.name + ".weight");
    if (has(shape.name + ".bias")) {
      const std::vector<float> b = read_f32(shape.name + ".bias");
      d.bias_f32 = upload_f32(arena, b);
      d.bias_bf16 = upload_bf16(arena, b);
    }
    return d;
  }
};

LayerwiseCalibrator::LayerwiseCalibrator(const io::Checkpoint& ckpt, const model::Qwen2_5_VL& model,
                                         const LayerwiseOptions& options)
    : s_(std::make_unique<State>(ckpt, model, options)) {
  if (cuda::device_count() <= options.device)
    throw CudaError({"--device cuda", "no CUDA device", "device " + std::to_string(options.device),
                     std::to_string(cuda::device_count()) + " devices", "run with --device cpu"});
  VLQ_CUDA_CHECK(cudaSetDevice(options.device));
  for (const std::string& n : ckpt.names()) s_->original.emplace(formats::canonical_name(n), n);
  const auto& tc = model.config().text;
  auto im = std::make_unique<Qwen2_5_VLCuda::Impl>();
  im->opt.device = options.device;
  im->H = tc.hidden_size;
  im->heads = tc.num_attention_heads;
  im->kvh = tc.num_key_value_heads;
  im->hd = tc.head_dim;
  im->inter = tc.intermediate_size;
  im->vocab = tc.vocab_size;
  im->layers_n = 1;  // one resident layer
  im->max_pos = tc.max_position_embeddings;
  im->eps = static_cast<float>(tc.rms_norm_eps);
  if (tc.mrope_section.size() != 3 || im->hd % 32 != 0 || im->hd > 256)
    throw UnsupportedError({"config.json", "M-RoPE sections / head_dim not supported by the CUDA kernels",
                            "3 mrope sections, head_dim a multiple of 32 up to 256", std::to_string(im->hd), "calibrate with --device cpu"});
  for (int i = 0; i < 3; ++i) im->sections[i] = static_cast<int>(tc.mrope_section[i]);
  const std::vector<float> inv = ops::rope_inv_freq(tc.rope_theta, im->hd);
  im->arena = std::make_unique<cuda::DeviceArena>(aligned(inv.size() * 4) + 4 * kAlign);
  im->inv_freq = upload_f32(*im->arena, inv);
  s_->im = std::move(im);
  s_->lm_taps.allocate(kLmTaps, options.histograms, options.hist_layout);
  s_->im->taps = &s_->lm_taps.taps;
  s_->note_memory();
}

LayerwiseCalibrator::~LayerwiseCalibrator() = default;

ops::Matrix LayerwiseCalibrator::encode_images(const float* pixel_values, std::int64_t n, std::int64_t patch_dim,
                                               const std::vector<model::GridThw>& grid_thw) {
  State& s = *s_;
  const auto t0 = std::chrono::steady_clock::now();
  if (!s.vision) {
    s.vision = upload_vision(s.model.weights().vision, s.model.config().vision);
    if (!s.vision)
      throw UsageError({"image", "this checkpoint has no vision tower", "visual.* weights", "none",
                        "calibrate with text only (--calib-text)"});
    s.vision_taps.allocate(kTapBlocks + static_cast<int>(s.vision->blocks.size()) * kLmTaps, s.opt.histograms, s.opt.hist_layout);
    s.vision_taps.clear(s.im->stream.get());
    s.vision->taps = &s.vision_taps.taps;
    VLQ_CUDA_CHECK(cudaDeviceSynchronize());
  }
  s.vision_collected = false;
  ops::Matrix out = model_cuda::encode_images(*s.im, *s.vision, pixel_values, n, patch_dim, grid_thw);
  s.note_memory();
  s.rep.vision_seconds += since(t0);
  return out;
}

void LayerwiseCalibrator::run_language_model(const std::vector<LayerwiseSequence>& seqs) {
  State& s = *s_;
  Qwen2_5_VLCuda::Impl& im = *s.im;
  if (s.ran) throw UsageError({"run_language_model", "called twice", "once", "twice", "a bug in the caller"});
  s.ran = true;
  if (seqs.empty()) throw UsageError({"calibration", "no calibration sequences", "at least one", "0", ""});
  const auto t0 = std::chrono::steady_clock::now();
  cudaStream_t st = im.stream.get();
  const auto& tc = s.model.config().text;
  const std::int64_t H = im.H, bs = im.opt.block_size;
  const std::int32_t image_token = static_cast<std::int32_t>(s.model.config().tokens.image_token_id);

  // 1. chunks of whole sequences (host validation first)
  std::vector<Chunk> chunks;
  std::int64_t rows = 0, max_chunk_rows = 0, max_blocks = 0;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const LayerwiseSequence& q = seqs[i];
    const std::int64_t S = static_cast<std::int64_t>(q.ids.size());
    if (S == 0 || q.positions.size() != static_cast<std::size_t>(3 * S))
      throw UsageError({fmt::format("calibration sequence {}", i), "ids / positions sizes", "S > 0 ids and [3, S] positions",
                        fmt::format("{} ids, {} positions", S, q.positions.size()), "a bug in the caller"});
    std::int64_t pads = 0;
    for (auto id : q.ids) {
      if (id < 0 || id >= im.vocab)
        throw UsageError({fmt::format("calibration sequence {}", i), "token id outside the embedding",
                          fmt::format("0..{}", im.vocab - 1), std::to_string(id), ""});
      pads += id == image_token;
    }
    if (pads != (q.image_features ? q.image_rows : 0))
      throw UsageError({fmt::format("calibration sequence {}", i), "image-pad tokens and image features disagree",
                        fmt::format("{} feature rows", pads), std::to_string(q.image_features ? q.image_rows : 0), "a bug in the caller"});
    if (chunks.empty() || chunks.back().rows + S > s.opt.chunk_tokens) {
      chunks.emplace_back();
      chunks.back().row0 = rows;
    }
    Chunk& c = chunks.back();
    CudaSequence cs;
    const std::int64_t nb = (S + bs - 1) / bs;
    std::int64_t used = 0;
    for (const auto& o : c.seqs) used += static_cast<std::int64_t>(o.blocks.size());
    for (std::int64_t b = 0; b < nb; ++b) cs.blocks.push_back(static_cast<std::int32_t>(used + b));
    cs.length = S;
    c.seqs.push_back(std::move(cs));
    // image-pad runs: consecutive pad tokens take consecutive feature rows
    std::int64_t fr = 0;
    for (std::int64_t t = 0; t < S;) {
      if (q.ids[t] != image_token) { ++t; continue; }
      std::int64_t e = t;
      while (e < S && q.ids[e] == image_token) ++e;
      c.image_runs.push_back({c.rows + t, e - t});
      c.image_src.push_back(q.image_features + fr * H);
      fr += e - t;
      t = e;
    }
    c.rows += S;
    rows += S;
    max_chunk_rows = std::max(max_chunk_rows, c.rows);
    max_blocks = std::max<std::int64_t>(max_blocks, used + nb);
  }
  s.rep.rows = rows;
  s.rep.chunks = static_cast<std::int64_t>(chunks.size());
  im.opt.max_batch_tokens = static_cast<int>(max_chunk_rows);

  // 2. per-chunk integer inputs and angles (uploaded once, reused by every layer)
  {
    std::size_t si = 0;
    for (Chunk& c : chunks) {
      Batch b;
      for (std::size_t j = 0; j < c.seqs.size(); ++j, ++si) {
        const LayerwiseSequence& q = seqs[si];
        const std::int64_t S = static_cast<std::int64_t>(q.ids.size());
        b.token_ids.insert(b.token_ids.end(), q.ids.begin(), q.ids.end());
        b.seq_of_row.insert(b.seq_of_row.end(), static_cast<std::size_t>(S), static_cast<std::int32_t>(j));
        for (std::int64_t t = 0; t < S; ++t) b.cache_pos.push_back(static_cast<std::int32_t>(t));
        b.sequences.push_back(&c.seqs[j]);
      }
      // positions [3, T] of the chunk: row r of each sequence's [3, S] block
      b.positions.resize(static_cast<std::size_t>(3 * c.rows));
      std::int64_t off = 0;
      for (std::size_t j = 0; j < c.seqs.size(); ++j) {
        const LayerwiseSequence& q = seqs[si - c.seqs.size() + j];
        const std::int64_t S = static_cast<std::int64_t>(q.ids.size());
        for (int r = 0; r < 3; ++r)
          std::copy(q.positions.begin() + r * S, q.positions.begin() + (r + 1) * S, b.positions.begin() + r * c.rows + off);
        off += S;
      }
      std::int64_t width = 1;
      for (const auto& cs : c.seqs) width = std::max<std::int64_t>(width, static_cast<std::int64_t>(cs.blocks.size()));
      c.in = upload_ints(im, b, width, &c.ints);
      c.angles = cuda::DeviceBuffer(static_cast<std::size_t>(c.rows * (im.hd / 2)) * 4);
      cuda::mrope_angles(c.in.positions, im.inv_freq, im.sections,
                         Tensor::contiguous(c.angles.data(), DType::F32, {c.rows, im.hd / 2}), st);
    }
  }
  // 3. one layer's BF16 KV blocks for the largest chunk (attention within each sequence of a chunk)
  cuda::PagedKvLayer kv;
  kv.dtype = DType::BF16;
  kv.num_blocks = static_cast<int>(max_blocks);
  kv.block_size = static_cast<int>(bs);
  kv.kv_heads = static_cast<int>(im.kvh);
  kv.head_dim = static_cast<int>(im.hd);
  im.kv_pool = cuda::DeviceBuffer(2 * kv.bytes_per_side());
  kv.k = im.kv_pool.data();
  kv.v = static_cast<std::uint8_t*>(im.kv_pool.data()) + kv.bytes_per_side();
  im.kv = {kv};

  // 4. residual stream: on the device when it fits the budget, else pinned host memory + one chunk buffer
  const std::size_t resid_bytes = static_cast<std::size_t>(rows * H) * 4;
  s.rep.residual_bytes = resid_bytes;
  std::size_t budget = s.opt.residual_budget_bytes;
  if (budget == 0) {
    std::size_t free_b = 0, total_b = 0;
    VLQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const std::size_t margin = std::size_t{8} << 30;  // one layer (72B: 1.8 GB) + chunk workspace
    budget = free_b > margin ? free_b - margin : 0;
  }
  cuda::DeviceBuffer resident, chunk_buf;
  float* host = nullptr;
  s.rep.residual_on_host = resid_bytes > budget;
  if (s.rep.residual_on_host) {
    VLQ_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host), resid_bytes));
    chunk_buf = cuda::DeviceBuffer(static_cast<std::size_t>(max_chunk_rows * H) * 4);
  } else {
    resident = cuda::DeviceBuffer(resid_bytes);
  }
  struct HostFree {
    float* p;
    ~HostFree() { if (p) cudaFreeHost(p); }
  } host_guard{host};
  // The chunk's rows on the device (copied in when spilled); put_back copies them out again.
  auto rows_of = [&](const Chunk& c) {
    if (!host) return Tensor::contiguous(resident.as<float>() + c.row0 * H, DType::F32, {c.rows, H});
    VLQ_CUDA_CHECK(cudaMemcpyAsync(chunk_buf.data(), host + c.row0 * H, static_cast<std::size_t>(c.rows * H) * 4,
                                   cudaMemcpyHostToDevice, st));
    return Tensor::contiguous(chunk_buf.data(), DType::F32, {c.rows, H});
  };
  auto put_back = [&](const Chunk& c, const Tensor& h) {
    if (host)
      VLQ_CUDA_CHECK(cudaMemcpyAsync(host + c.row0 * H, h.data, static_cast<std::size_t>(c.rows * H) * 4,
                                     cudaMemcpyDeviceToHost, st));
  };

  // 5. embeddings: token rows gathered from the BF16 table on the device, image-pad rows from the features
  {
    const auto tr = std::chrono::steady_clock::now();
    const std::string M(formats::kCanonicalLanguageRoot);
    const std::string table_name = s.has(M + ".embed_tokens.weight") ? M + ".embed_tokens.weight"
                                                                      : std::string(formats::kLmHeadRoot) + ".weight";
    cuda::DeviceArena table_arena(aligned(s.tensor(table_name).numel() * 2) + kAlign);
    void* table = s.read_bf16(table_arena, table_name);
    VLQ_CUDA_CHECK(cudaDeviceSynchronize());
    s.rep.weight_read_seconds += since(tr);
    const Tensor tab = Tensor::contiguous(table, DType::BF16, {im.vocab, H});
    for (const Chunk& c : chunks) {
      const Tensor h = host ? Tensor::contiguous(chunk_buf.data(), DType::F32, {c.rows, H}) : rows_of(c);
      cuda::embedding(c.in.ids, tab, h, st);
      for (std::size_t r = 0; r < c.image_runs.size(); ++r)
        VLQ_CUDA_CHECK(cudaMemcpyAsync(h.as<float>() + c.image_runs[r].first * H, c.image_src[r],
                                       static_cast<std::size_t>(c.image_runs[r].second * H) * 4, cudaMemcpyHostToDevice, st));
      put_back(c, h);
    }
    s.note_memory();
    VLQ_CUDA_CHECK(cudaStreamSynchronize(st));  // the table arena dies here
  }

  // 6. decoder layers, one resident at a time
  const auto& layers = s.model.weights().lm.layers;
  const std::string M = std::string(formats::kCanonicalLanguageRoot) + ".layers.";
  Scratch dbuf;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const model::DecoderLayerWeights& Lw = layers[l];
    const auto tr = std::chrono::steady_clock::now();
    std::size_t bytes = 2 * aligned(static_cast<std::size_t>(H) * 4) + kAlign;
    for (const auto* lin : {&Lw.q, &Lw.k, &Lw.v, &Lw.o, &Lw.gate, &Lw.up, &Lw.down}) bytes += linear_bytes(*lin);
    VLQ_CUDA_CHECK(cudaStreamSynchronize(st));  // the previous layer's arena is released below
    im.layers.clear();
    cuda::DeviceArena arena(bytes);
    DevLayer d;
    const std::string p = M + std::to_string(l) + ".";
    d.input_norm = upload_f32(arena, s.read_f32(p + "input_layernorm.weight"));
    d.post_norm = upload_f32(arena, s.read_f32(p + "post_attention_layernorm.weight"));
    d.q = s.dense(arena, Lw.q);
    d.k = s.dense(arena, Lw.k);
    d.v = s.dense(arena, Lw.v);
    d.o = s.dense(arena, Lw.o);
    d.gate = s.dense(arena, Lw.gate);
    d.up = s.dense(arena, Lw.up);
    d.down = s.dense(arena, Lw.down);
    im.layers = {d};
    VLQ_CUDA_CHECK(cudaDeviceSynchronize());  // pageable cudaMemcpy may return before its DMA lands
    s.rep.weight_read_seconds += since(tr);
    s.lm_taps.clear(st);
    for (const Chunk& c : chunks) {
      const Tensor h = rows_of(c);
      const Tensor dout = Tensor::contiguous(dbuf.get(static_cast<std::size_t>(c.rows * H) * 4), DType::F32, {c.rows, H});
      decoder_layer(im, 0, h, nullptr, c.in, Tensor::contiguous(c.angles.data(), DType::F32, {c.rows, im.hd / 2}), dout);
      cuda::add_inplace(h, dout, st);
      put_back(c, h);
    }
    s.note_memory();
    const std::vector<TapStats> t = s.lm_taps.download(st);  // synchronizes
    const std::string attn = p + "self_attn";
    for (const char* n : {"q_proj", "k_proj", "v_proj"}) merge(s.inputs, attn + "." + n, t[kTapQkvIn]);
    merge(s.inputs, attn + ".o_proj", t[kTapOIn]);
    merge(s.inputs, p + "mlp.gate_proj", t[kTapGateUpIn]);
    merge(s.inputs, p + "mlp.up_proj", t[kTapGateUpIn]);
    merge(s.inputs, p + "mlp.down_proj", t[kTapDownIn]);
    merge_max(s.k, attn, t[kTapK].amax);
    merge_max(s.v, attn, t[kTapV].amax);
    im.layers.clear();
    if (s.opt.progress) s.opt.progress(static_cast<int>(l + 1), static_cast<int>(layers.size()), since(t0));
  }

  // 7. lm_head's input: the final RMSNorm of every row (only when lm_head is quantized)
  if (s.opt.lm_head_input) {
    cuda::DeviceArena arena(aligned(static_cast<std::size_t>(H) * 4) + kAlign);
    const float* norm = upload_f32(arena, s.read_f32(std::string(formats::kCanonicalLanguageRoot) + ".norm.weight"));
    VLQ_CUDA_CHECK(cudaDeviceSynchronize());
    s.head_taps.allocate(1, s.opt.histograms, s.opt.hist_layout);
    s.head_taps.clear(st);
    for (const Chunk& c : chunks) {
      const Tensor h = rows_of(c);
      const Tensor out = Tensor::contiguous(dbuf.get(static_cast<std::size_t>(c.rows * H) * 2), DType::BF16, {c.rows, H});
      cuda::rms_norm(h, nullptr, norm, im.eps, out, 0.0f, st);
      s.head_taps.taps.record(0, out, st);
    }
    merge(s.inputs, std::string(formats::kLmHeadRoot), s.head_taps.download(st)[0]);
  }
  VLQ_CUDA_CHECK(cudaStreamSynchronize(st));
  (void)tc;
  s.rep.lm_seconds = since(t0);
}

void LayerwiseCalibrator::collect_vision() {
  State& s = *s_;
  if (!s.vision_collected && s.vision) {  // fold the vision taps in once (they accumulate over encode calls)
    const std::vector<TapStats> t = s.vision_taps.download(s.im->stream.get());
    merge(s.inputs, s.vision->patch.name, t[kTapPatch]);
    merge(s.inputs, s.vision->merger0.name, t[kTapMerger0]);
    merge(s.inputs, s.vision->merger2.name, t[kTapMerger2]);
    const std::string V = std::string(formats::kCanonicalVisionRoot) + ".blocks.";
    for (std::size_t b = 0; b < s.vision->blocks.size(); ++b) {
      const DevVisionBlock& B = s.vision->blocks[b];
      const int base = kTapBlocks + static_cast<int>(b) * kLmTaps;
      merge(s.inputs, B.qkv.name, t[base + kTapQkvIn]);
      merge(s.inputs, B.proj.name, t[base + kTapOIn]);
      merge(s.inputs, B.gate.name, t[base + kTapGateUpIn]);
      merge(s.inputs, B.up.name, t[base + kTapGateUpIn]);
      merge(s.inputs, B.down.name, t[base + kTapDownIn]);
      merge_max(s.k, V + std::to_string(b) + ".attn", t[base + kTapK].amax);
      merge_max(s.v, V + std::to_string(b) + ".attn", t[base + kTapV].amax);
    }
    s.vision_taps.clear(s.im->stream.get());
    s.vision_collected = true;
  }
}
const std::map<std::string, TapStats>& LayerwiseCalibrator::linear_inputs() {
  collect_vision();
  return s_->inputs;
}
const std::map<std::string, float>& LayerwiseCalibrator::k_amax() {
  collect_vision();
  return s_->k;
}
const std::map<std::string, float>& LayerwiseCalibrator::v_amax() {
  collect_vision();
  return s_->v;
}
LayerwiseReport LayerwiseCalibrator::report() const { return s_->rep; }

}  // namespace vlq::model_cuda
