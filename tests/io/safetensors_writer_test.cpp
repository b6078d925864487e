// Tests of the streaming checkpoint writer: round trips (single and sharded) through the reader, header
// layout (reference order, padding, alignment, reference byte vectors), atomicity and cleanup, refusal
// of existing outputs, misuse errors, and write errors naming the file.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>

#include "io/io_test_util.h"
#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"

using namespace vlq;
using namespace vlq::io;
using namespace vlq::testing;
namespace fs = std::filesystem;

namespace {

WriterOptions fast(WriterOptions o = {}) {
  o.fsync = false;
  return o;
}

// Declared tensors of mixed dtypes and their pattern data.
std::vector<TensorSpec> mixed_specs() {
  return {{"model.layers.0.mlp.down_proj.weight", DType::F8_E4M3, {4, 8}},
          {"model.layers.0.mlp.down_proj.weight_scale", DType::F32, {}},
          {"model.embed_tokens.weight", DType::BF16, {6, 4}},
          {"model.layers.0.input_layernorm.weight", DType::BF16, {4}},
          {"positions", DType::I64, {3}},
          {"mask", DType::BOOL, {5}},
          {"empty", DType::F16, {0, 7}},
          {"lm_head.weight", DType::F64, {2, 2}}};
}

std::string data_for(const TensorSpec& s) { return pattern(s.nbytes(), static_cast<unsigned>(s.name.size())); }

// Names of the entries of a file header in file order (ordered_json keeps the order).
std::vector<std::string> header_keys(const fs::path& p, std::uint64_t* n_out = nullptr, std::string* raw = nullptr) {
  std::string b = read_bytes(p);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(b[i]);
  if (n_out) *n_out = n;
  if (raw) *raw = b.substr(8, n);
  auto j = nlohmann::ordered_json::parse(b.substr(8, n));
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  return keys;
}

std::vector<fs::path> leftovers(const fs::path& parent) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(parent)) {
    auto n = e.path().filename().string();
    if (n.find(".tmp-") != std::string::npos || n.find(".old-") != std::string::npos) v.push_back(e.path());
  }
  return v;
}

void write_all(CheckpointWriter& w) {
  for (const auto& s : w.tensors()) w.write(s.name, bytes_of(data_for(s)));
}

}  // namespace

TEST(SafetensorsWriter, SingleShardRoundTrip) {
  TempDir d;
  auto specs = mixed_specs();
  CheckpointWriter w(d / "out", specs, fast({.metadata = {{"format", "pt"}}}));
  ASSERT_EQ(w.shards().size(), 1u);
  EXPECT_EQ(w.shards()[0].file_name, "model.safetensors");
  EXPECT_TRUE(fs::is_directory(w.pending_dir()));
  EXPECT_FALSE(fs::exists(d / "out"));
  // Out of order, one tensor in three chunks.
  for (auto it = specs.rbegin(); it != specs.rend(); ++it) {
    const std::string data = data_for(*it);
    if (it->name == "model.embed_tokens.weight") {
      w.append(it->name, bytes_of(std::string_view(data).substr(0, 5)));
      EXPECT_EQ(w.remaining(it->name), data.size() - 5);
      w.append(it->name, bytes_of(std::string_view(data).substr(5, 20)));
      w.append(it->name, bytes_of(std::string_view(data).substr(25)));
      EXPECT_EQ(w.remaining(it->name), 0u);
    } else {
      w.write(it->name, bytes_of(data));
    }
  }
  w.commit();
  EXPECT_TRUE(w.committed());
  EXPECT_EQ(w.output_dir(), d / "out");
  EXPECT_TRUE(leftovers(d.path()).empty());
  EXPECT_FALSE(fs::exists(d / "out" / "model.safetensors.index.json"));

  auto c = Checkpoint::open(d / "out");
  EXPECT_FALSE(c.sharded());
  ASSERT_EQ(c.names().size(), specs.size());
  for (const auto& s : specs) {
    const auto& t = c.info(s.name);
    EXPECT_EQ(t.dtype, s.dtype) << s.name;
    EXPECT_EQ(t.shape, s.shape) << s.name;
    EXPECT_EQ(str_of(c.data(s.name)), data_for(s)) << s.name;
  }
  EXPECT_EQ(c.shard_headers()[0].metadata.at("format"), "pt");
}

