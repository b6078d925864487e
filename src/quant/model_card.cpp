// The README.md of a quantized checkpoint: vlq's note, then the source model's card unchanged.
#include "vlq/quant/model_card.h"

namespace vlq::quant {

namespace {

// The length of a YAML front matter block at the start of `card` ("---\n" ... "\n---\n"), 0 when there is none.
std::size_t front_matter_length(std::string_view card) {
  if (card.substr(0, 4) != "---\n" && card.substr(0, 5) != "---\r\n") return 0;
  std::size_t pos = card.find('\n') + 1;
  while (pos < card.size()) {
    const std::size_t end = card.find('\n', pos);
    std::string_view line = card.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "---") return end == std::string_view::npos ? card.size() : end + 1;
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  return 0;  // an unterminated block is not front matter
}

}  // namespace

std::string quantized_model_card(std::string_view source_card, const std::string& source_name, const std::string& recipe) {
  const std::size_t fm = front_matter_length(source_card);
  std::string out(source_card.substr(0, fm));
  if (fm > 0 && out.back() != '\n') out += '\n';
  out += "> **FP8 checkpoint written by `vlq quantize`** from `" + source_name + "` (" + recipe +
         "; the recipe and calibration are in `vlq_quantize.json`).\n"
         "> The model card below is the source model's, copied unchanged: its figures (accuracy, sizes, files, hashes)\n"
         "> describe `" + source_name + "`; vlq measured none of them on this checkpoint. Measure this one with\n"
         "> `vlq eval --reference <source folder> --model <this folder> --tasks <items.jsonl>` (vlq's figures for FP8\n"
         "> exports of its bundled test model: `docs/quantization-results.md` in the vlq repository).\n\n";
  out += source_card.substr(fm);
  return out;
}

}  // namespace vlq::quant
