// CUDA device layer of vlq: a typed error for CUDA/cuBLASLt failures, the check macros that throw it, RAII
// device memory (DeviceBuffer), a bump arena for weights (DeviceArena), a stream wrapper (Stream) and the
// non-owning device tensor view (Tensor) that the kernels in include/vlq/cuda/*.h take.
//
// Conventions of every CUDA op in vlq: tensors are row-major and contiguous in their last dimension; shapes
// are written outermost first ([rows, cols]); element types are vlq::DType values F32, BF16 or F8_E4M3
// (E4M3 tensors hold float8_e4m3fn codes, scales are real units per E4M3 unit as in vlq/core/numerics.h);
// ops enqueue work on the given stream and never synchronize; shape/dtype mistakes throw vlq::UsageError
// before anything is launched, CUDA failures throw vlq::CudaError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "vlq/core/dtype.h"
#include "vlq/core/error.h"

namespace vlq {

// A CUDA runtime, driver-side kernel launch or cuBLASLt call failed. where = "file:line", what = the call
// as written, found = cudaGetErrorString / the cuBLAS status name.
class CudaError : public Error { using Error::Error; };

namespace cuda {

[[noreturn]] void throw_cuda_error(const char* call, const char* file, int line, cudaError_t err);
[[noreturn]] void throw_cublas_error(const char* call, const char* file, int line, int status);

// Number of CUDA devices (0 when there is no driver / no GPU; never throws).
int device_count() noexcept;
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB" for device `dev`.
std::string device_description(int dev = 0);
// An on/off A/B switch of the CUDA path read from the environment: unset → `fallback`; "0" → off; any other
// value → on (VLQ_CUDA_GRAPHS, VLQ_CUDA_FUSE_*, VLQ_FLASH_ASYNC, VLQ_DECODE_D128). Callers cache it.
bool env_switch(const char* name, bool fallback);
// A numeric A/B choice read from the environment: unset, or a value other than `alternative` → `fallback`;
// exactly `alternative` → it (VLQ_FLASH_ROWS=64, VLQ_VIT_FULL_ROWS=128). Callers cache it.
int env_choice(const char* name, int fallback, int alternative);

}  // namespace cuda
}  // namespace vlq

// Throws vlq::CudaError naming the call, file:line and cudaGetErrorString when `expr` is not cudaSuccess.
#define VLQ_CUDA_CHECK(expr)                                                                 \
  do {                                                                                       \
    const cudaError_t vlq_err_ = (expr);                                                     \
    if (vlq_err_ != cudaSuccess) ::vlq::cuda::throw_cuda_error(#expr, __FILE__, __LINE__, vlq_err_); \
  } while (0)
// After a kernel launch: checks the launch (cudaGetLastError), not its completion.
#define VLQ_CUDA_CHECK_LAUNCH(name) VLQ_CUDA_CHECK((static_cast<void>(name), cudaGetLastError()))
// Throws vlq::CudaError for a cublasStatus_t other than CUBLAS_STATUS_SUCCESS (0).
#define VLQ_CUBLAS_CHECK(expr)                                                                     \
  do {                                                                                             \
    const int vlq_st_ = static_cast<int>(expr);                                                    \
    if (vlq_st_ != 0) ::vlq::cuda::throw_cublas_error(#expr, __FILE__, __LINE__, vlq_st_);          \
  } while (0)

namespace vlq::cuda {

// Owning device allocation (cudaMalloc / cudaFree). Move-only. bytes() == 0 means empty (data() null).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const noexcept { return ptr_; }
  template <class T> T* as() const noexcept { return static_cast<T*>(ptr_); }
  std::size_t bytes() const noexcept { return bytes_; }
  // Synchronous host<->device copies of `n` bytes (n <= bytes(), else vlq::UsageError).
  void upload(const void* host, std::size_t n, std::size_t offset = 0);
  void download(void* host, std::size_t n, std::size_t offset = 0) const;
  // Fills every byte with `value` (tests poison outputs with 0xff: NaN in F32/BF16/E4M3).
  void fill_bytes(int value);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Owning page-locked host allocation (cudaMallocHost / cudaFreeHost), grown on demand: the staging buffer of
// host → device copies that must run at PCIe speed and asynchronously (a pageable source makes cudaMemcpyAsync
// copy through the driver's own bounce buffer and return only when it has been read). Move-only. The caller
// keeps the contents alive until the copies that read them have completed (stream sync).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  // At least `bytes` of pinned memory (earlier contents are lost when it grows). Throws vlq::CudaError.
  void* get(std::size_t bytes);
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Bump allocator over one cudaMalloc for weights: allocate() hands out 256-byte aligned slices, nothing is
// freed individually; the whole arena goes with the object. Throws vlq::UsageError when full (the message
// names capacity and request).
class DeviceArena {
 public:
  explicit DeviceArena(std::size_t capacity_bytes) : buf_(capacity_bytes) {}
  void* allocate(std::size_t bytes, std::size_t align = 256);
  // Allocates and uploads (synchronous) `bytes` from host.
  void* upload(const void* host, std::size_t bytes);
  std::size_t used() const noexcept { return used_; }
  std::size_t capacity() const noexcept { return buf_.bytes(); }

 private:
  DeviceBuffer buf_;
  std::size_t used_ = 0;
};

// Owning cudaStream_t (non-blocking). Move-only. get() for kernels; sync() waits and checks errors.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(Stream&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const noexcept { return s_; }
  void sync() const;

 private:
  cudaStream_t s_ = nullptr;
};

// Non-owning view of device memory: data pointer, dtype (F32, BF16, F8_E4M3, I32 used here), up to 4
// dimensions with element strides (row-major, last stride 1 for every op here). Row stride may exceed
// the row width (e.g. the q part of a fused qkv row).
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  int ndim = 0;
  std::int64_t shape[4] = {0, 0, 0, 0};
  std::int64_t stride[4] = {0, 0, 0, 0};

  // Contiguous row-major view of `dims` (1 to 4 dims).
  static Tensor contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> dims);
  // 2-D view [rows, cols] with row stride `row_stride` elements (>= cols).
  static Tensor strided2d(void* data, DType dtype, std::int64_t rows, std::int64_t cols, std::int64_t row_stride);
  std::int64_t numel() const noexcept;
  std::int64_t dim(int i) const noexcept { return shape[i]; }
  template <class T> T* as() const noexcept { return static_cast<T*>(data); }
  // "[4, 3584] BF16"
  std::string describe() const;
};

// Validation used by every op: throws vlq::UsageError naming `op`, the argument name, the expected
// dtype/rank and what was found. A dim of -1 in `dims` matches anything.
void expect_tensor(const char* op, const char* arg, const Tensor& t, std::initializer_list<DType> dtypes,
                   std::initializer_list<std::int64_t> dims);
// Throws vlq::UsageError(op, what, expected, found) — shorthand for op argument checks.
[[noreturn]] void usage_error(const char* op, const std::string& what, const std::string& expected,
                              const std::string& found);

}  // namespace vlq::cuda
