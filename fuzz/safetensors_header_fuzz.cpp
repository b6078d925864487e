// libFuzzer target: safetensors header validation. Input = [u64 LE data_size][header JSON bytes]; the
// same bytes are also parsed as a whole safetensors file. Only vlq::Error may escape the parser, and an
// accepted header must satisfy the format's invariants (else __builtin_trap).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "vlq/core/dtype.h"
#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"

namespace {

void check_invariants(const vlq::io::SafetensorsHeader& h, std::uint64_t data_size) {
  std::uint64_t pos = 0;
  for (const auto& t : h.tensors) {
    if (t.data_begin != pos || t.data_end < t.data_begin) __builtin_trap();
    if (t.numel() * vlq::dtype_size(t.dtype) != t.nbytes()) __builtin_trap();
    for (auto d : t.shape)
      if (d < 0) __builtin_trap();
    if (t.name == "__metadata__") __builtin_trap();
    pos = t.data_end;
  }
  if (pos != data_size) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= 8) {
    std::uint64_t data_size = 0;
    for (int i = 7; i >= 0; --i) data_size = (data_size << 8) | data[i];
    std::string_view header(reinterpret_cast<const char*>(data + 8), size - 8);
    try {
      check_invariants(vlq::io::parse_safetensors_header(header, data_size, "fuzz.safetensors"), data_size);
    } catch (const vlq::Error&) {
    }
  }
  try {
    std::uint64_t n = 0;
    auto h = vlq::io::parse_safetensors_bytes({reinterpret_cast<const std::byte*>(data), size}, "fuzz.safetensors", &n);
    check_invariants(h, size - 8 - n);
  } catch (const vlq::Error&) {
  }
  return 0;
}
