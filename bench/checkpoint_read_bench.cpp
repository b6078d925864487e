// Benchmark: reading every tensor byte of a (multi-GB) checkpoint through vlq's mmap reader, page cache
// warm or cold, and writing a 7B-shaped random checkpoint to benchmark on. Compare the figure with
// `cat shards > /dev/null` (bench/run_checkpoint_bench.sh does both and prints the ratio).
//   checkpoint_read_bench make OUT_DIR [--size 7b|3b|tiny] [--shard-gb G]
//   checkpoint_read_bench read DIR [--cold] [--repeat N]
//   checkpoint_read_bench evict DIR          (posix_fadvise DONTNEED on every shard: cold page cache)
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"

namespace fs = std::filesystem;
using vlq::DType;
using vlq::io::TensorSpec;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Qwen2.5-VL shapes (qwen2_5_vl.md §1.2, §3.1, §4.1), legacy naming.
struct Dims { int L, H, I, heads, kv, vocab, vdepth, vH, vI, vheads; bool tied; };
Dims dims_for(const std::string& size) {
  if (size == "7b") return {28, 3584, 18944, 28, 4, 152064, 32, 1280, 3420, 16, false};
  if (size == "3b") return {36, 2048, 11008, 16, 2, 151936, 32, 1280, 3420, 16, true};
  return {2, 64, 128, 4, 2, 1024, 2, 64, 128, 2, false};
}

std::vector<TensorSpec> qwen2_5_vl_specs(const Dims& d) {
  std::vector<TensorSpec> s;
  auto add = [&](std::string n, std::vector<int64_t> shape) { s.push_back({std::move(n), DType::BF16, std::move(shape)}); };
  const int64_t hd = d.H / d.heads;
  add("model.embed_tokens.weight", {d.vocab, d.H});
  for (int l = 0; l < d.L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {d.H});
    add(p + "post_attention_layernorm.weight", {d.H});
    add(p + "self_attn.q_proj.weight", {d.H, d.H});
    add(p + "self_attn.q_proj.bias", {d.H});
    add(p + "self_attn.k_proj.weight", {d.kv * hd, d.H});
    add(p + "self_attn.k_proj.bias", {d.kv * hd});
    add(p + "self_attn.v_proj.weight", {d.kv * hd, d.H});
    add(p + "self_attn.v_proj.bias", {d.kv * hd});
    add(p + "self_attn.o_proj.weight", {d.H, d.H});
    add(p + "mlp.gate_proj.weight", {d.I, d.H});
    add(p + "mlp.up_proj.weight", {d.I, d.H});
    add(p + "mlp.down_proj.weight", {d.H, d.I});
  }
  add("model.norm.weight", {d.H});
  if (!d.tied) add("lm_head.weight", {d.vocab, d.H});
  add("visual.patch_embed.proj.weight", {d.vH, 3, 2, 14, 14});
  for (int b = 0; b < d.vdepth; ++b) {
    std::string p = "visual.blocks." + std::to_string(b) + ".";
    add(p + "norm1.weight", {d.vH});
    add(p + "norm2.weight", {d.vH});
    add(p + "attn.qkv.weight", {3 * d.vH, d.vH});
    add(p + "attn.qkv.bias", {3 * d.vH});
    add(p + "attn.proj.weight", {d.vH, d.vH});
    add(p + "attn.proj.bias", {d.vH});
    for (const char* m : {"gate_proj", "up_proj"}) {
      add(p + "mlp." + m + ".weight", {d.vI, d.vH});
      add(p + "mlp." + m + ".bias", {d.vI});
    }
    add(p + "mlp.down_proj.weight", {d.vH, d.vI});
    add(p + "mlp.down_proj.bias", {d.vH});
  }
  add("visual.merger.ln_q.weight", {d.vH});
  add("visual.merger.mlp.0.weight", {4 * d.vH, 4 * d.vH});
  add("visual.merger.mlp.0.bias", {4 * d.vH});
  add("visual.merger.mlp.2.weight", {d.H, 4 * d.vH});
  add("visual.merger.mlp.2.bias", {d.H});
  return s;
}

// A flat (as released) Qwen2.5-VL config.json for the benchmark checkpoint (qwen2_5_vl.md §1.1-1.2).
std::string config_json(const Dims& d) {
  char buf[2048];
  std::snprintf(buf, sizeof buf,
      "{\"architectures\":[\"Qwen2_5_VLForConditionalGeneration\"],\"model_type\":\"qwen2_5_vl\","
      "\"hidden_act\":\"silu\",\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
      "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"vocab_size\":%d,\"rms_norm_eps\":1e-06,"
      "\"rope_theta\":1000000.0,\"rope_scaling\":{\"type\":\"mrope\",\"mrope_section\":[16,24,24]},"
      "\"max_position_embeddings\":128000,\"tie_word_embeddings\":%s,\"torch_dtype\":\"bfloat16\","
      "\"bos_token_id\":151643,\"eos_token_id\":151645,\"vision_start_token_id\":151652,"
      "\"vision_end_token_id\":151653,\"vision_token_id\":151654,\"image_token_id\":151655,"
      "\"video_token_id\":151656,\"vision_config\":{\"depth\":%d,\"hidden_size\":%d,\"num_heads\":%d,"
      "\"intermediate_size\":%d,\"out_hidden_size\":%d,\"in_chans\":3,\"patch_size\":14,"
      "\"spatial_merge_size\":2,\"temporal_patch_size\":2,\"window_size\":112,"
      "\"fullatt_block_indexes\":[7,15,23,31],\"tokens_per_second\":2,\"hidden_act\":\"silu\"}}\n",
      d.H, d.I, d.L, d.heads, d.kv, d.vocab, d.tied ? "true" : "false", d.vdepth, d.vH, d.vheads, d.vI, d.H);
  return buf;
}

