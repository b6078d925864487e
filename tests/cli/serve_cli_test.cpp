// `vlq serve` end to end through the built binary: bad flags and inputs give their message and exit code
// before anything listens; a real start on a free loopback port answers /health, prints its listening
// line, and SIGTERM drains and exits 0.
#include <httplib.h>

#include "../../bench/serve_common.h"
#include "cli/cli_test_util.h"
#include "vlq/engine/device_model.h"

namespace vlq::clitest {
namespace {

TEST(ServeCli, RefusesBadFlagsBeforeLoading) {
  struct Case {
    std::string args;
    int rc;
    std::string msg;
  };
  const std::string m = "--model " + q(kModel) + " ";
  for (const Case& c : std::vector<Case>{
           {m + "--device tpu", 64, "unknown device"},
           {m + "--port 70000", 64, "--port"},
           {m + "--max-num-seqs 0", 64, "--max-num-seqs"},
           {m + "--max-model-len 1", 64, "--max-model-len"},
           {m + "--max-model-len 999999", 64, "longer than the model's context"},
           {m + "--kv-cache bogus", 64, "--kv-cache"},
           {m + "--allowed-media-dir /no/such/dir", 3, "--allowed-media-dir is not a folder"},
           {m + "--max-body-mb 0", 64, "--max-body-mb"},
           {m + "--max-body-mb 5000", 64, "1..4096"},  // 4x the limit must not wrap (the early-413 cap)
           {"--model /no/such/model", 3, "/no/such/model"},
       }) {
    const RunResult r = run_vlq("serve " + c.args);
    EXPECT_EQ(r.rc, c.rc) << c.args << "\n" << r.all();
    EXPECT_TRUE(has(r.err, c.msg)) << c.args << "\n" << r.err;
  }
}

// Without a GPU (CI), --device cuda is refused with exit 3: "no CUDA device" in a CUDA build, "built
// without the CUDA runtime" otherwise; both name CUDA and suggest --device cpu.
TEST(ServeCli, DeviceCudaWithoutGpuIsRefused) {
  if (engine::cuda_device_available()) GTEST_SKIP() << "a CUDA device is present (the server would start)";
  const RunResult r = run_vlq("serve --model " + q(kModel) + " --device cuda --port 0");
  EXPECT_EQ(r.rc, 3) << r.all();
  EXPECT_TRUE(has(r.err, "CUDA")) << r.err;
  EXPECT_TRUE(has(r.err, "--device cpu")) << r.err;
}

TEST(ServeCli, StartsAnswersHealthAndDrainsOnSigterm) {
  Scratch s("serve");
  bench::ServeProcess p = bench::ServeProcess::start(VLQ_BINARY, {"--model", kModel.string(), "--served-model-name", "t"},
                                                     (s / "serve.log").string());
  httplib::Client c("127.0.0.1", p.port);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_TRUE(has(m->body, "\"id\":\"t\""));
  EXPECT_EQ(p.terminate(), 0);
  const std::string log = read_file(s / "serve.log");
  EXPECT_TRUE(has(log, "serving 't' on http://127.0.0.1:")) << log;
  EXPECT_TRUE(has(log, "SIGTERM: draining in-flight requests")) << log;
  EXPECT_TRUE(has(log, "[vlq] stopped")) << log;
}

}  // namespace
}  // namespace vlq::clitest
