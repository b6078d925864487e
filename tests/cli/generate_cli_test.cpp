// End-to-end tests of `vlq generate` on the bundled tiny trained model: a real answer, bad images, an
// over-long prompt, broken model folders (no tokenizer, missing + mis-shaped tensors), --messages errors,
// seeded sampling and the --dump file layout. Each error case checks the exit code and that the message
// names the file/tensor and says what was expected.
#include "cli/cli_test_util.h"

namespace {

using namespace vlq::clitest;

std::string gen(const std::string& extra) { return "generate --model " + q(kModel) + " " + extra; }

TEST(GenerateCli, AnswersOnARealImage) {
  auto r = run_vlq(gen("--image " + q(kColorImage) + " --prompt 'What color is the shape?' --max-new-tokens 8"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "blue\n");
  EXPECT_TRUE(has(r.err, "16 image tokens")) << r.err;
}

TEST(GenerateCli, MissingImageNamesThePath) {
  auto r = run_vlq(gen("--image /nonexistent/pic.png --prompt hi"));
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_TRUE(has(r.err, "/nonexistent/pic.png")) << r.err;
  EXPECT_TRUE(has(r.err, "not found")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(GenerateCli, CorruptAndUnsupportedImagesNameTheFile) {
  const std::map<std::string, std::string> cases = {
      {"bad_crc.png", "corrupt PNG"},          {"bad_truncated.png", "truncated PNG"},
      {"truncated.jpg", "truncated JPEG"},     {"bad_truncated_scan.jpg", "truncated JPEG"},
      {"bad_empty.png", "0 bytes"},            {"bad_format.gif", "found GIF"},
      {"bad_format.bmp", "found BMP"},         {"bad_format.tiff", "found TIFF"},
      {"bad_huge_dims.png", "too large"},      {"bad_animated.webp", "animated"}};
  for (const auto& [file, what] : cases) {
    auto r = run_vlq(gen("--image " + q(kImages / file) + " --prompt hi --max-new-tokens 2"));
    EXPECT_EQ(r.rc, 3) << file << ": " << r.err;
    EXPECT_TRUE(has(r.err, file)) << file << ": " << r.err;
    EXPECT_TRUE(has(r.err, what)) << file << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << file << ": " << r.out;
  }
}

// BUG (unclear message): the size/aspect errors come from the image processor and say "image 20x20"
// without the file name, so with several --image arguments the user cannot tell which one is wrong.
TEST(GenerateCli, TooSmallOrExtremeImageNamesTheFile) {
  for (const char* file : {"small_20x20.png", "extreme_6000x28.png"}) {
    auto r = run_vlq(gen("--image " + q(kImages / "tiny_28x28.png") + " --image " + q(kImages / file) +
                     " --prompt hi --max-new-tokens 2"));
    EXPECT_EQ(r.rc, 3) << r.err;
    EXPECT_TRUE(has(r.err, "expected")) << r.err;
    EXPECT_TRUE(has(r.err, "Hint:")) << r.err;
    EXPECT_TRUE(has(r.err, file)) << "the message does not say which image: " << r.err;
  }
}

TEST(GenerateCli, PromptLongerThanContextIsRefused) {
  std::string words;
  for (int i = 0; i < 5000; ++i) words += "word ";
  auto r = run_vlq(gen("--prompt " + q(words) + " --max-new-tokens 4"));
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "max_position_embeddings")) << r.err;
  EXPECT_TRUE(has(r.err, "2048")) << r.err;
  EXPECT_TRUE(has(r.err, "Hint:")) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(GenerateCli, ModelFolderWithoutTokenizer) {
  Scratch s("gen");
  const fs::path m = link_model(s / "m", {"tokenizer.json"});
  auto r = run_vlq("generate --model " + q(m) + " --prompt hi");
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_TRUE(has(r.err, "tokenizer.json")) << r.err;
  EXPECT_TRUE(has(r.err, m.filename().string())) << r.err;
  EXPECT_TRUE(has(r.err, "Hint:")) << r.err;
}

TEST(GenerateCli, ImageWithoutPreprocessorConfig) {
  Scratch s("gen");
  const fs::path m = link_model(s / "m", {"preprocessor_config.json"});
  auto r = run_vlq("generate --model " + q(m) + " --image " + q(kColorImage) + " --prompt hi");
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_TRUE(has(r.err, "preprocessor_config.json")) << r.err;
}

// All problems in one message: a deleted tensor and two mis-shaped ones (LM and vision).
// BUG: a mis-shaped q_proj.weight also makes its (correct) q_proj.bias reported as an "unexpected tensor
// that no part of Qwen2.5-VL uses" — a false finding that sends the user looking for the wrong problem.
TEST(GenerateCli, CheckpointProblemsAreListedAllAtOnce) {
  Scratch s("gen");
  const fs::path m = link_model(s / "m", {"model.safetensors"});
  const StFile f = read_st(kModel / "model.safetensors");
  ASSERT_TRUE(f.header.contains("model.layers.1.mlp.up_proj.weight"));
  write_st(m / "model.safetensors", f, {"model.layers.1.mlp.up_proj.weight"},
           {{"model.layers.0.self_attn.q_proj.weight", 255}, {"visual.blocks.0.attn.proj.bias", 10}});
  const auto before = fingerprint(m);
  auto r = run_vlq("generate --model " + q(m) + " --prompt hi");
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_TRUE(has(r.err, "layers.1.mlp.up_proj.weight: missing")) << r.err;
  EXPECT_TRUE(has(r.err, "model.layers.0.self_attn.q_proj.weight: expected [256, 256]")) << r.err;
  EXPECT_TRUE(has(r.err, "found [255, 256]")) << r.err;
  EXPECT_TRUE(has(r.err, "visual.blocks.0.attn.proj.bias: expected [128]")) << r.err;
  EXPECT_TRUE(has(r.err, "Hint:")) << r.err;
  EXPECT_FALSE(has(r.err, "q_proj.bias: unexpected tensor")) << "false finding: " << r.err;
  EXPECT_TRUE(has(r.err, "(3 problem(s))")) << r.err;
  EXPECT_EQ(fingerprint(m), before);
}

TEST(GenerateCli, MessagesFileErrors) {
  Scratch s("gen");
  const std::map<std::string, std::pair<std::string, std::string>> cases = {
      {"badjson.json", {"{\"messages\": [", "not valid JSON"}},
      {"role.json", {R"([{"role":"wizard","content":"hi"}])", "unknown role"}},
      {"b64.json",
       {R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,!!notbase64"}},{"type":"text","text":"hi"}]}])",
        "invalid base64"}},
      {"http.json",
       {R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://example.com/a.png"}},{"type":"text","text":"hi"}]}])",
        "not fetched"}},
      {"empty.json", {"[]", "empty message list"}},
  };
  for (const auto& [name, c] : cases) {
    write_file(s / name, c.first);
    auto r = run_vlq(gen("--messages " + q(s / name)));
    EXPECT_EQ(r.rc, 3) << name << ": " << r.err;
    EXPECT_TRUE(has(r.err, name)) << name << ": " << r.err;
    EXPECT_TRUE(has(r.err, c.second)) << name << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << name;
  }
  auto r = run_vlq(gen("--messages " + q(s / "nothere.json")));
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_TRUE(has(r.err, "nothere.json")) << r.err;
}

// A relative image path in --messages is resolved against the current directory (and the error says so).
TEST(GenerateCli, MessagesRelativeImagePathUsesCurrentDirectory) {
  Scratch s("gen");
  fs::copy_file(kColorImage, s / "shape.png");
  fs::create_directories(s / "elsewhere");
  write_file(s / "m.json",
             R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"shape.png"}},{"type":"text","text":"What color is the shape?"}]}])");
  auto ok = run_vlq(gen("--messages m.json --max-new-tokens 8"), s.dir);
  ASSERT_EQ(ok.rc, 0) << ok.err;
  EXPECT_EQ(ok.out, "blue\n");
  auto bad = run_vlq(gen("--messages ../m.json --max-new-tokens 8"), s / "elsewhere");
  EXPECT_EQ(bad.rc, 3) << bad.err;
  EXPECT_TRUE(has(bad.err, "shape.png")) << bad.err;
  EXPECT_TRUE(has(bad.err, (s / "elsewhere").string())) << bad.err;  // the hint names the directory used
}