TEST(SafetensorsWriter, HeaderInReferenceOrderPaddedAndAligned) {
  TempDir d;
  auto specs = mixed_specs();
  CheckpointWriter w(d / "out", specs, fast({.metadata = {{"format", "pt"}}}));
  write_all(w);
  w.commit();
  std::uint64_t n = 0;
  std::string raw;
  auto keys = header_keys(d / "out" / "model.safetensors", &n, &raw);
  // __metadata__ first, then dtype alignment descending (reference Dtype order), then name.
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "positions", "lm_head.weight",
                                            "model.layers.0.mlp.down_proj.weight_scale", "model.embed_tokens.weight",
                                            "model.layers.0.input_layernorm.weight", "empty",
                                            "model.layers.0.mlp.down_proj.weight", "mask"}));
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw.find('\n'), std::string::npos);  // compact JSON
  EXPECT_EQ(raw.substr(raw.find_last_not_of(' ') + 1), std::string(n - 1 - raw.find_last_not_of(' '), ' '));
  EXPECT_LT(n - 1 - raw.find_last_not_of(' '), 8u);
  auto f = SafetensorsFile::open(d / "out" / "model.safetensors");
  for (const auto& t : f.tensors())
    EXPECT_EQ((8 + f.header_size() + t.data_begin) % dtype_size(t.dtype), 0u) << t.name;
}

TEST(SafetensorsWriter, MatchesReferenceSerializerByteVectors) {
  // The byte strings of huggingface/safetensors tensor.rs tests `test_empty` and `test_serialization`.
  TempDir d;
  write_safetensors_file(d / "empty.safetensors", {});
  EXPECT_EQ(read_bytes(d / "empty.safetensors"), le64(8) + "{}      ");
  write_safetensors_file(d / "md.safetensors", {}, {{"framework", "pt"}});
  EXPECT_EQ(read_bytes(d / "md.safetensors"), le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
  const float v[6] = {0, 1, 2, 3, 4, 5};
  std::string data(reinterpret_cast<const char*>(v), sizeof v);
  write_safetensors_file(d / "one.safetensors", {{{"attn.0", DType::F32, {1, 2, 3}}, bytes_of(data)}});
  EXPECT_EQ(read_bytes(d / "one.safetensors"),
            le64(64) + R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})" + data);
  // Same bytes from the checkpoint writer.
  CheckpointWriter w(d / "ck", {{"attn.0", DType::F32, {1, 2, 3}}}, fast());
  w.write("attn.0", bytes_of(data));
  w.commit();
  EXPECT_EQ(read_bytes(d / "ck" / "model.safetensors"), read_bytes(d / "one.safetensors"));
}

TEST(SafetensorsWriter, ShardedRoundTripWithIndex) {
  TempDir d;
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 7; ++i) specs.push_back({"layers." + std::to_string(i) + ".w", DType::BF16, {10}});  // 20 B
  specs.push_back({"big", DType::F32, {30}});                                                             // 120 B
  specs.push_back({"tail", DType::U8, {3}});
  WriterOptions o = fast({.max_shard_bytes = 50, .metadata = {{"format", "pt"}}});
  auto plan = plan_shards(specs, o);
  CheckpointWriter w(d / "out", specs, o);
  ASSERT_EQ(w.shards().size(), plan.size());
  // Greedy in declared order: {0,1} {2,3} {4,5} {6} {big} {tail}
  ASSERT_EQ(plan.size(), 6u);
  EXPECT_EQ(plan[0].file_name, "model-00001-of-00006.safetensors");
  EXPECT_EQ(plan[5].file_name, "model-00006-of-00006.safetensors");
  EXPECT_EQ(plan[0].tensors, (std::vector<std::string>{"layers.0.w", "layers.1.w"}));
  EXPECT_EQ(plan[3].tensors, std::vector<std::string>{"layers.6.w"});
  EXPECT_EQ(plan[4].tensors, std::vector<std::string>{"big"});  // larger than the limit: its own shard
  EXPECT_EQ(plan[4].data_bytes, 120u);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(w.shards()[i].tensors, plan[i].tensors);
    EXPECT_EQ(w.shards()[i].header_bytes, plan[i].header_bytes);
    EXPECT_EQ(plan[i].header_bytes % 8, 0u);
  }
  EXPECT_EQ(w.total_size(), 7 * 20 + 120 + 3u);
  write_all(w);
  w.commit();

  auto c = Checkpoint::open(d / "out");
  EXPECT_TRUE(c.sharded());
  EXPECT_EQ(c.shard_paths().size(), 6u);
  EXPECT_EQ(c.index().metadata.at("total_size"), std::to_string(7 * 20 + 120 + 3));
  for (const auto& s : specs) EXPECT_EQ(str_of(c.data(s.name)), data_for(s)) << s.name;
  for (const auto& p : c.shard_paths())
    EXPECT_EQ(fs::file_size(p), w.shards()[&p - &c.shard_paths()[0]].file_bytes());
  for (const auto& h : c.shard_headers()) EXPECT_EQ(h.metadata.at("format"), "pt");
  // Index format as transformers writes it: indent 2, sorted keys, trailing newline.
  const std::string idx = read_bytes(d / "out" / "model.safetensors.index.json");
  EXPECT_EQ(idx.substr(0, 40), "{\n  \"metadata\": {\n    \"total_size\": 263\n");
  EXPECT_EQ(idx.back(), '\n');
  EXPECT_TRUE(leftovers(d.path()).empty());
}

