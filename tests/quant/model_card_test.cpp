// The README.md of a quantized checkpoint (vlq/quant/model_card.h): vlq's note first (after a YAML front
// matter block, which Hugging Face reads from the top), then the source card byte for byte.
#include <gtest/gtest.h>

#include <string>

#include "vlq/quant/model_card.h"

using vlq::quant::quantized_model_card;

namespace {

const std::string kNoteStart = "> **FP8 checkpoint written by `vlq quantize`** from `tiny` (ModelOpt FP8: language model only; ";

TEST(ModelCard, NoteFirstThenTheSourceCardUnchanged) {
  const std::string card = "# tiny\n\n| task | accuracy |\n|---|---|\n| color | 1.000 |\n";
  const std::string out = quantized_model_card(card, "tiny", "ModelOpt FP8: language model only");
  EXPECT_EQ(out.rfind(kNoteStart, 0), 0u) << out;
  ASSERT_GE(out.size(), card.size());
  EXPECT_EQ(out.substr(out.size() - card.size()), card);  // the source card follows unchanged
  EXPECT_NE(out.find("vlq measured none of them on this checkpoint"), std::string::npos) << out;
  EXPECT_NE(out.find("vlq eval --reference"), std::string::npos) << out;
  EXPECT_NE(out.find("docs/quantization-results.md"), std::string::npos) << out;
  EXPECT_NE(out.find("vlq_quantize.json"), std::string::npos) << out;
  EXPECT_NE(out.find(".\n\n# tiny\n"), std::string::npos) << "a blank line between the note and the card:\n" << out;
}

TEST(ModelCard, YamlFrontMatterStaysFirst) {
  const std::string fm = "---\nlicense: gpl-2.0\ntags:\n- vlq\n---\n";
  const std::string body = "# tiny\ntext\n";
  const std::string out = quantized_model_card(fm + body, "tiny", "ModelOpt FP8: language model only");
  EXPECT_EQ(out.rfind(fm + kNoteStart, 0), 0u) << out;
  EXPECT_EQ(out.substr(out.size() - body.size()), body);
  // CRLF front matter too.
  const std::string crlf = "---\r\nlicense: mit\r\n---\r\n";
  EXPECT_EQ(quantized_model_card(crlf + "x", "tiny", "ModelOpt FP8: language model only").rfind(crlf + kNoteStart, 0), 0u);
  // A closing "---" at the end of the file without a newline.
  const std::string eof = "---\nlicense: mit\n---";
  EXPECT_EQ(quantized_model_card(eof, "tiny", "ModelOpt FP8: language model only").rfind(eof + "\n" + kNoteStart, 0), 0u);
}

TEST(ModelCard, ARuleThatIsNotFrontMatterIsLeftInTheCard) {
  for (const std::string card : {"# title\n---\nmore\n", "---\nnever closed\n", "----\nx\n----\n", ""}) {
    const std::string out = quantized_model_card(card, "tiny", "ModelOpt FP8: language model only");
    EXPECT_EQ(out.rfind(kNoteStart, 0), 0u) << card;
    EXPECT_EQ(out.substr(out.size() - card.size()), card) << card;
  }
}

}  // namespace
