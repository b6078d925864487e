// Shared helpers for the image decode / preprocessing tests: golden.json access, CRC-32, raw files.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vlq_test_image {

inline const std::filesystem::path kImages = std::filesystem::path(VLQ_SOURCE_DIR) / "tests/data/images";

inline std::vector<std::uint8_t> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// zlib-compatible CRC-32 (Python's zlib.crc32), used to compare with the goldens.
inline std::uint32_t crc32(const void* data, std::size_t n) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}
template <typename T>
std::uint32_t crc32(const std::vector<T>& v) {
  return crc32(v.data(), v.size() * sizeof(T));
}

inline const nlohmann::json& golden() {
  static const nlohmann::json j = [] {
    std::ifstream in(kImages / "golden.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

// Index and value of the first differing byte, for failure messages.
inline std::string first_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b,
                              std::int64_t width) {
  if (a.size() != b.size()) return "sizes differ: " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  int max_diff = 0;
  std::size_t first = a.size(), n_diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
    if (d) {
      ++n_diff;
      if (first == a.size()) first = i;
      if (d > max_diff) max_diff = d;
    }
  }
  if (first == a.size()) return "identical";
  const std::size_t px = first / 3;
  return std::to_string(n_diff) + " bytes differ, max diff " + std::to_string(max_diff) + ", first at (x=" +
         std::to_string(px % width) + ", y=" + std::to_string(px / width) + ", c=" + std::to_string(first % 3) +
         "): got " + std::to_string(a[first]) + " want " + std::to_string(b[first]);
}

}  // namespace vlq_test_image
