// CUDA kernel benchmarks at Qwen2.5-VL-7B shapes: (a) D2D copy bandwidth (the memory ceiling, bytes read +
// written); (b) the decode GEMV (M = 1 and 8) over FP8 and BF16 weights for qkv / o / gate_up / down, weight
// buffers rotated (>= 512 MB per shape) so L2 cannot help, calls captured in a CUDA graph; (c) cuBLASLt FP8
// GEMM TFLOP/s at prefill shapes (M = 8192) vs an 8192³ FP8 GEMM (the matrix ceiling) in the same run.
// Usage: cuda_kernels_bench [--quick]. Prints a table last.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vlq/cuda/gemm.h"
#include "vlq/cuda/gemv.h"

using namespace vlq;
using namespace vlq::cuda;
using namespace vlq::cuda::bench;

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (device_count() == 0) {
    std::printf("no CUDA device: benchmark skipped\n");
    return 0;
  }
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::printf("device: %s\n", device_description().c_str());
  Stream st;
  const cudaStream_t s = st.get();
  const double copy_gbs = copy_bandwidth_gbs(s);
  std::printf("copy D2D: %.0f GB/s (read+write)\n", copy_gbs);

  struct Shape { const char* name; int n, k; };
  const Shape shapes[] = {{"qkv", 4608, 3584}, {"o", 3584, 3584}, {"gate_up", 37888, 3584}, {"down", 3584, 18944}};
  std::vector<std::string> table;
  char line[256];
  for (DType wt : {DType::F8_E4M3, DType::BF16}) {
    for (int m : {1, 8}) {
      for (const auto& sh : shapes) {
        const std::size_t eb = dtype_size(wt), wbytes = static_cast<std::size_t>(sh.n) * sh.k * eb;
        if (static_cast<std::size_t>(m) * sh.k * eb > 200 * 1024) {
          std::snprintf(line, sizeof line, "gemv %-4s M=%d %-8s %6dx%-6d n/a (x exceeds shared memory: cuBLASLt path)",
                        wt == DType::F8_E4M3 ? "FP8" : "BF16", m, sh.name, sh.n, sh.k);
          table.push_back(line);
          continue;
        }
        const int copies = static_cast<int>(std::max<std::size_t>(2, (std::size_t{512} << 20) / wbytes + 1));
        DeviceBuffer w(wbytes * copies), x(static_cast<std::size_t>(m) * sh.k * eb), y(static_cast<std::size_t>(m) * sh.n * 4);
        fill_random(w.data(), w.bytes(), wt, 1);
        fill_random(x.data(), x.bytes(), wt, 2);
        const Tensor tx = Tensor::contiguous(x.data(), wt, {m, sh.k});
        const Tensor ty = Tensor::contiguous(y.data(), DType::F32, {m, sh.n});
        auto run_all = [&] {
          for (int c = 0; c < copies; ++c)
            gemv(tx, Tensor::contiguous(w.as<std::uint8_t>() + wbytes * c, wt, {sh.n, sh.k}), 0.01f, nullptr, ty, s);
        };
        run_all();  // sets smem attributes outside capture
        VLQ_CUDA_CHECK(cudaStreamSynchronize(s));
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        VLQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
        run_all();
        VLQ_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
        VLQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        const double ms = time_ms(s, 3, quick ? 5 : 20, [&] { VLQ_CUDA_CHECK(cudaGraphLaunch(exec, s)); }) / copies;
        const double gbs = static_cast<double>(wbytes) / (ms * 1e-3) / 1e9;
        std::snprintf(line, sizeof line, "gemv %-4s M=%d %-8s %6dx%-6d %8.2f us %7.0f GB/s %5.1f %% of copy",
                      wt == DType::F8_E4M3 ? "FP8" : "BF16", m, sh.name, sh.n, sh.k, ms * 1e3, gbs, 100 * gbs / copy_gbs);
        std::printf("%s\n", line);
        table.push_back(line);
        VLQ_CUDA_CHECK(cudaGraphExecDestroy(exec));
        VLQ_CUDA_CHECK(cudaGraphDestroy(graph));
      }
    }
  }
  // FP8 GEMM through cuBLASLt
  GemmContext ctx;
  auto gemm_tflops = [&](int m, int n, int k) {
    DeviceBuffer x(static_cast<std::size_t>(m) * k), w(static_cast<std::size_t>(n) * k), y(static_cast<std::size_t>(m) * n * 2);
    fill_random(x.data(), x.bytes(), DType::F8_E4M3, 3);
    fill_random(w.data(), w.bytes(), DType::F8_E4M3, 4);
    std::vector<float> sc(128, 0.01f);
    DeviceBuffer dsc(512);
    dsc.upload(sc.data(), 512);
    const Tensor tx = Tensor::contiguous(x.data(), DType::F8_E4M3, {m, k});
    const Tensor tw = Tensor::contiguous(w.data(), DType::F8_E4M3, {n, k});
    const Tensor ty = Tensor::contiguous(y.data(), DType::BF16, {m, n});
    const double ms = time_ms(s, 5, quick ? 5 : 20,
                              [&] { gemm_fp8(ctx, tx, tw, dsc.as<float>(), dsc.as<float>() + 64, nullptr, ty, s); });
    return 2.0 * m * n * k / (ms * 1e-3) / 1e12;
  };
  double peak = 0;
  try {
    peak = gemm_tflops(8192, 8192, 8192);
  } catch (const std::exception& e) {
    std::printf("FP8 GEMM failed: %s\n", e.what());
    for (auto& l : table) std::printf("%s\n", l.c_str());
    return 1;
  }
  std::snprintf(line, sizeof line, "gemm FP8 8192x8192x8192 (ceiling)      %7.0f TFLOP/s", peak);
  std::printf("%s\n", line);
  table.push_back(line);
  for (const auto& sh : shapes) {
    const double t = gemm_tflops(8192, sh.n, sh.k);
    std::snprintf(line, sizeof line, "gemm FP8 M=8192 %-8s %6dx%-6d %7.0f TFLOP/s %5.1f %% of 8192^3", sh.name, sh.n, sh.k, t,
                  100 * t / peak);
    std::printf("%s\n", line);
    table.push_back(line);
  }
  std::printf("\n==== summary (%s; copy %.0f GB/s) ====\n", device_description().c_str(), copy_gbs);
  for (auto& l : table) std::printf("%s\n", l.c_str());
  return 0;
}