// Image errors of a --messages file name the message part that referenced the image as well as the file.
TEST(GenerateCli, MessagesImageErrorsNameTheMessagePart) {
  Scratch s("gen");
  for (const auto& [file, what] : std::map<std::string, std::string>{{"bad_crc.png", "corrupt PNG"},
                                                                     {"small_20x20.png", "expected"}}) {
    write_file(s / "m.json", R"([{"role":"user","content":[{"type":"text","text":"Q"},{"type":"image","image":")" +
                                 (kImages / file).string() + R"("}]}])");
    auto r = run_vlq(gen("--messages " + q(s / "m.json") + " --max-new-tokens 2"));
    EXPECT_EQ(r.rc, 3) << file << ": " << r.err;
    EXPECT_TRUE(has(r.err, "messages[0].content[1]")) << file << ": " << r.err;
    EXPECT_TRUE(has(r.err, file)) << file << ": " << r.err;
    EXPECT_TRUE(has(r.err, what)) << file << ": " << r.err;
  }
}

TEST(GenerateCli, SeededSamplingIsReproducible) {
  const std::string args = "--image " + q(kColorImage) + " --prompt 'Describe the picture.' --temperature 0.7 --seed 1 "
                           "--max-new-tokens 24 -q";
  auto a = run_vlq(gen(args)), b = run_vlq(gen(args));
  ASSERT_EQ(a.rc, 0) << a.err;
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out);
}

