// Helpers for the safetensors I/O tests: temporary folders, raw safetensors files built byte by byte,
// and an EXPECT that checks an exception's type and message parts.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <map>
#include <span>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "vlq/core/error.h"

namespace vlq::testing {

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it at scope end.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vlq-io-test-XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = std::filesystem::path(p);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

inline std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// [u64 N = header.size()][header][data]
inline std::string st_bytes(std::string_view header, std::string_view data) {
  return le64(header.size()) + std::string(header) + std::string(data);
}

// `n` bytes of a recognisable pattern starting at `seed`.
inline std::string pattern(std::size_t n, unsigned seed = 1) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((seed * 131 + i * 7) & 0xff);
  return s;
}

inline void write_bytes(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every regular file directly in `dir`: name → bytes (to prove an input folder is left untouched).
inline std::map<std::string, std::string> folder_snapshot(const std::filesystem::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) m[e.path().filename().string()] = read_bytes(e.path());
  return m;
}

// One tensor for a raw test file: dtype string, shape, and byte count (pattern data).
struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t nbytes;
};

// A valid safetensors file with the tensors laid out in the given order.
inline std::string raw_file(const std::vector<RawTensor>& ts, unsigned seed = 1) {
  std::string h = "{";
  std::string data;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const auto& t = ts[i];
    if (i) h += ",";
    h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) h += (d ? "," : "") + std::to_string(t.shape[d]);
    h += "],\"data_offsets\":[" + std::to_string(data.size()) + "," + std::to_string(data.size() + t.nbytes) + "]}";
    data += pattern(t.nbytes, seed + static_cast<unsigned>(i));
  }
  h += "}";
  return st_bytes(h, data);
}

inline std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline std::string str_of(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace vlq::testing

// Runs `stmt`, expects exception type `E`, and checks that what() contains each of the given strings.
#define VLQ_EXPECT_ERROR(stmt, E, ...)                                                        \
  do {                                                                                        \
    bool vlq_caught_ = false;                                                                 \
    try {                                                                                     \
      stmt;                                                                                   \
    } catch (const E& vlq_e_) {                                                               \
      vlq_caught_ = true;                                                                     \
      const std::string vlq_msg_ = vlq_e_.what();                                             \
      for (std::string_view vlq_part_ : std::initializer_list<std::string_view>{__VA_ARGS__}) \
        EXPECT_NE(vlq_msg_.find(vlq_part_), std::string::npos)                                \
            << "message lacks \"" << vlq_part_ << "\": " << vlq_msg_;                         \
    } catch (const std::exception& vlq_other_) {                                              \
      ADD_FAILURE() << "wrong exception type: " << vlq_other_.what();                         \
      vlq_caught_ = true;                                                                     \
    }                                                                                         \
    if (!vlq_caught_) ADD_FAILURE() << "no exception from: " #stmt;                           \
  } while (0)
