// Benchmark: reading every header of a Qwen2.5-VL-7B-sized sharded checkpoint (what `vlq inspect` does).
// Builds the checkpoint as sparse files (real header bytes, holes for the 16 GB of tensor data) in a
// temporary folder, then times read_safetensors_header over all shards and Checkpoint::open.
//   build/safetensors_header_bench [--fp8]     (--fp8 adds ModelOpt weight_scale/input_scale tensors)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"

namespace fs = std::filesystem;
using namespace vlq;
using namespace vlq::io;

namespace {

// Tensors of Qwen2.5-VL-7B (shapes of docs qwen2_5_vl.md §3.1/§4.1), BF16; with fp8, the Linear weights
// of the language model are F8_E4M3 with F32 scalar weight_scale and input_scale.
std::vector<TensorSpec> qwen25vl_7b(bool fp8) {
  std::vector<TensorSpec> v;
  const std::int64_t Hv = 1280, Iv = 3420, H = 3584, I = 18944, KV = 512, V = 152064;
  v.push_back({"visual.patch_embed.proj.weight", DType::BF16, {Hv, 3, 2, 14, 14}});
  for (int b = 0; b < 32; ++b) {
    const std::string p = fmt::format("visual.blocks.{}.", b);
    v.push_back({p + "norm1.weight", DType::BF16, {Hv}});
    v.push_back({p + "norm2.weight", DType::BF16, {Hv}});
    v.push_back({p + "attn.qkv.weight", DType::BF16, {3 * Hv, Hv}});
    v.push_back({p + "attn.qkv.bias", DType::BF16, {3 * Hv}});
    v.push_back({p + "attn.proj.weight", DType::BF16, {Hv, Hv}});
    v.push_back({p + "attn.proj.bias", DType::BF16, {Hv}});
    for (const char* m : {"gate_proj", "up_proj"}) {
      v.push_back({p + "mlp." + m + ".weight", DType::BF16, {Iv, Hv}});
      v.push_back({p + "mlp." + m + ".bias", DType::BF16, {Iv}});
    }
    v.push_back({p + "mlp.down_proj.weight", DType::BF16, {Hv, Iv}});
    v.push_back({p + "mlp.down_proj.bias", DType::BF16, {Hv}});
  }
  v.push_back({"visual.merger.ln_q.weight", DType::BF16, {Hv}});
  v.push_back({"visual.merger.mlp.0.weight", DType::BF16, {5120, 5120}});
  v.push_back({"visual.merger.mlp.0.bias", DType::BF16, {5120}});
  v.push_back({"visual.merger.mlp.2.weight", DType::BF16, {H, 5120}});
  v.push_back({"visual.merger.mlp.2.bias", DType::BF16, {H}});
  v.push_back({"model.embed_tokens.weight", DType::BF16, {V, H}});
  auto linear = [&](const std::string& name, std::int64_t out, std::int64_t in, bool bias) {
    v.push_back({name + ".weight", fp8 ? DType::F8_E4M3 : DType::BF16, {out, in}});
    if (bias) v.push_back({name + ".bias", DType::BF16, {out}});
    if (fp8) {
      v.push_back({name + ".weight_scale", DType::F32, {}});
      v.push_back({name + ".input_scale", DType::F32, {}});
    }
  };
  for (int l = 0; l < 28; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    v.push_back({p + "input_layernorm.weight", DType::BF16, {H}});
    v.push_back({p + "post_attention_layernorm.weight", DType::BF16, {H}});
    linear(p + "self_attn.q_proj", H, H, true);
    linear(p + "self_attn.k_proj", KV, H, true);
    linear(p + "self_attn.v_proj", KV, H, true);
    linear(p + "self_attn.o_proj", H, H, false);
    linear(p + "mlp.gate_proj", I, H, false);
    linear(p + "mlp.up_proj", I, H, false);
    linear(p + "mlp.down_proj", H, I, false);
  }
  v.push_back({"model.norm.weight", DType::BF16, {H}});
  v.push_back({"lm_head.weight", DType::BF16, {V, H}});
  return v;
}

// Writes the shards as sparse files: the header exactly as CheckpointWriter lays it out, then a hole.
void make_sparse_checkpoint(const fs::path& dir, const std::vector<TensorSpec>& specs, std::uint64_t max_shard) {
  WriterOptions o{.max_shard_bytes = max_shard, .metadata = {{"format", "pt"}}};
  auto plans = plan_shards(specs, o);
  std::map<std::string, const TensorSpec*> by_name;
  for (const auto& s : specs) by_name[s.name] = &s;
  fs::create_directories(dir);
  std::string index = "{\"metadata\":{\"total_size\":0},\"weight_map\":{";
  bool first_entry = true;
  for (const auto& p : plans) {
    std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
    std::uint64_t off = 0;
    for (const auto& n : p.tensors) {
      const TensorSpec& s = *by_name[n];
      h += fmt::format(",\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", n, dtype_name(s.dtype),
                       fmt::join(s.shape, ","), off, off + s.nbytes());
      off += s.nbytes();
      index += fmt::format("{}\"{}\":\"{}\"", first_entry ? "" : ",", n, p.file_name);
      first_entry = false;
    }
    h += "}";
    h.append((8 - h.size() % 8) % 8, ' ');
    const fs::path f = dir / p.file_name;
    int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::uint64_t n = h.size();
    if (fd < 0 || ::write(fd, &n, 8) != 8 || ::write(fd, h.data(), h.size()) != static_cast<ssize_t>(h.size()) ||
        ::ftruncate(fd, static_cast<off_t>(8 + n + off)) != 0) {
      std::perror(f.c_str());
      std::exit(1);
    }
    ::close(fd);
  }
  index += "}}";
  FILE* f = std::fopen((dir / "model.safetensors.index.json").c_str(), "w");
  std::fputs(index.c_str(), f);
  std::fclose(f);
}

template <class F>
double median_ms(F&& f, int reps) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const bool fp8 = argc > 1 && std::strcmp(argv[1], "--fp8") == 0;
  auto specs = qwen25vl_7b(fp8);
  char tmpl[] = "/tmp/vlq-header-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  const fs::path dir(tmpl);
  make_sparse_checkpoint(dir, specs, 4'000'000'000ull);

  std::size_t shards = 0, tensors = 0;
  std::uint64_t header_bytes = 0, data_bytes = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") {
      ++shards;
      auto h = read_safetensors_header(e.path());
      tensors += h.tensors.size();
      std::uint64_t d = 0;
      for (const auto& t : h.tensors) d += t.nbytes();
      data_bytes += d;
      header_bytes += fs::file_size(e.path()) - 8 - d;
    }

  const double t_headers = median_ms(
      [&] {
        for (const auto& e : fs::directory_iterator(dir))
          if (e.path().extension() == ".safetensors") (void)read_safetensors_header(e.path());
      },
      21);
  const double t_open = median_ms([&] { (void)Checkpoint::open(dir); }, 21);
  std::printf("Qwen2.5-VL-7B %s: %zu shards, %zu tensors, %.1f GB data, %.0f KB of headers\n", fp8 ? "FP8" : "BF16",
              shards, tensors, data_bytes / 1e9, header_bytes / 1e3);
  std::printf("read_safetensors_header, all shards: %.2f ms (median of 21, warm page cache)\n", t_headers);
  std::printf("Checkpoint::open (index + headers + cross-check): %.2f ms\n", t_open);
  fs::remove_all(dir);
  return 0;
}