TEST(SafetensorsWriter, NoTensorsAndNoLimitGiveOneFile) {
  TempDir d;
  CheckpointWriter w(d / "out", {}, fast());
  w.commit();
  EXPECT_TRUE(Checkpoint::open(d / "out").names().empty());
  EXPECT_EQ(plan_shards({{"a", DType::U8, {100}}}, {.max_shard_bytes = 10}).size(), 1u);
}

TEST(SafetensorsWriter, TempFolderRemovedWithoutCommit) {
  TempDir d;
  {
    CheckpointWriter w(d / "out", mixed_specs(), fast());
    w.write("mask", bytes_of(pattern(5)));
    EXPECT_FALSE(leftovers(d.path()).empty());
  }
  EXPECT_FALSE(fs::exists(d / "out"));
  EXPECT_TRUE(leftovers(d.path()).empty());
  // An exception while streaming: the same.
  try {
    CheckpointWriter w(d / "out", mixed_specs(), fast({.max_shard_bytes = 16}));
    w.write("mask", bytes_of(pattern(5)));
    throw std::runtime_error("quantization failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(d / "out"));
  EXPECT_TRUE(leftovers(d.path()).empty());
}

TEST(SafetensorsWriter, CommitWithMissingTensorsFailsAndCleansUp) {
  TempDir d;
  {
    CheckpointWriter w(d / "out", mixed_specs(), fast());
    w.write("mask", bytes_of(pattern(5)));
    w.append("positions", bytes_of(pattern(3)));
    VLQ_EXPECT_ERROR(w.commit(), UsageError, "6 tensors were not completely written", "positions (3 of 24 bytes)");
    EXPECT_FALSE(w.committed());
  }
  EXPECT_FALSE(fs::exists(d / "out"));
  EXPECT_TRUE(leftovers(d.path()).empty());
}

TEST(SafetensorsWriter, RefusesExistingOutputUnlessOverwrite) {
  TempDir d;
  fs::create_directories(d / "out");
  write_bytes(d / "out" / "old.txt", "old");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "out", mixed_specs(), fast()), UsageError, "out", "already exists");
  EXPECT_TRUE(fs::exists(d / "out" / "old.txt"));
  EXPECT_TRUE(leftovers(d.path()).empty());
  // Output created by someone else between construction and commit.
  {
    CheckpointWriter w(d / "out2", {{"a", DType::U8, {1}}}, fast());
    w.write("a", bytes_of("x"));
    fs::create_directories(d / "out2");
    VLQ_EXPECT_ERROR(w.commit(), UsageError, "appeared while writing");
  }
  EXPECT_TRUE(fs::is_empty(d / "out2"));
  // With overwrite: replaced, old files gone, no leftovers.
  CheckpointWriter w(d / "out", {{"a", DType::U8, {1}}}, fast({.overwrite = true}));
  w.write("a", bytes_of("x"));
  w.copy_file(d / "out" / "old.txt", "copied.txt");  // reading the old output before replacing it is fine
  w.commit();
  EXPECT_FALSE(fs::exists(d / "out" / "old.txt"));
  EXPECT_EQ(read_bytes(d / "out" / "copied.txt"), "old");
  EXPECT_EQ(str_of(Checkpoint::open(d / "out").data("a")), "x");
  EXPECT_TRUE(leftovers(d.path()).empty());
}

