// The model card (README.md) a quantized checkpoint carries: the source model's card, unchanged, under a short
// note by vlq saying what the folder is and that the card's figures describe the source model, not the export.
#pragma once

#include <string>
#include <string_view>

namespace vlq::quant {

// The README.md of an export made from a folder whose README.md is `source_card`: a note (a Markdown quote of
// five lines) naming `source_name` (the input folder's name) and `recipe` (e.g. "ModelOpt FP8: language model
// only, FP8 KV cache"), saying that the card below is the source's, copied unchanged, whose figures (accuracy,
// sizes, files, hashes) vlq did not measure on this checkpoint, and how to measure it (`vlq eval`; vlq's
// figures for its bundled model: docs/quantization-results.md); then `source_card` byte for byte. A YAML
// front matter block at the very start (a "---" line ... a "---" line: Hugging Face's card metadata) stays
// first, so the Hub still reads the licence and tags; the note follows it. Never throws.
std::string quantized_model_card(std::string_view source_card, const std::string& source_name, const std::string& recipe);

}  // namespace vlq::quant
