// Interoperability with Python `safetensors`: reads files written by Python (committed fixtures in
// tests/data/io/python, or $VLQ_READ_FIXTURE_DIR), and, when $VLQ_WRITE_FIXTURE_DIR is set, writes
// checkpoints with vlq's writer for tools/check_safetensors_python.py to load with Python.
// Manifest schema (both directions): {"checkpoints": {"<path>": {"metadata": {k: v},
//   "tensors": {name: {"dtype": "BF16", "shape": [..], "hex": "<bytes>"}}}}}
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/io_test_util.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"

using namespace vlq;
using namespace vlq::io;
using namespace vlq::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string hex(std::span<const std::byte> b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (auto x : b) {
    s += d[static_cast<unsigned>(x) >> 4];
    s += d[static_cast<unsigned>(x) & 15];
  }
  return s;
}

// Data for a fixture tensor: a byte pattern; BOOL gets 0/1 only.
std::string fixture_bytes(const TensorSpec& s, unsigned seed) {
  std::string b = pattern(s.nbytes(), seed);
  if (s.dtype == DType::BOOL)
    for (auto& c : b) c = static_cast<char>(c & 1);
  return b;
}

std::vector<TensorSpec> all_dtype_specs() {
  const DType all[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2,
                       DType::F8_E8M0, DType::I64, DType::I32, DType::I16, DType::I8, DType::U64,
                       DType::U32, DType::U16, DType::U8, DType::BOOL};
  std::vector<TensorSpec> v;
  for (DType t : all) v.push_back({"t." + std::string(dtype_name(t)), t, {2, 3}});
  v.push_back({"scalar.weight_scale", DType::F32, {}});
  v.push_back({"zero.rows", DType::BF16, {0, 4}});
  return v;
}

// Writes one checkpoint and returns its manifest entry.
json write_checkpoint(const fs::path& out, const std::vector<TensorSpec>& specs, WriterOptions opts) {
  json entry;
  entry["metadata"] = opts.metadata;
  entry["tensors"] = json::object();
  opts.overwrite = true;
  CheckpointWriter w(out, specs, opts);
  unsigned seed = 3;
  for (const auto& s : specs) {
    const std::string b = fixture_bytes(s, seed++);
    w.write(s.name, bytes_of(b));
    entry["tensors"][s.name] = {{"dtype", dtype_name(s.dtype)}, {"shape", s.shape}, {"hex", hex(bytes_of(b))}};
  }
  w.commit();
  return entry;
}

}  // namespace

TEST(PythonInterop, ReadsFilesWrittenByPythonSafetensors) {
  const char* env = std::getenv("VLQ_READ_FIXTURE_DIR");
  const fs::path dir = env && *env ? fs::path(env) : fs::path(VLQ_SOURCE_DIR) / "tests/data/io/python";
  std::ifstream in(dir / "manifest.json");
  ASSERT_TRUE(in) << "missing " << (dir / "manifest.json") << " (run tools/check_safetensors_python.py)";
  const json manifest = json::parse(in);
  ASSERT_FALSE(manifest.at("checkpoints").empty());
  for (const auto& [path, expect] : manifest.at("checkpoints").items()) {
    SCOPED_TRACE(path);
    auto c = Checkpoint::open(dir / path);
    ASSERT_EQ(c.names().size(), expect.at("tensors").size());
    for (const auto& [name, t] : expect.at("tensors").items()) {
      SCOPED_TRACE(name);
      const auto& info = c.info(name);
      EXPECT_EQ(dtype_name(info.dtype), t.at("dtype").get<std::string>());
      EXPECT_EQ(info.shape, t.at("shape").get<std::vector<std::int64_t>>());
      EXPECT_EQ(hex(c.data(name)), t.at("hex").get<std::string>());
    }
    for (const auto& [k, v] : expect.at("metadata").items())
      for (const auto& h : c.shard_headers()) EXPECT_EQ(h.metadata.at(k), v.get<std::string>());
  }
}

TEST(PythonInterop, WriteFixtureForPython) {
  const char* env = std::getenv("VLQ_WRITE_FIXTURE_DIR");
  if (!env || !*env) GTEST_SKIP() << "set VLQ_WRITE_FIXTURE_DIR (tools/check_safetensors_python.py does)";
  const fs::path dir(env);
  fs::create_directories(dir);
  json manifest;
  manifest["checkpoints"]["vlq_single"] =
      write_checkpoint(dir / "vlq_single", all_dtype_specs(), {.metadata = {{"format", "pt"}}});
  std::vector<TensorSpec> layers;
  for (int i = 0; i < 5; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".mlp.down_proj.";
    layers.push_back({p + "weight", DType::F8_E4M3, {16, 8}});
    layers.push_back({p + "weight_scale", DType::F32, {}});
    layers.push_back({p + "input_scale", DType::F32, {}});
  }
  layers.push_back({"lm_head.weight", DType::BF16, {16, 8}});
  manifest["checkpoints"]["vlq_sharded"] =
      write_checkpoint(dir / "vlq_sharded", layers, {.max_shard_bytes = 300, .metadata = {{"format", "pt"}}});
  std::ofstream(dir / "manifest.json") << manifest.dump(1) << "\n";
  SUCCEED() << "wrote " << dir;
}
