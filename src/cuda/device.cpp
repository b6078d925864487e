// vlq/cuda/device.h: CUDA errors, device buffers, arena, stream, tensor views.
#include "vlq/cuda/device.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "vlq/core/error.h"

namespace vlq::cuda {

void throw_cuda_error(const char* call, const char* file, int line, cudaError_t err) {
  throw CudaError({std::string(file) + ":" + std::to_string(line), std::string("CUDA call failed: ") + call, "cudaSuccess",
                   std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err),
                   "check the device (nvidia-smi), free memory, and run under compute-sanitizer for launch errors"});
}

void throw_cublas_error(const char* call, const char* file, int line, int status) {
  const char* name = "unknown cublasStatus_t";
  switch (status) {
    case 1: name = "CUBLAS_STATUS_NOT_INITIALIZED"; break;
    case 3: name = "CUBLAS_STATUS_ALLOC_FAILED"; break;
    case 7: name = "CUBLAS_STATUS_INVALID_VALUE"; break;
    case 8: name = "CUBLAS_STATUS_ARCH_MISMATCH"; break;
    case 11: name = "CUBLAS_STATUS_MAPPING_ERROR"; break;
    case 13: name = "CUBLAS_STATUS_EXECUTION_FAILED"; break;
    case 14: name = "CUBLAS_STATUS_INTERNAL_ERROR"; break;
    case 15: name = "CUBLAS_STATUS_NOT_SUPPORTED"; break;
    case 16: name = "CUBLAS_STATUS_LICENSE_ERROR"; break;
  }
  throw CudaError({std::string(file) + ":" + std::to_string(line), std::string("cuBLASLt call failed: ") + call,
                   "CUBLAS_STATUS_SUCCESS", std::string(name) + " (" + std::to_string(status) + ")",
                   "FP8 GEMMs need K % 16 == 0, 16-byte aligned pointers and an sm_89+ GPU"});
}

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

bool env_switch(const char* name, bool fallback) {
  const char* e = std::getenv(name);
  return e ? std::string(e) != "0" : fallback;
}

int env_choice(const char* name, int fallback, int alternative) {
  const char* e = std::getenv(name);
  return e && std::string(e) == std::to_string(alternative) ? alternative : fallback;
}

std::string device_description(int dev) {
  cudaDeviceProp p{};
  VLQ_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  char buf[768];
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %d SMs, %.1f GiB, L2 %d MiB", p.name, p.major, p.minor,
                p.multiProcessorCount, static_cast<double>(p.totalGlobalMem) / (1 << 30), p.l2CacheSize >> 20);
  return buf;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes) VLQ_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
void DeviceBuffer::upload(const void* host, std::size_t n, std::size_t offset) {
  if (offset + n > bytes_)
    usage_error("DeviceBuffer::upload", "copy past the end of the buffer", "<= " + std::to_string(bytes_) + " bytes",
                std::to_string(offset + n));
  VLQ_CUDA_CHECK(cudaMemcpy(static_cast<char*>(ptr_) + offset, host, n, cudaMemcpyHostToDevice));
}
void DeviceBuffer::download(void* host, std::size_t n, std::size_t offset) const {
  if (offset + n > bytes_)
    usage_error("DeviceBuffer::download", "copy past the end of the buffer", "<= " + std::to_string(bytes_) + " bytes",
                std::to_string(offset + n));
  VLQ_CUDA_CHECK(cudaMemcpy(host, static_cast<const char*>(ptr_) + offset, n, cudaMemcpyDeviceToHost));
}
void DeviceBuffer::fill_bytes(int value) {
  if (bytes_) VLQ_CUDA_CHECK(cudaMemset(ptr_, value, bytes_));
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_) cudaFreeHost(ptr_);
}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
void* PinnedBuffer::get(std::size_t bytes) {
  if (bytes_ < bytes) {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    VLQ_CUDA_CHECK(cudaMallocHost(&ptr_, bytes));
    bytes_ = bytes;
  }
  return ptr_;
}

void* DeviceArena::allocate(std::size_t bytes, std::size_t align) {
  const std::size_t start = (used_ + align - 1) / align * align;
  if (start + bytes > buf_.bytes())
    usage_error("DeviceArena", "weight arena full", "<= " + std::to_string(buf_.bytes()) + " bytes",
                std::to_string(start + bytes));
  used_ = start + bytes;
  return static_cast<char*>(buf_.data()) + start;
}
void* DeviceArena::upload(const void* host, std::size_t bytes) {
  void* p = allocate(bytes);
  VLQ_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  return p;
}

Stream::Stream() { VLQ_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
Stream::~Stream() {
  if (s_) cudaStreamDestroy(s_);
}
void Stream::sync() const { VLQ_CUDA_CHECK(cudaStreamSynchronize(s_)); }

Tensor Tensor::contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> dims) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.ndim = static_cast<int>(dims.size());
  if (t.ndim < 1 || t.ndim > 4) usage_error("Tensor", "rank out of range", "1..4", std::to_string(t.ndim));
  int i = 0;
  for (auto d : dims) t.shape[i++] = d;
  std::int64_t s = 1;
  for (int j = t.ndim - 1; j >= 0; --j) {
    t.stride[j] = s;
    s *= t.shape[j];
  }
  return t;
}
Tensor Tensor::strided2d(void* data, DType dtype, std::int64_t rows, std::int64_t cols, std::int64_t row_stride) {
  Tensor t = contiguous(data, dtype, {rows, cols});
  if (row_stride < cols) usage_error("Tensor", "row stride smaller than row", ">= " + std::to_string(cols), std::to_string(row_stride));
  t.stride[0] = row_stride;
  return t;
}
std::int64_t Tensor::numel() const noexcept {
  std::int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return ndim ? n : 0;
}
std::string Tensor::describe() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "] " + std::string(dtype_name(dtype));
}

void usage_error(const char* op, const std::string& what, const std::string& expected, const std::string& found) {
  throw UsageError({op, what, expected, found, "see the op's header in include/vlq/cuda/ for shapes and dtypes"});
}

void expect_tensor(const char* op, const char* arg, const Tensor& t, std::initializer_list<DType> dtypes,
                   std::initializer_list<std::int64_t> dims) {
  bool ok = false;
  std::string want;
  for (auto d : dtypes) {
    ok |= d == t.dtype;
    want += (want.empty() ? "" : "|") + std::string(dtype_name(d));
  }
  std::string shape = "[";
  int i = 0;
  bool shape_ok = static_cast<int>(dims.size()) == t.ndim;
  for (auto d : dims) {
    shape += (i ? ", " : "") + (d < 0 ? std::string("*") : std::to_string(d));
    if (shape_ok && d >= 0 && t.shape[i] != d) shape_ok = false;
    ++i;
  }
  shape += "]";
  if (!ok || !shape_ok || t.data == nullptr || (t.ndim > 0 && t.stride[t.ndim - 1] != 1))
    usage_error(op, std::string("argument ") + arg + " has the wrong shape, dtype or layout",
                shape + " " + want + " (last dim contiguous, non-null)", t.describe());
}

}  // namespace vlq::cuda
