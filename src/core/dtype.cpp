// DType names and sizes (safetensors spelling).
#include "vlq/core/dtype.h"

#include <array>
#include <utility>

namespace vlq {
namespace {
struct Entry { DType t; std::string_view name; std::size_t size; };
constexpr std::array<Entry, 16> kTable{{
    {DType::F64, "F64", 8},     {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E8M0, "F8_E8M0", 1}, {DType::I64, "I64", 8},     {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},     {DType::I8, "I8", 1},           {DType::U64, "U64", 8},
    {DType::U32, "U32", 4},     {DType::U16, "U16", 2},         {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
}};
const Entry& entry(DType t) noexcept { return kTable[static_cast<std::size_t>(t)]; }
}  // namespace

std::size_t dtype_size(DType t) noexcept { return entry(t).size; }
std::string_view dtype_name(DType t) noexcept { return entry(t).name; }
std::optional<DType> parse_dtype(std::string_view s) noexcept {
  for (const auto& e : kTable)
    if (e.name == s) return e.t;
  return std::nullopt;
}
bool is_fp8(DType t) noexcept { return t == DType::F8_E4M3 || t == DType::F8_E5M2; }
bool is_float(DType t) noexcept {
  switch (t) {
    case DType::F64: case DType::F32: case DType::F16: case DType::BF16:
    case DType::F8_E4M3: case DType::F8_E5M2: case DType::F8_E8M0: return true;
    default: return false;
  }
}

}  // namespace vlq
