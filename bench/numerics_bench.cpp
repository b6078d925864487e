// Micro-benchmark of the bulk numeric conversions (vlq/core/numerics.h): BF16 -> f32 and per-tensor
// E4M3 quantization (f32 and BF16 input), against a plain scalar loop, at L1/L2-resident and
// memory-bound sizes. Results: docs/performance.md, "Numerics (CPU)".
//   build-*/numerics_bench [--benchmark_filter=...] [--benchmark_min_time=0.5]
#if __has_include(<benchmark/benchmark.h>)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "vlq/core/numerics.h"

namespace {

std::vector<uint16_t> random_bf16(std::size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 0.02f);  // weight-like values
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = vlq::f32_to_bf16(d(rng));
  return v;
}
std::vector<float> random_f32(std::size_t n) {
  std::mt19937 rng(2);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
constexpr float kScale = 0.1f / 448.0f;  // amax 0.1

// Bytes counted: input read + output written.
void BM_Bf16ToF32(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto in = random_bf16(n);
  std::vector<float> out(n);
  for (auto _ : st) {
    vlq::bf16_to_f32(in, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(n * 6));
}
void BM_Bf16ToF32_ScalarLoop(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto in = random_bf16(n);
  std::vector<float> out(n);
  for (auto _ : st) {
    for (std::size_t i = 0; i < n; ++i) {
      out[i] = vlq::bf16_to_f32(in[i]);
      benchmark::DoNotOptimize(out[i]);  // keeps the loop scalar
    }
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(n * 6));
}
void BM_QuantizeE4M3Sat_F32(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto in = random_f32(n);
  std::vector<uint8_t> out(n);
  for (auto _ : st) {
    vlq::quantize_e4m3_sat(in, kScale, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(n * 5));
}
void BM_QuantizeE4M3Sat_F32_ScalarLoop(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto in = random_f32(n);
  std::vector<uint8_t> out(n);
  for (auto _ : st) {
    for (std::size_t i = 0; i < n; ++i) {
      out[i] = vlq::f32_to_e4m3fn_sat(in[i] / kScale);
      benchmark::DoNotOptimize(out[i]);
    }
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(n * 5));
}
void BM_QuantizeE4M3Sat_Bf16(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto mode = st.range(1) ? vlq::Bf16Quotient::kBf16 : vlq::Bf16Quotient::kF32;
  auto in = random_bf16(n);
  std::vector<uint8_t> out(n);
  for (auto _ : st) {
    vlq::quantize_bf16_e4m3_sat(in, kScale, out, mode);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(n * 3));
}
void BM_F32ToE4M3Sat(benchmark::State& st) {  // encode only, no division
  const auto n = static_cast<std::size_t>(st.range(0));
  auto in = random_f32(n);
  for (auto& x : in) x /= kScale;
  std::vector<uint8_t> out(n);
  for (auto _ : st) {
    vlq::f32_to_e4m3fn_sat(in, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(n * 5));
}
void BM_DequantizeE4M3(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto f = random_f32(n);
  std::vector<uint8_t> q(n);
  vlq::quantize_e4m3_sat(f, kScale, q);
  std::vector<float> out(n);
  for (auto _ : st) {
    vlq::dequantize_e4m3(q, kScale, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(n * 5));
}

// 4K elements (L1), 256K (L2), 16M (memory-bound; a 4096x4096 weight).
BENCHMARK(BM_Bf16ToF32)->Arg(4 << 10)->Arg(256 << 10)->Arg(16 << 20);
BENCHMARK(BM_Bf16ToF32_ScalarLoop)->Arg(4 << 10)->Arg(256 << 10)->Arg(16 << 20);
BENCHMARK(BM_QuantizeE4M3Sat_F32)->Arg(4 << 10)->Arg(256 << 10)->Arg(16 << 20);
BENCHMARK(BM_QuantizeE4M3Sat_F32_ScalarLoop)->Arg(4 << 10)->Arg(256 << 10)->Arg(16 << 20);
BENCHMARK(BM_QuantizeE4M3Sat_Bf16)->Args({4 << 10, 0})->Args({16 << 20, 0})->Args({4 << 10, 1})->Args({16 << 20, 1});
BENCHMARK(BM_F32ToE4M3Sat)->Arg(4 << 10)->Arg(16 << 20);
BENCHMARK(BM_DequantizeE4M3)->Arg(4 << 10)->Arg(16 << 20);

}  // namespace

BENCHMARK_MAIN();
#else
#include <cstdio>
int main() {
  std::puts("numerics_bench: built without Google Benchmark (install libbenchmark-dev and reconfigure)");
  return 0;
}
#endif
