// CUDA model runner of the serving engine: one batch-first forward per step (model_cuda::Qwen2_5_VLCuda)
// over the scheduled sequences, KV blocks addressed by the BlockManager's ids (see vlq/engine/model_runner.h).
#include <chrono>
#include <unordered_map>

#include "vlq/core/error.h"
#include "vlq/engine/model_runner.h"
#include "vlq/ops/sampling.h"
#ifdef VLQ_HAVE_CUDA
#include <cuda_runtime.h>

#include "vlq/model_cuda/tensor_parallel.h"
#endif

namespace vlq::engine {

KvLayout cuda_kv_layout(const model::Qwen2_5_VL& model) {
  const auto& tc = model.config().text;
  return {tc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim, model.fp8_kv_cache() ? 1 : 2};
}

std::int64_t cuda_free_memory_bytes(int device) noexcept {
#ifdef VLQ_HAVE_CUDA
  std::size_t free = 0, total = 0;
  if (cudaSetDevice(device) != cudaSuccess || cudaMemGetInfo(&free, &total) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return static_cast<std::int64_t>(free);
#else
  (void)device;
  return 0;
#endif
}

#ifdef VLQ_HAVE_CUDA
namespace {

// Greedy rows (temperature 0) take the device argmax; a repetition penalty is applied on the device first.
bool greedy(const SequenceParams& p) { return p.sampling.temperature == 0.0; }

class CudaModelRunner final : public ModelRunner {
 public:
  CudaModelRunner(const model::Qwen2_5_VL& model, const CudaRunnerOptions& o)
      : model_(model), opt_(o), gpu_(model, o.tensor_parallel, cuda_options(o)), image_cache_(o.image_cache_bytes) {}

  StepResult step(const Batch& batch) override {
    StepResult r;
    r.tokens.assign(batch.seqs.size(), -1);
    r.errors.resize(batch.seqs.size());
    if (batch.seqs.empty()) return r;
    try {
      run(batch, r);
    } catch (const std::exception& e) {  // one forward for all: a failure fails every item of the step
      for (std::size_t i = 0; i < batch.seqs.size(); ++i) {
        r.tokens[i] = -1;
        r.errors[i] = e.what();
        states_.erase(batch.seqs[i].seq->id());
      }
    }
    return r;
  }
  void release(SeqId id) override { states_.erase(id); }
  KvLayout kv_layout() const override { return cuda_kv_layout(model_); }
  ImageCacheStats image_cache_stats() const override { return image_cache_.stats(); }
  std::int64_t num_live_states() const override { return static_cast<std::int64_t>(states_.size()); }

 private:
  static model_cuda::CudaOptions cuda_options(const CudaRunnerOptions& o) {
    if (o.num_blocks < 1 || o.block_size < 1)
      throw UsageError({"CudaModelRunner", "num_blocks and block_size must be >= 1", ">= 1",
                        std::to_string(o.num_blocks) + ", " + std::to_string(o.block_size), ""});
    model_cuda::CudaOptions c;
    c.block_size = static_cast<int>(o.block_size);
    c.num_blocks = static_cast<int>(o.num_blocks);
    c.max_batch_tokens = static_cast<int>(o.max_num_batched_tokens);
    c.max_sequences = static_cast<int>(o.max_num_seqs);
    return c;
  }

  PromptInputs& inputs_for(const Sequence& seq) {
    auto it = states_.find(seq.id());
    if (it == states_.end()) it = states_.emplace(seq.id(), PromptInputs::make(model_, seq)).first;
    return it->second;
  }

  void run(const Batch& batch, StepResult& r) {
    model_cuda::Batch b;
    std::vector<model_cuda::CudaSequence> seqs(batch.seqs.size());
    // Image rows only: the device embeds every token itself (model_cuda's run_body) and copies these feature rows
    // (host, kept alive by the sequence's PromptInputs / the image cache) over the <|image_pad|> rows, so the text
    // rows of an image chunk no longer go through the host.
    std::vector<std::int64_t> pos[3];
    std::vector<std::size_t> sampled;  // batch items whose chunk ends at their last token
    bool all_greedy = true;
    for (std::size_t i = 0; i < batch.seqs.size(); ++i) {
      const Sequence& seq = *batch.seqs[i].seq;
      PromptInputs& in = inputs_for(seq);
      const std::int64_t start = seq.num_computed_tokens, n = batch.seqs[i].num_new_tokens;
      seqs[i].blocks = seq.block_table;
      seqs[i].length = start;
      b.sequences.push_back(&seqs[i]);
      const std::int64_t row0 = static_cast<std::int64_t>(b.token_ids.size());
      for (std::int64_t t = start; t < start + n; ++t) {
        b.token_ids.push_back(seq.tokens()[static_cast<std::size_t>(t)]);
        b.seq_of_row.push_back(static_cast<std::int32_t>(i));
        b.cache_pos.push_back(static_cast<std::int32_t>(t));
      }
      const std::vector<std::int64_t> p = in.positions(seq, start, n);
      for (int k = 0; k < 3; ++k) pos[k].insert(pos[k].end(), p.begin() + k * n, p.begin() + (k + 1) * n);
      if (touches_images(seq, start, n)) {
        const model::VisionEncoder enc = gpu_.vision_encoder();  // the device tower (null: the CPU one)
        for (const PromptInputs::ImageRows& ir : in.image_rows(model_, seq, image_cache_, start, n, enc ? &enc : nullptr))
          b.embeds.push_back({row0 + ir.row, ir.rows, ir.data});
      }
      if (start + n == seq.num_tokens()) {
        b.logits_rows.push_back(static_cast<std::int32_t>(row0 + n - 1));
        sampled.push_back(i);
        all_greedy = all_greedy && greedy(seq.params());
      }
    }
    for (int k = 0; k < 3; ++k)
      for (const auto v : pos[k]) b.positions.push_back(static_cast<std::int32_t>(v));
    const auto t0 = std::chrono::steady_clock::now();
    auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    if (all_greedy) {
      model_cuda::RowPenalties pen;
      bool any_penalty = false;
      for (std::size_t j : sampled) any_penalty = any_penalty || batch.seqs[j].seq->params().sampling.repetition_penalty != 1.0;
      if (any_penalty) {
        pen.offsets.push_back(0);
        for (std::size_t j : sampled) {
          const Sequence& seq = *batch.seqs[j].seq;
          const double p = seq.params().sampling.repetition_penalty;
          pen.penalty.push_back(static_cast<float>(p));
          if (p != 1.0) pen.history.insert(pen.history.end(), seq.tokens().begin(), seq.tokens().end());
          pen.offsets.push_back(static_cast<std::int32_t>(pen.history.size()));
        }
      }
      const std::vector<std::int32_t> ids = gpu_.forward_greedy(b, any_penalty ? &pen : nullptr);
      r.forward_s = since();
      for (std::size_t j = 0; j < sampled.size(); ++j) r.tokens[sampled[j]] = ids[j];
      return;
    }
    ops::Matrix logits = gpu_.forward(b);
    r.forward_s = since();
    for (std::size_t j = 0; j < sampled.size(); ++j) {
      Sequence& seq = *batch.seqs[sampled[j]].seq;
      r.tokens[sampled[j]] = ops::sample_token(logits.row(static_cast<std::int64_t>(j)), logits.cols,
                                               seq.params().sampling, seq.tokens(), seq.rng());
    }
  }

  const model::Qwen2_5_VL& model_;
  CudaRunnerOptions opt_;
  model_cuda::TensorParallelQwen2_5_VL gpu_;
  ImageCache image_cache_;
  std::unordered_map<SeqId, PromptInputs> states_;
};

}  // namespace
#endif

std::unique_ptr<ModelRunner> make_cuda_model_runner(const model::Qwen2_5_VL& model, const CudaRunnerOptions& options) {
#ifdef VLQ_HAVE_CUDA
  return std::make_unique<CudaModelRunner>(model, options);
#else
  throw UnsupportedError({"--device cuda", "this vlq was built without the CUDA runtime", "a VLQ_CUDA build",
                          "CPU-only build", "use --device cpu"});
#endif
}

}  // namespace vlq::engine