TEST(GenerateCli, DumpHasTheDocumentedTensors) {
  Scratch s("gen");
  const fs::path d = s / "dump.safetensors";
  auto r = run_vlq(gen("--image " + q(kColorImage) + " --prompt 'What color is the shape?' --max-new-tokens 8 --dump " +
                   q(d) + " --dump-last 3"));
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(fs::exists(d));
  const StFile f = read_st(d);
  const json& h = f.header;
  for (const char* k : {"input_ids", "pixel_values", "image_grid_thw", "logits", "output_ids"})
    ASSERT_TRUE(h.contains(k)) << k << " missing: " << h.dump();
  EXPECT_EQ(h["input_ids"]["dtype"], "I64");
  EXPECT_EQ(h["input_ids"]["shape"], json::array({43}));  // the timing line says 43 prompt tokens
  EXPECT_TRUE(has(r.err, "43 prompt tokens")) << r.err;
  EXPECT_EQ(h["pixel_values"]["dtype"], "F32");
  EXPECT_EQ(h["pixel_values"]["shape"], json::array({64, 1176}));
  EXPECT_EQ(h["image_grid_thw"]["dtype"], "I64");
  EXPECT_EQ(h["image_grid_thw"]["shape"], json::array({1, 3}));
  EXPECT_EQ(h["logits"]["dtype"], "F32");
  EXPECT_EQ(h["logits"]["shape"], json::array({3, 2048}));
  EXPECT_EQ(h["output_ids"]["dtype"], "I64");
  EXPECT_EQ(h["output_ids"]["shape"], json::array({2}));  // "blue" + EOS
  EXPECT_TRUE(entries_starting(s.dir, "dump.safetensors.").empty()) << joined(entries_starting(s.dir, "dump.safetensors."));
}

// BUG (unclear message): an unwritable --dump path is only found after generating, and the message names
// the temporary file with neither expected value nor hint.
TEST(GenerateCli, UnwritableDumpPath) {
  Scratch s("gen");
  write_file(s / "afile", "x");
  const fs::path d = s / "afile" / "dump.safetensors";  // parent is a file
  auto r = run_vlq(gen("--prompt hi --max-new-tokens 2 --dump " + q(d)));
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_TRUE(has(r.err, d.string())) << r.err;
  EXPECT_TRUE(has(r.err, "Hint:")) << r.err;
}

// BUG (silently accepted): out-of-range sampling/dump options run with some other value instead of a
// usage error (exit 64).
TEST(GenerateCli, OutOfRangeOptionsAreUsageErrors) {
  Scratch s("gen");
  for (const std::string& bad : std::vector<std::string>{"--top-p 7", "--temperature -3", "--dump-last -5 --dump " + q(s / "d.safetensors")}) {
    auto r = run_vlq(gen("--prompt hi --max-new-tokens 2 -q " + bad));
    EXPECT_EQ(r.rc, 64) << bad << " was accepted: " << r.out << r.err;
  }
  auto r = run_vlq(gen("--prompt hi --kv-cache bogus"));
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "--kv-cache")) << r.err;
}

}  // namespace
