// --device / --tensor-parallel / --image-backend of `vlq generate`, `vlq eval` and `vlq serve`: their help is the
// shared text (also in quantize); bad values are usage errors (64) naming the flag; --device cuda without a GPU is refused (3) with a hint to use
// --device cpu; --image-backend pil changes pixel_values (the dumped tensor) but not the command's success.
#include "cli/cli_test_util.h"
#include "vlq/engine/device_model.h"

namespace vlq::clitest {
namespace {

TEST(DeviceCli, BadValuesAreUsageErrors) {
  const std::string gen = "generate --model " + q(kModel) + " --prompt hi --max-new-tokens 2 ";
  const std::string ev = "eval --reference " + q(kModel) + " --model " + q(kModel) +
                         " --tasks data/heldout/heldout.jsonl --limit 2 ";
  struct Case {
    std::string args, msg;
  };
  for (const Case& c : std::vector<Case>{
           {gen + "--device tpu", "unknown device"},
           {gen + "--image-backend bicubic", "unknown image resize backend"},
           {gen + "--device cpu --tensor-parallel 2", "tensor parallelism needs --device cuda"},
           {gen + "--device cpu --tensor-parallel 0", "--tensor-parallel"},
           {ev + "--device tpu", "unknown device"},
           {ev + "--image-backend x", "--image-backend"},
           {"serve --model " + q(kModel) + " --device cpu --tensor-parallel 2", "tensor parallelism needs --device cuda"},
       }) {
    const RunResult r = run_vlq(c.args);
    EXPECT_EQ(r.rc, 64) << c.args << "\n" << r.all();
    EXPECT_TRUE(has(r.err, c.msg)) << c.args << "\n" << r.err;
  }
}

// Every command's --device and --image-backend help is the one text of cli/common_options (quantize and serve
// only add what runs there before it, quantize what each choice means after it).
TEST(DeviceCli, HelpTextsAreTheSharedDeclaration) {
  const std::string device = "cpu, cuda, or auto (cuda when a GPU is present; default)";
  const std::string backend = "torchvision (default: what transformers' AutoProcessor uses) or pil (Qwen2VLImageProcessorPil)";
  auto line_of = [](const std::string& help, const std::string& flag) {
    std::istringstream in(help);
    for (std::string l; std::getline(in, l);)
      if (l.find("  " + flag + " ") != std::string::npos) return l;
    return std::string();
  };
  for (const char* cmd : {"generate", "eval", "serve", "quantize"}) {
    const RunResult r = run_vlq(std::string(cmd) + " --help");
    ASSERT_EQ(r.rc, 0) << cmd << ": " << r.err;
    EXPECT_TRUE(has(line_of(r.out, "--device"), device)) << cmd << ":\n" << r.out;
    EXPECT_TRUE(has(line_of(r.out, "--image-backend"), backend)) << cmd << ":\n" << r.out;
  }
  const std::string q = run_vlq("quantize --help").out;
  EXPECT_TRUE(has(line_of(q, "--device"), "Where calibration runs: " + device + "; cpu is the exact reference runtime, cuda "
                                          "calibrates layer-sequentially on the GPU")) << q;
  EXPECT_TRUE(has(line_of(q, "--image-backend"), "Image preprocessing of calibration images: " + backend)) << q;
  EXPECT_TRUE(has(line_of(run_vlq("serve --help").out, "--device"), "Runtime: " + device));
}

TEST(DeviceCli, CudaWithoutGpuIsRefusedWithAHint) {
  if (engine::cuda_device_available()) GTEST_SKIP() << "a CUDA device is present";
  const RunResult r = run_vlq("generate --model " + q(kModel) + " --prompt hi --max-new-tokens 2 --device cuda");
  EXPECT_EQ(r.rc, 3) << r.all();
  EXPECT_TRUE(has(r.err, "--device cpu")) << r.err;
  // eval refuses it the same way, before loading any model
  const RunResult e = run_vlq("eval --reference " + q(kModel) + " --model " + q(kModel) + " --tasks " +
                              q((kRoot / "data/heldout/heldout.jsonl").string()) + " --limit 1 --device cuda");
  EXPECT_EQ(e.rc, 3) << e.all();
  // "no CUDA device is visible" in a CUDA build, "built without the CUDA runtime" in one without nvcc
  EXPECT_TRUE(has(e.err, "no CUDA device is visible") || has(e.err, "built without the CUDA runtime")) << e.err;
  EXPECT_FALSE(has(e.err, "loading")) << e.err;
}

TEST(DeviceCli, AutoRunsOnTheCpuWithoutGpuAndBothImageBackendsWork) {
  if (engine::cuda_device_available()) GTEST_SKIP() << "a CUDA device is present (auto picks cuda)";
  for (const std::string backend : {"torchvision", "pil"}) {
    const RunResult r = run_vlq("generate --model " + q(kModel) + " --image " +
                                q((kRoot / "data/heldout/images/color-0003.png").string()) +
                                " --prompt 'What color is the shape?' --max-new-tokens 4 --image-backend " + backend);
    EXPECT_EQ(r.rc, 0) << r.all();
    EXPECT_TRUE(has(r.err, "device cpu")) << r.err;
  }
}

}  // namespace
}  // namespace vlq::clitest