TEST(SafetensorsWriter, RefusesOutputThatIsOrContainsAnInput) {
  TempDir d;
  fs::create_directories(d / "in" / "sub");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "in", {}, fast({.overwrite = true, .inputs = {d / "in"}})), UsageError,
                   "is or contains an input");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "in", {}, fast({.overwrite = true, .inputs = {d / "in" / "sub"}})),
                   UsageError, "is or contains an input");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "in" / "." / "", {}, fast({.overwrite = true, .inputs = {d / "in"}})),
                   UsageError, "is or contains an input");
  // A sibling output is fine.
  CheckpointWriter w(d / "in-fp8", {}, fast({.inputs = {d / "in"}}));
  w.commit();
  EXPECT_TRUE(fs::exists(d / "in" / "sub"));
}

// The pre-flight guard of convert / quantize / the exporters: separate output, and no existing one unless
// overwrite.
TEST(SafetensorsWriter, RequireNewOutput) {
  TempDir d;
  fs::create_directories(d / "in" / "sub");
  VLQ_EXPECT_ERROR(require_new_output(d / "in", {d / "in"}, true), UsageError, "is or contains an input");
  VLQ_EXPECT_ERROR(require_new_output(d.path(), {d / "in"}, true), UsageError, "is or contains an input");
  VLQ_EXPECT_ERROR(require_new_output(d / "in" / "q", {d / "in"}, true), UsageError, "inside the input");
  fs::create_directories(d / "old");
  VLQ_EXPECT_ERROR(require_new_output(d / "old", {d / "in"}, false), UsageError, "already exists", "--force");
  EXPECT_NO_THROW(require_new_output(d / "old", {d / "in"}, true));
  EXPECT_NO_THROW(require_new_output(d / "new", {d / "in"}, false));
}

TEST(SafetensorsWriter, RequireWritableFile) {
  TempDir d;
  EXPECT_NO_THROW(require_writable_file(d / "x.json", "--json-out", "the evaluation"));
  VLQ_EXPECT_ERROR(require_writable_file(d / "missing" / "x.json", "--json-out", "the evaluation"), IoError,
                   "cannot write the --json-out file", "checked before the evaluation");
}

TEST(SafetensorsWriter, CopiesAndWritesOtherFiles) {
  TempDir d;
  write_bytes(d / "config.json", "{\"a\":1}");
  fs::create_symlink(d / "config.json", d / "link.json");
  CheckpointWriter w(d / "out", {{"a", DType::U8, {1}}}, fast());
  w.copy_file(d / "config.json");
  w.copy_file(d / "link.json", "tokenizer/linked.json");  // follows the symlink, creates the subfolder
  w.write_file("generation_config.json", "{}");
  VLQ_EXPECT_ERROR(w.copy_file(d / "config.json"), UsageError, "already added");
  VLQ_EXPECT_ERROR(w.write_file("model.safetensors", "x"), UsageError, "reserved");
  VLQ_EXPECT_ERROR(w.write_file("model.safetensors.index.json", "x"), UsageError, "reserved");
  VLQ_EXPECT_ERROR(w.write_file("../escape.txt", "x"), UsageError, "bad destination");
  VLQ_EXPECT_ERROR(w.write_file("/abs.txt", "x"), UsageError, "bad destination");
  VLQ_EXPECT_ERROR(w.copy_file(d / "missing.json"), IoError, "missing.json", "cannot copy");
  w.write("a", bytes_of("z"));
  w.commit();
  EXPECT_EQ(read_bytes(d / "out" / "config.json"), "{\"a\":1}");
  EXPECT_FALSE(fs::is_symlink(d / "out" / "tokenizer" / "linked.json"));
  EXPECT_EQ(read_bytes(d / "out" / "tokenizer" / "linked.json"), "{\"a\":1}");
  EXPECT_EQ(read_bytes(d / "out" / "generation_config.json"), "{}");
  EXPECT_FALSE(fs::exists(d / "escape.txt"));
  EXPECT_EQ(read_bytes(d / "config.json"), "{\"a\":1}");  // input untouched
}

