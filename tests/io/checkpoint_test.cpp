// Tests of sharded checkpoints: index parsing (shard-name traversal), index/shard consistency, folder
// layouts (single file, index, HF cache symlinks), lazy mapping.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "io/io_test_util.h"
#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"

using namespace vlq;
using namespace vlq::io;
using namespace vlq::testing;
namespace fs = std::filesystem;

namespace {

const std::string kIdx = "model.safetensors.index.json";

std::string index_json(const std::vector<std::pair<std::string, std::string>>& wm) {
  std::string s = R"({"metadata":{"total_size":123},"weight_map":{)";
  for (std::size_t i = 0; i < wm.size(); ++i)
    s += (i ? "," : "") + std::string("\"") + wm[i].first + "\":\"" + wm[i].second + "\"";
  return s + "}}";
}

// Two shards: s1 = {a, b}, s2 = {c}; index consistent.
void make_sharded(const fs::path& dir) {
  write_bytes(dir / "s1.safetensors", raw_file({{"a", "F32", {2}, 8}, {"b", "BF16", {3}, 6}}, 1));
  write_bytes(dir / "s2.safetensors", raw_file({{"c", "U8", {5}, 5}}, 7));
  write_bytes(dir / kIdx, index_json({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}}));
}

}  // namespace

// ---- index parsing ------------------------------------------------------------------------------

TEST(CheckpointIndex, ParsesWeightMapAndMetadata) {
  auto idx = parse_checkpoint_index(
      R"({"metadata":{"total_size":10,"format":"pt","nested":{"x":1}},"weight_map":{"a":"m1.safetensors","b":"m2.safetensors","c":"m1.safetensors"}})",
      "i.json");
  EXPECT_EQ(idx.weight_map.size(), 3u);
  EXPECT_EQ(idx.weight_map.at("b"), "m2.safetensors");
  EXPECT_EQ(idx.metadata.at("total_size"), "10");
  EXPECT_EQ(idx.metadata.at("format"), "pt");
  EXPECT_EQ(idx.metadata.at("nested"), R"({"x":1})");
  EXPECT_EQ(idx.shards(), (std::vector<std::string>{"m1.safetensors", "m2.safetensors"}));
  // metadata is optional; names like "a..b" are plain file names.
  auto idx2 = parse_checkpoint_index(R"({"weight_map":{"a":"x..y.safetensors"}})", "i.json");
  EXPECT_EQ(idx2.weight_map.at("a"), "x..y.safetensors");
}

TEST(CheckpointIndex, RejectsMalformedIndex) {
  VLQ_EXPECT_ERROR(parse_checkpoint_index("[]", "i.json"), FormatError, "i.json", "not a JSON object");
  VLQ_EXPECT_ERROR(parse_checkpoint_index("{", "i.json"), FormatError, "i.json", "not valid JSON");
  VLQ_EXPECT_ERROR(parse_checkpoint_index(R"({"metadata":{}})", "i.json"), FormatError, "no \"weight_map\"");
  VLQ_EXPECT_ERROR(parse_checkpoint_index(R"({"weight_map":[]})", "i.json"), FormatError, "not an object", "array");
  VLQ_EXPECT_ERROR(parse_checkpoint_index(R"({"weight_map":{"a":1}})", "i.json"), FormatError, "i.json: a",
                   "not a string", "integer 1");
  VLQ_EXPECT_ERROR(parse_checkpoint_index(R"({"metadata":5,"weight_map":{}})", "i.json"), FormatError,
                   "\"metadata\" is not an object");
  VLQ_EXPECT_ERROR(parse_checkpoint_index(R"({"weight_map":{"a":"x.safetensors","a":"y.safetensors"}})", "i.json"),
                   FormatError, "i.json: a: duplicate key 'a'", "under 'weight_map'");
}

TEST(CheckpointIndex, RejectsShardNamesThatAreNotPlainFileNames) {
  const std::pair<const char*, const char*> bad[] = {
      {"../x.safetensors", "path separator"}, {"/etc/passwd", "absolute path"},
      {"a/b.safetensors", "path separator"},  {"a\\\\b.safetensors", "path separator"},
      {"..", "directory reference"},          {".", "directory reference"},
      {"", "is empty"},                       {"x\\u0000.safetensors", "NUL"}};
  for (auto [name, why] : bad) {
    std::string j = std::string(R"({"weight_map":{"layer.w":")") + name + "\"}}";
    VLQ_EXPECT_ERROR(parse_checkpoint_index(j, "i.json"), FormatError, "i.json: layer.w", why,
                     "plain file name");
  }
}

// ---- opening checkpoints ------------------------------------------------------------------------