int cmd_make(const fs::path& out, const std::string& size, double shard_gb) {
  auto specs = qwen2_5_vl_specs(dims_for(size));
  vlq::io::WriterOptions opts;
  opts.max_shard_bytes = static_cast<uint64_t>(shard_gb * 1e9);
  opts.metadata = {{"format", "pt"}};
  opts.fsync = false;
  double t0 = now_s();
  vlq::io::CheckpointWriter w(out, specs, opts);
  // A 64 MiB block of random bytes, reused with a rolling offset: random enough for a read benchmark.
  std::vector<std::byte> block(64u << 20);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= block.size(); i += 8) { uint64_t v = rng(); std::memcpy(&block[i], &v, 8); }
  size_t off = 0;
  for (const auto& t : specs) {
    uint64_t left = t.nbytes();
    while (left > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, block.size() / 2));
      w.append(t.name, std::span<const std::byte>(block.data() + off, n));
      off = (off + 4099) % (block.size() / 2);
      left -= n;
    }
  }
  w.write_file("config.json", config_json(dims_for(size)));
  w.commit();
  std::printf("wrote %s: %zu tensors, %.2f GB in %zu shards, %.1f s\n", out.c_str(), specs.size(),
              w.total_size() / 1e9, w.shards().size(), now_s() - t0);
  return 0;
}

void evict(const vlq::io::Checkpoint& ck) {
  for (const auto& p : ck.shard_paths()) {
    int fd = ::open(p.c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

int cmd_read(const fs::path& dir, bool cold, int repeat) {
  auto ck = vlq::io::Checkpoint::open(dir);
  uint64_t total = 0;
  for (const auto& n : ck.names()) total += ck.info(n).nbytes();
  for (int r = 0; r < repeat; ++r) {
    if (cold) evict(ck);
    // Sequential access + ask the kernel to start reading every shard now (asynchronous readahead), so
    // page faults overlap with I/O instead of waiting one fault-around window at a time.
    for (size_t i = 0; i < ck.shard_paths().size(); ++i) {
      ck.shard(i).advise_sequential();
      ck.shard(i).advise_willneed();
    }
    double t0 = now_s();
    uint64_t acc = 0;
    // Touch every byte of every tensor in file order (shard by shard, data offset order).
    for (size_t s = 0; s < ck.shard_headers().size(); ++s) {
      const auto& f = ck.shard(s);
      for (const auto& t : f.tensors()) {
        auto bytes = f.data(t);
        const uint64_t* p = reinterpret_cast<const uint64_t*>(bytes.data());
        size_t n8 = bytes.size() / 8;
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        size_t i = 0;
        for (; i + 4 <= n8; i += 4) { a0 ^= p[i]; a1 ^= p[i + 1]; a2 ^= p[i + 2]; a3 ^= p[i + 3]; }
        for (; i < n8; ++i) a0 ^= p[i];
        for (size_t b = n8 * 8; b < bytes.size(); ++b) a1 ^= static_cast<uint64_t>(bytes[b]);
        acc ^= a0 ^ a1 ^ a2 ^ a3;
      }
    }
    double dt = now_s() - t0;
    std::printf("read %s: %.3f GB in %.3f s = %.2f GB/s (%s, checksum %016llx)\n", dir.c_str(), total / 1e9, dt,
                total / 1e9 / dt, cold ? "cold" : "warm", static_cast<unsigned long long>(acc));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) {
      std::fprintf(stderr, "usage: %s make OUT [--size 7b|3b|tiny] [--shard-gb G] | read DIR [--cold] [--repeat N] | evict DIR\n", argv[0]);
      return 64;
    }
    std::string cmd = argv[1];
    fs::path path = argv[2];
    std::string size = "7b";
    double shard_gb = 4.0;
    bool cold = false;
    int repeat = 1;
    for (int i = 3; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--size" && i + 1 < argc) size = argv[++i];
      else if (a == "--shard-gb" && i + 1 < argc) shard_gb = std::stod(argv[++i]);
      else if (a == "--cold") cold = true;
      else if (a == "--repeat" && i + 1 < argc) repeat = std::stoi(argv[++i]);
    }
    if (cmd == "make") return cmd_make(path, size, shard_gb);
    if (cmd == "read") return cmd_read(path, cold, repeat);
    if (cmd == "evict") { evict(vlq::io::Checkpoint::open(path)); return 0; }
    std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 64;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