TEST(SafetensorsWriter, RejectsBadDeclarationsAndMisuse) {
  TempDir d;
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "o", {{"a", DType::U8, {1}}, {"a", DType::U8, {2}}}, fast()), UsageError,
                   "declared twice");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "o", {{"", DType::U8, {1}}}, fast()), UsageError, "empty tensor name");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "o", {{"__metadata__", DType::U8, {1}}}, fast()), UsageError, "reserved");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "o", {{"a", DType::U8, {-1}}}, fast()), UsageError, "negative dimension");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "o", {{"a", DType::F32, {1ll << 62, 8}}}, fast()), UsageError, "overflows");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "o", {{"bad\xff", DType::U8, {1}}}, fast()), UsageError, "UTF-8");
  VLQ_EXPECT_ERROR(CheckpointWriter(d / "o", {}, fast({.metadata = {{"k", "\xc3"}}})), UsageError, "UTF-8");
  EXPECT_TRUE(leftovers(d.path()).empty());
  EXPECT_FALSE(fs::exists(d / "o"));

  CheckpointWriter w(d / "o", {{"a", DType::F32, {2}}}, fast());
  VLQ_EXPECT_ERROR(w.write("nope", bytes_of("12345678")), UsageError, "nope", "not declared");
  VLQ_EXPECT_ERROR(w.write("a", bytes_of("1234")), UsageError, "whole tensor", "8 bytes", "found 4 bytes");
  w.append("a", bytes_of("1234"));
  VLQ_EXPECT_ERROR(w.write("a", bytes_of("12345678")), UsageError, "4 written before");
  VLQ_EXPECT_ERROR(w.append("a", bytes_of("12345")), UsageError, "more bytes than declared", "8 bytes in total");
  w.append("a", bytes_of("5678"));
  w.commit();
  VLQ_EXPECT_ERROR(w.append("a", bytes_of("")), UsageError, "already committed");
  VLQ_EXPECT_ERROR(w.commit(), UsageError, "already committed");
  EXPECT_EQ(str_of(Checkpoint::open(d / "o").data("a")), "12345678");
}

TEST(SafetensorsWriter, DiskFullWhileStreamingIsIoErrorNamingTheFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  TempDir d;
  {
    CheckpointWriter w(d / "o", {{"a", DType::U8, {100}}}, fast({.preallocate = false}));
    // Swap the pending shard for /dev/full: every write fails with ENOSPC.
    const fs::path shard = w.pending_dir() / "model.safetensors";
    fs::remove(shard);
    fs::create_symlink("/dev/full", shard);
    VLQ_EXPECT_ERROR(w.write("a", bytes_of(pattern(100))), IoError, "model.safetensors", "write failed",
                     "No space left on device", "free disk space");
  }
  EXPECT_FALSE(fs::exists(d / "o"));
  EXPECT_TRUE(leftovers(d.path()).empty());
  EXPECT_TRUE(fs::exists("/dev/full"));
}

TEST(SafetensorsWriter, FileTooLargeAtConstructionIsIoError) {
  // A file-size limit (EFBIG) stands in for a disk without room for the preallocated shard.
  TempDir d;
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_sig = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  bool threw = false;
  try {
    CheckpointWriter w(d / "o", {{"a", DType::U8, {10000}}}, fast());
  } catch (const IoError& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_sig);
  EXPECT_TRUE(threw);
  EXPECT_TRUE(leftovers(d.path()).empty());
  EXPECT_FALSE(fs::exists(d / "o"));
}

TEST(SafetensorsWriter, WriteSafetensorsFileIsAtomicAndRefusesExisting) {
  TempDir d;
  const std::string b = pattern(12);
  write_safetensors_file(d / "t.safetensors", {{{"x", DType::I32, {3}}, bytes_of(b)}}, {{"k", "v"}});
  auto f = SafetensorsFile::open(d / "t.safetensors");
  EXPECT_EQ(str_of(f.data("x")), b);
  EXPECT_EQ(f.header().metadata.at("k"), "v");
  VLQ_EXPECT_ERROR(write_safetensors_file(d / "t.safetensors", {}), UsageError, "already exists");
  VLQ_EXPECT_ERROR(write_safetensors_file(d / "u.safetensors", {{{"x", DType::I32, {3}}, bytes_of("12")}}),
                   UsageError, "12 bytes", "2 bytes");
  write_safetensors_file(d / "t.safetensors", {}, {}, /*overwrite=*/true);
  EXPECT_TRUE(read_safetensors_header(d / "t.safetensors").tensors.empty());
  EXPECT_TRUE(leftovers(d.path()).empty());
}
