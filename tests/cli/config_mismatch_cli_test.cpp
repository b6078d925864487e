// A checkpoint whose config.json disagrees with its tensors (found by a fresh-user review, 2026-12-08): `vlq check`
// reports it invalid (exit 3, finding config_tensor_mismatch) for every target instead of "loads", `vlq convert`
// refuses it before writing anything, an unknown --for is a usage error naming --for before any work, and `vlq
// eval` warns when its reference is itself quantized.
#include "cli/cli_test_util.h"

namespace {

using namespace vlq::clitest;
const fs::path kRefExports = kRoot / "tests/data/ref_exports";

// The bundled model with config.json edited by `edit` (the other files linked).
fs::path edited_model(const fs::path& dst, const std::function<void(json&)>& edit) {
  link_model(dst, {"config.json"});
  json c = json::parse(read_file(kModel / "config.json"));
  edit(c);
  write_file(dst / "config.json", c.dump(2));
  return dst;
}

TEST(ConfigMismatchCli, CheckSaysInvalidAndConvertRefuses) {
  Scratch s("cfgmis");
  const fs::path layers = edited_model(s / "layers", [](json& c) { c["text_config"]["num_hidden_layers"] = 6; });
  const fs::path heads = edited_model(s / "heads", [](json& c) { c["text_config"]["num_attention_heads"] = -4; });
  for (const fs::path& m : {layers, heads}) {
    SCOPED_TRACE(m.string());
    for (const char* t : {"vlq", "vllm-0.10"}) {
      auto r = run_vlq("check " + q(m) + " --target " + t + " --json");
      EXPECT_EQ(r.rc, 3) << r.out << r.err;
      const json j = json::parse(r.out);
      EXPECT_EQ(j["verdict"], "invalid") << r.out;
      bool found = false;
      for (const auto& f : j["findings"]) found |= f["code"] == "config_tensor_mismatch";
      EXPECT_TRUE(found) << r.out;
    }
    auto c = run_vlq("convert " + q(m) + " " + q(s / "out") + " --for vllm-0.10");
    EXPECT_EQ(c.rc, 3) << c.err;
    EXPECT_TRUE(has(c.err, "does not build as its config.json describes it")) << c.err;
    EXPECT_FALSE(fs::exists(s / "out"));
  }
  // The untouched model still loads.
  auto ok = run_vlq("check " + q(kModel) + " --target vlq");
  EXPECT_LE(ok.rc, 1) << ok.out;
}

TEST(ConfigMismatchCli, UnknownForTargetIsAUsageErrorBeforeAnyWork) {
  Scratch s("cfgmis");
  auto q1 = run_vlq("quantize " + q(kModel) + " " + q(s / "out") + " --calib-text " + q(kCalib / "text.jsonl") +
                    " --samples 2 --seq-len 32 --for vllm-9");
  EXPECT_EQ(q1.rc, 64) << q1.err;
  EXPECT_TRUE(has(q1.err, "--for")) << q1.err;
  EXPECT_FALSE(has(q1.err, "--target")) << q1.err;
  EXPECT_FALSE(has(q1.err, "calibrating")) << q1.err;  // refused before calibration
  EXPECT_FALSE(fs::exists(s / "out"));
  auto c1 = run_vlq("convert " + q(kRefExports / "modelopt-vlm-fp8-kv") + " " + q(s / "out") + " --for vllm-9");
  EXPECT_EQ(c1.rc, 64) << c1.err;
  EXPECT_TRUE(has(c1.err, "--for")) << c1.err;
  EXPECT_FALSE(fs::exists(s / "out"));
}

TEST(ConfigMismatchCli, EvalWarnsWhenTheReferenceIsQuantized) {
  Scratch s("cfgmis");
  auto qz = run_vlq("quantize " + q(kModel) + " " + q(s / "fp8") + " --calib-text " + q(kCalib / "text.jsonl") +
                    " --samples 2 --seq-len 32 -q");
  ASSERT_EQ(qz.rc, 0) << qz.err;
  auto r = run_vlq("eval --reference " + q(s / "fp8") + " --model " + q(kModel) + " --tasks " + q(kRoot / "data/heldout/heldout.jsonl") + " --limit 2 --device cpu");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(has(r.err, "is quantized")) << r.err;
  auto plain = run_vlq("eval --reference " + q(kModel) + " --model " + q(s / "fp8") + " --tasks " + q(kRoot / "data/heldout/heldout.jsonl") + " --limit 2 --device cpu");
  EXPECT_EQ(plain.rc, 0) << plain.err;
  EXPECT_FALSE(has(plain.err, "is quantized")) << plain.err;
}

}  // namespace
