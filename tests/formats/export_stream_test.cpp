// Tests of formats/export_stream.h (plan → pre-check → stream → check → rename, shared by convert and
// quantize's export) on a real ModelOpt export: a plain copy reproduces every tensor, the checks see the
// planned and the written layout alike, the given files replace the input's, the others are copied unless skipped, and
// nothing is left when the stream is dropped before commit.
#include "vlq/formats/export_stream.h"

#include <gtest/gtest.h>

#include "io/io_test_util.h"
#include "vlq/formats/quant_layout.h"
#include "vlq/formats/runtime_profile.h"
#include "vlq/io/safetensors.h"

namespace {

namespace fs = std::filesystem;
namespace F = vlq::formats;
using vlq::testing::TempDir;
using vlq::testing::read_bytes;

const fs::path kIn = fs::path(VLQ_SOURCE_DIR) / "tests/data/ref_exports/modelopt047-lm-fp8-kv";

// A plan that copies every tensor of kIn into `out`, with the input's configs.
F::StreamPlan copy_plan(const F::CheckpointView& view, const fs::path& out) {
  F::StreamPlan p;
  p.input_dir = kIn;
  p.out = out;
  for (const auto& t : view.tensors()) p.tensors.push_back({{t.name, t.dtype, t.shape}, view.scalar(t.name)});
  p.config = view.config();
  p.hf_quant_config = view.hf_quant_config();
  p.files.emplace_back("config.json", view.config()->dump(2) + "\n");
  p.skip_files = {"provenance.json"};
  p.fsync = false;
  return p;
}

TEST(CheckpointStream, CopyReproducesTheCheckpointAndBothChecksAgree) {
  TempDir d;
  const F::CheckpointView view = F::CheckpointView::open(kIn);
  const vlq::io::Checkpoint& ck = *view.checkpoint();
  F::CheckpointStream s(copy_plan(view, d / "out"));
  const F::RuntimeProfile& vlq_profile = F::find_profile("vlq");
  const F::Report pre = s.check_planned(vlq_profile);
  const F::Report direct = F::check_checkpoint(kIn, "vlq");
  EXPECT_EQ(F::verdict_name(pre.verdict), F::verdict_name(direct.verdict));
  s.write([&](std::size_t i, vlq::io::CheckpointWriter& w) {
    const std::string& n = s.plan().tensors[i].spec.name;
    w.write(n, ck.data(n));
  });
  EXPECT_FALSE(fs::exists(d / "out"));  // not before commit
  const F::Report post = s.check_written(vlq_profile);
  EXPECT_EQ(F::verdict_name(post.verdict), F::verdict_name(direct.verdict));
  EXPECT_EQ(post.checkpoint, (d / "out").string());
  EXPECT_GT(s.commit(), 0u);
  const vlq::io::Checkpoint out = vlq::io::Checkpoint::open(d / "out");
  ASSERT_EQ(out.names(), ck.names());
  for (const auto& n : ck.names()) EXPECT_EQ(vlq::testing::str_of(out.data(n)), vlq::testing::str_of(ck.data(n))) << n;
  EXPECT_EQ(read_bytes(d / "out" / "config.json"), view.config()->dump(2) + "\n");
  EXPECT_FALSE(fs::exists(d / "out" / "provenance.json"));  // skip_files
  EXPECT_EQ(read_bytes(d / "out" / "hf_quant_config.json"), read_bytes(kIn / "hf_quant_config.json"));  // copied
  EXPECT_EQ(read_bytes(d / "out" / "generation_config.json"), read_bytes(kIn / "generation_config.json"));
}

TEST(CheckpointStream, DroppedBeforeCommitLeavesNothing) {
  TempDir d;
  const F::CheckpointView view = F::CheckpointView::open(kIn);
  {
    F::CheckpointStream s(copy_plan(view, d / "out"));
    EXPECT_THROW(s.write([&](std::size_t i, vlq::io::CheckpointWriter&) {
                   if (i == 2) throw vlq::UsageError({"test", "stop", "", "", ""});
                 }),
                 vlq::UsageError);
  }
  EXPECT_TRUE(fs::is_empty(d.path()));
}

TEST(CheckpointStream, PreCheckSeesPlannedScalarsAndShapes) {
  TempDir d;
  const F::CheckpointView view = F::CheckpointView::open(kIn);
  F::StreamPlan p = copy_plan(view, d / "out");
  // Drop one FP8 weight's weight_scale from the plan: the planned layout is invalid for vlq.
  for (auto it = p.tensors.begin(); it != p.tensors.end(); ++it)
    if (it->spec.name.ends_with(".weight_scale")) {
      p.tensors.erase(it);
      break;
    }
  F::CheckpointStream s(std::move(p));
  const F::Report pre = s.check_planned(F::find_profile("vlq"));
  EXPECT_TRUE(F::verdict_fails(pre.verdict)) << F::verdict_name(pre.verdict);
  EXPECT_FALSE(F::failure_summary(pre).empty());
  EXPECT_FALSE(fs::exists(d / "out"));
}

}  // namespace
