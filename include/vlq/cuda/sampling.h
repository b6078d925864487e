// Sampling helpers on the device: the repetition penalty (CTRL, Keskar et al. 2019; transformers'
// RepetitionPenaltyLogitsProcessor) applied to logits rows before the greedy argmax, so that greedy decoding
// with a generation_config repetition_penalty (Qwen2.5-VL ships 1.05) needs no [R, vocab] logits download.
// CPU reference: vlq::ops::apply_repetition_penalty (bit-exact: one IEEE division or multiplication per
// penalized logit).
#pragma once

#include <cstdint>

#include "vlq/cuda/device.h"

namespace vlq::cuda {

// For each row r and each token id in history[offsets[r] .. offsets[r+1]) (duplicates allowed; ids outside
// [0, vocab) skipped): logits[r, id] = logits[r, id] > 0 ? logits[r, id] / penalty[r] : logits[r, id] · penalty[r].
//   logits: [R, vocab] F32 (contiguous); offsets: [R + 1] I32 device; history: [N] I32 device (N = offsets[R]);
//   penalty: [R] F32 device (1 = no change); scratch: device f32 [N] (the gathered logits: duplicates then
//   write the same value, as transformers' gather/scatter does). Stream-ordered.
void repetition_penalty(const Tensor& logits, const Tensor& offsets, const Tensor& history, const Tensor& penalty,
                        float* scratch, cudaStream_t stream);

}  // namespace vlq::cuda