TEST(Checkpoint, OpensShardedFolder) {
  TempDir d;
  make_sharded(d.path());
  auto c = Checkpoint::open(d.path());
  EXPECT_TRUE(c.sharded());
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(c.shard_paths().size(), 2u);
  EXPECT_EQ(c.shard_paths()[0].filename(), "s1.safetensors");
  EXPECT_EQ(c.shard_path_of("c").filename(), "s2.safetensors");
  EXPECT_EQ(c.index_path().filename(), kIdx);
  EXPECT_EQ(c.index().metadata.at("total_size"), "123");
  EXPECT_EQ(c.info("b").dtype, DType::BF16);
  EXPECT_EQ(c.find("c").shard, 1u);
  EXPECT_EQ(c.find("zzz").info, nullptr);
  EXPECT_EQ(str_of(c.data("a")), pattern(8, 1));
  EXPECT_EQ(str_of(c.data("b")), pattern(6, 2));
  EXPECT_EQ(str_of(c.data("c")), pattern(5, 7));
  VLQ_EXPECT_ERROR(c.info("zzz"), FormatError, "zzz", "no such tensor");
  VLQ_EXPECT_ERROR(c.data("zzz"), FormatError, "zzz");
  // Opening the index file directly gives the same checkpoint.
  auto c2 = Checkpoint::open(d / kIdx);
  EXPECT_EQ(c2.names(), c.names());
  // Moved checkpoints keep working.
  Checkpoint c3 = std::move(c);
  EXPECT_EQ(str_of(c3.data("c")), pattern(5, 7));
}

TEST(Checkpoint, OpensSingleFileLayouts) {
  TempDir d;
  fs::create_directories(d / "m1");
  write_bytes(d / "m1" / "model.safetensors", raw_file({{"x", "F16", {2}, 4}}));
  write_bytes(d / "m1" / "other.safetensors", raw_file({{"y", "F16", {2}, 4}}));  // model.safetensors wins
  auto c = Checkpoint::open(d / "m1");
  EXPECT_FALSE(c.sharded());
  EXPECT_EQ(c.names(), std::vector<std::string>{"x"});

  fs::create_directories(d / "m2");
  write_bytes(d / "m2" / "weights.safetensors", raw_file({{"y", "U8", {3}, 3}}));
  EXPECT_EQ(Checkpoint::open(d / "m2").names(), std::vector<std::string>{"y"});

  auto f = Checkpoint::open(d / "m2" / "weights.safetensors");
  EXPECT_EQ(str_of(f.data("y")), pattern(3, 1));
  EXPECT_EQ(f.dir(), d / "m2");
}

TEST(Checkpoint, FolderErrors) {
  TempDir d;
  VLQ_EXPECT_ERROR(Checkpoint::open(d / "nope"), IoError, "nope", "not found");
  fs::create_directories(d / "empty");
  VLQ_EXPECT_ERROR(Checkpoint::open(d / "empty"), IoError, "no safetensors weights");
  fs::create_directories(d / "two");
  write_bytes(d / "two" / "a.safetensors", raw_file({{"x", "U8", {1}, 1}}));
  write_bytes(d / "two" / "b.safetensors", raw_file({{"y", "U8", {1}, 1}}));
  VLQ_EXPECT_ERROR(Checkpoint::open(d / "two"), UsageError, "several .safetensors files and no index");
  // A malformed shard header surfaces as the shard's FormatError.
  fs::create_directories(d / "bad");
  write_bytes(d / "bad" / "model.safetensors", le64(3) + "{}x");
  VLQ_EXPECT_ERROR(Checkpoint::open(d / "bad"), FormatError, "model.safetensors");
}

TEST(Checkpoint, IndexNamingMissingShard) {
  TempDir d;
  make_sharded(d.path());
  fs::remove(d / "s2.safetensors");
  VLQ_EXPECT_ERROR(Checkpoint::open(d.path()), IoError, kIdx, ": c", "missing shard", "s2.safetensors");
}

TEST(Checkpoint, TensorInIndexMissingFromShard) {
  TempDir d;
  make_sharded(d.path());
  write_bytes(d / kIdx, index_json({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"},
                                    {"ghost", "s2.safetensors"}}));
  VLQ_EXPECT_ERROR(Checkpoint::open(d.path()), FormatError, kIdx,
                   "ghost: listed in weight_map for s2.safetensors but missing from that shard");
}

TEST(Checkpoint, ShardTensorNotInIndex) {
  TempDir d;
  make_sharded(d.path());
  write_bytes(d / kIdx, index_json({{"a", "s1.safetensors"}, {"c", "s2.safetensors"}}));
  VLQ_EXPECT_ERROR(Checkpoint::open(d.path()), FormatError, "b: in shard s1.safetensors but not listed in weight_map");
}

