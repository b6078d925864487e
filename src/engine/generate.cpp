// Generation loop: prefill + decode with greedy/sampled token choice (see vlq/engine/generate.h).
#include "vlq/engine/generate.h"

#include <algorithm>
#include <chrono>

namespace vlq::engine {

GenerateResult generate(const model::Qwen2_5_VL& model, const Prompt& prompt, const GenerateOptions& options,
                        const std::function<void(std::int32_t)>& on_token, model::ForwardObserver* obs) {
  const auto cpu = DeviceModel::create(model, Device::kCpu);
  return generate(*cpu, prompt, options, on_token, obs);
}

GenerateResult generate(DeviceModel& model, const Prompt& prompt, const GenerateOptions& options,
                        const std::function<void(std::int32_t)>& on_token, model::ForwardObserver* obs) {
  using clock = std::chrono::steady_clock;
  GenerateResult r;
  const std::int64_t S = static_cast<std::int64_t>(prompt.ids.size());
  r.prompt_tokens = S;
  model.begin(S + std::max<std::int64_t>(options.max_new_tokens, 0));
  const auto t0 = clock::now();
  const std::int64_t k = std::max<std::int64_t>(1, options.logits_last_k);
  ops::Matrix logits;
  if (prompt.deferred_pixels() && model.preprocesses_images()) {  // images resized/normalised on the device
    logits = model.prefill_raw(prompt.ids, image::plan_images(prompt.raw_images, prompt.image_params), k);
  } else if (prompt.deferred_pixels()) {
    const image::ProcessedImages px = image::preprocess_images(prompt.raw_images, prompt.image_params);
    logits = model.prefill(prompt.ids, &px, k, obs);
  } else {
    const image::ProcessedImages* imgs = prompt.images.n_patches > 0 ? &prompt.images : nullptr;
    logits = model.prefill(prompt.ids, imgs, k, obs);
  }
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.prompt_logits = logits;
  std::mt19937_64 rng(options.seed);
  std::vector<std::int32_t> history(prompt.ids.begin(), prompt.ids.end());
  const std::int64_t V = logits.cols;
  std::vector<float> last(logits.row(logits.rows - 1), logits.row(logits.rows - 1) + V);
  const auto t1 = clock::now();
  for (std::int64_t step = 0; step < options.max_new_tokens; ++step) {
    const std::int32_t id = ops::sample_token(last.data(), V, options.sampling, history, rng);
    r.output_ids.push_back(id);
    history.push_back(id);
    if (on_token) on_token(id);
    if (std::find(options.eos_ids.begin(), options.eos_ids.end(), id) != options.eos_ids.end()) {
      r.stopped_at_eos = true;
      break;
    }
    if (step + 1 == options.max_new_tokens) break;
    ops::Matrix next = model.decode(id, obs);
    std::copy(next.row(0), next.row(0) + V, last.begin());
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

}  // namespace vlq::engine
