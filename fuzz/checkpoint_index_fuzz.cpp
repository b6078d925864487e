// libFuzzer target: model.safetensors.index.json parsing. Only vlq::Error may escape, and every
// accepted shard name must be a plain file name (else __builtin_trap).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto idx = vlq::io::parse_checkpoint_index({reinterpret_cast<const char*>(data), size}, "fuzz.index.json");
    for (const auto& [tensor, shard] : idx.weight_map) {
      if (shard.empty() || shard == "." || shard == "..") __builtin_trap();
      if (shard.find_first_of(std::string_view("/\\\0", 3)) != std::string::npos) __builtin_trap();
    }
    (void)idx.shards();
  } catch (const vlq::Error&) {
  }
  return 0;
}