TEST(Checkpoint, TensorInTwoShards) {
  TempDir d;
  make_sharded(d.path());
  write_bytes(d / "s2.safetensors", raw_file({{"c", "U8", {5}, 5}, {"a", "F32", {2}, 8}}, 7));
  VLQ_EXPECT_ERROR(Checkpoint::open(d.path()), FormatError,
                   "a: tensor is in two shards (s1.safetensors and s2.safetensors)");
  // weight_map pointing at the wrong shard.
  make_sharded(d.path());
  write_bytes(d / kIdx, index_json({{"a", "s2.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}}));
  VLQ_EXPECT_ERROR(Checkpoint::open(d.path()), FormatError, "a: listed in weight_map for s2.safetensors",
                   "(it is in s1.safetensors)");
}

TEST(Checkpoint, AllDisagreementsInOneError) {
  TempDir d;
  make_sharded(d.path());
  write_bytes(d / kIdx, index_json({{"c", "s2.safetensors"}, {"x", "s1.safetensors"}}));
  VLQ_EXPECT_ERROR(Checkpoint::open(d.path()), FormatError, "disagree in 3 places", "x: listed", "a: in shard",
                   "b: in shard");
}

TEST(Checkpoint, RejectsTraversalInIndexWhenOpening) {
  TempDir d;
  fs::create_directories(d / "ck");
  write_bytes(d / "outside.safetensors", raw_file({{"a", "U8", {1}, 1}}));
  for (const char* name : {"../outside.safetensors", "/etc/passwd", "sub/x.safetensors"}) {
    write_bytes(d / "ck" / kIdx, index_json({{"a", name}}));
    VLQ_EXPECT_ERROR(Checkpoint::open(d / "ck"), FormatError, kIdx, ": a", "plain file name");
  }
}

TEST(Checkpoint, RejectsSymlinkOutOfTheFolder) {
  TempDir d;
  fs::create_directories(d / "ck");
  write_bytes(d / "outside.safetensors", raw_file({{"a", "U8", {1}, 1}}));
  fs::create_symlink(d / "outside.safetensors", d / "ck" / "s1.safetensors");
  write_bytes(d / "ck" / kIdx, index_json({{"a", "s1.safetensors"}}));
  VLQ_EXPECT_ERROR(Checkpoint::open(d / "ck"), FormatError, ": a", "resolves outside the checkpoint folder",
                   "outside.safetensors");
  // Relative symlink escaping with ".." as well.
  fs::remove(d / "ck" / "s1.safetensors");
  fs::create_symlink("../outside.safetensors", d / "ck" / "s1.safetensors");
  VLQ_EXPECT_ERROR(Checkpoint::open(d / "ck"), FormatError, "resolves outside");
  // A dangling symlink is a missing/unresolvable shard.
  fs::remove(d / "ck" / "s1.safetensors");
  fs::create_symlink(d / "gone.safetensors", d / "ck" / "s1.safetensors");
  VLQ_EXPECT_ERROR(Checkpoint::open(d / "ck"), IoError, ": a");
}

TEST(Checkpoint, FollowsSymlinksInsideFolderAndIntoHfCacheBlobs) {
  TempDir d;
  fs::create_directories(d / "ck" / "store");
  write_bytes(d / "ck" / "store" / "real.safetensors", raw_file({{"a", "U8", {1}, 1}}));
  fs::create_symlink("store/real.safetensors", d / "ck" / "s1.safetensors");
  write_bytes(d / "ck" / kIdx, index_json({{"a", "s1.safetensors"}}));
  EXPECT_EQ(Checkpoint::open(d / "ck").names(), std::vector<std::string>{"a"});

  // Hugging Face hub cache: snapshots/REV/<file> -> ../../blobs/<sha>
  const fs::path repo = d / "hub" / "models--Qwen--Tiny";
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "snapshots" / "abc123");
  write_bytes(repo / "blobs" / "0123abcd", raw_file({{"a", "U8", {1}, 1}}));
  fs::create_symlink("../../blobs/0123abcd", repo / "snapshots" / "abc123" / "model-00001-of-00001.safetensors");
  write_bytes(repo / "snapshots" / "abc123" / kIdx, index_json({{"a", "model-00001-of-00001.safetensors"}}));
  auto c = Checkpoint::open(repo / "snapshots" / "abc123");
  EXPECT_EQ(str_of(c.data("a")), pattern(1, 1));
}

TEST(Checkpoint, DetectsShardChangedAfterOpen) {
  TempDir d;
  make_sharded(d.path());
  auto c = Checkpoint::open(d.path());
  write_bytes(d / "s2.safetensors", raw_file({{"c", "U8", {6}, 6}}, 7));
  VLQ_EXPECT_ERROR(c.data("c"), FormatError, "s2.safetensors", "changed since the checkpoint was opened");
}

TEST(Checkpoint, ConcurrentFirstAccessMapsEachShardOnce) {
  TempDir d;
  make_sharded(d.path());
  auto c = Checkpoint::open(d.path());
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i)
    ts.emplace_back([&] {
      if (str_of(c.data("a")) == pattern(8, 1) && str_of(c.data("c")) == pattern(5, 7)) ++ok;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(&c.shard(0), &c.shard(0));
}
