// vlq/ops/bulk_convert.h: the serial conversions of vlq/core/numerics.h run over kBulkChunk-element chunks by an
// OpenMP team (small tensors stay on the calling thread).
#include "vlq/ops/bulk_convert.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"

namespace vlq::ops {
namespace {

// f(begin, end) over [0, n) in chunks, in parallel when there are at least two chunks. f must not throw (the
// callers validate sizes first).
template <class F>
void for_chunks(std::size_t n, F&& f) {
  const std::int64_t chunks = static_cast<std::int64_t>((n + kBulkChunk - 1) / kBulkChunk);
  if (chunks < 2) {
    if (n) f(std::size_t{0}, n);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::size_t a = static_cast<std::size_t>(c) * kBulkChunk;
    f(a, std::min(n, a + kBulkChunk));
  }
}

void check_sizes(const char* op, std::size_t in, std::size_t out) {
  if (in != out)
    throw UsageError({op, "input and output element counts differ", std::to_string(in), std::to_string(out),
                      "this is a bug in the caller"});
}

}  // namespace

void decode_to_f32_parallel(DType dtype, std::span<const std::byte> bytes, std::span<float> out) {
  const std::size_t es = dtype_size(dtype);
  if (es == 0 || bytes.size() != out.size() * es)
    throw UsageError({"decode_to_f32_parallel", "byte count does not match the element count",
                      std::to_string(out.size() * es), std::to_string(bytes.size()), "this is a bug in the caller"});
  if (out.size() < 2 * kBulkChunk) {  // one call: also validates the dtype
    decode_to_f32(dtype, bytes, out);
    return;
  }
  decode_to_f32(dtype, bytes.first(es), out.first(1));  // validates the dtype (throws) before the team starts
  for_chunks(out.size(), [&](std::size_t a, std::size_t b) {
    decode_to_f32(dtype, bytes.subspan(a * es, (b - a) * es), out.subspan(a, b - a));
  });
}

template <class T>
std::vector<T> large_vector(std::size_t n) {
  std::vector<T> v;
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  static const bool thp = [] {  // VLQ_THP=0: plain 4 KiB pages (A/B)
    const char* e = std::getenv("VLQ_THP");
    return !(e && std::string(e) == "0");
  }();
  if (thp && n * sizeof(T) >= 4 * kHuge) {
    v.reserve(n);  // a fresh anonymous mapping for sizes this large (glibc malloc's mmap threshold): untouched
    const auto b = reinterpret_cast<std::uintptr_t>(v.data());
    const std::uintptr_t lo = (b + kHuge - 1) / kHuge * kHuge, hi = (b + n * sizeof(T)) / kHuge * kHuge;
    if (hi > lo) (void)::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice only: errors ignored
  }
  v.resize(n);
  return v;
}

template std::vector<float> large_vector<float>(std::size_t);
template std::vector<std::uint8_t> large_vector<std::uint8_t>(std::size_t);
template std::vector<std::uint16_t> large_vector<std::uint16_t>(std::size_t);

void f32_to_e4m3fn_parallel(std::span<const float> in, std::span<std::uint8_t> out) {
  check_sizes("f32_to_e4m3fn_parallel", in.size(), out.size());
  for_chunks(in.size(), [&](std::size_t a, std::size_t b) { f32_to_e4m3fn(in.subspan(a, b - a), out.subspan(a, b - a)); });
}

void f32_to_bf16_parallel(std::span<const float> in, std::span<std::uint16_t> out) {
  check_sizes("f32_to_bf16_parallel", in.size(), out.size());
  for_chunks(in.size(), [&](std::size_t a, std::size_t b) { f32_to_bf16(in.subspan(a, b - a), out.subspan(a, b - a)); });
}

}  // namespace vlq::ops
