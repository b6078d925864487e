// Test helper for the end-to-end CLI tests (GenerateCli, QuantizeCli, EvalCli): runs the built `vlq`
// binary through the shell, makes scratch folders (symlinked model copies, so a command that wrongly
// deletes its input cannot touch the repository), fingerprints input folders, and rewrites safetensors
// files (drop / truncate tensors) without Python.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vlq::clitest {

namespace fs = std::filesystem;
using nlohmann::json;

inline const fs::path kRoot = fs::path(VLQ_SOURCE_DIR);
inline const fs::path kModel = kRoot / "models/qwen2_5_vl-tiny-trained";
inline const fs::path kCalib = kRoot / "data/calib";
inline const fs::path kHeldout = kRoot / "data/heldout";
inline const fs::path kImages = kRoot / "tests/data/images";
inline const fs::path kColorImage = kRoot / "data/heldout/images/color-0003.png";  // a blue shape: greedy answer "blue"

// Single-quotes a string for /bin/sh.
inline std::string q(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}
inline std::string q(const fs::path& p) { return q(p.string()); }

struct RunResult {
  int rc = -1;
  std::string out;  // stdout only
  std::string err;  // stderr only
  std::string all() const { return out + err; }
};

// Runs `vlq ARGS` (ARGS already shell-quoted) with stdout and stderr captured separately; `cwd` optional.
inline RunResult run_vlq(const std::string& args, const fs::path& cwd = {}) {
  static int counter = 0;
  const fs::path errf = fs::temp_directory_path() / ("vlq_cli_err_" + std::to_string(::getpid()) + "_" +
                                                     std::to_string(counter++));
  std::string cmd = std::string(VLQ_BINARY) + " " + args + " 2>" + q(errf);
  if (!cwd.empty()) cmd = "cd " + q(cwd) + " && " + cmd;
  RunResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(errf, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  r.err = ss.str();
  fs::remove(errf);
  return r;
}

inline bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// A scratch folder removed at the end of the test.
struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& tag) {
    const auto* ti = ::testing::UnitTest::GetInstance()->current_test_info();
    dir = fs::temp_directory_path() /
          ("vlq_cli_" + tag + "_" + std::to_string(::getpid()) + "_" + (ti ? ti->name() : std::string("suite")));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path operator/(const std::string& s) const { return dir / s; }
};

// A model folder whose files are symlinks to the bundled model's (cheap; deleting it never touches the
// real files). `skip` names files to leave out.
inline fs::path link_model(const fs::path& dst, const std::set<std::string>& skip = {}) {
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(kModel))
    if (!skip.count(e.path().filename().string())) fs::create_symlink(e.path(), dst / e.path().filename());
  return dst;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
inline void write_file(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// Fingerprint of every regular file (following symlinks) under a folder: name -> content hash.
inline std::map<std::string, std::size_t> fingerprint(const fs::path& dir) {
  std::map<std::string, std::size_t> m;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (fs::is_regular_file(e.path()))
      m[fs::relative(e.path(), dir).string()] = std::hash<std::string>{}(read_file(e.path()));
  return m;
}

// Entries of `parent` whose name starts with `prefix` (leftovers such as OUT, OUT.tmp-*, OUT.exact-*).
inline std::vector<std::string> entries_starting(const fs::path& parent, const std::string& prefix) {
  std::vector<std::string> r;
  if (!fs::exists(parent)) return r;
  for (const auto& e : fs::directory_iterator(parent)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) r.push_back(n);
  }
  return r;
}
inline std::string joined(const std::vector<std::string>& v) {
  std::string r;
  for (const auto& s : v) r += s + " ";
  return r;
}

// ---- safetensors (independent of vlq's reader/writer) ------------------------------------------------
struct StFile {
  json header;  // name -> {dtype, shape, data_offsets}; "__metadata__" kept
  std::string data;
};
inline StFile read_st(const fs::path& p) {
  const std::string b = read_file(p);
  std::uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  return {json::parse(b.substr(8, n)), b.substr(8 + n)};
}
// Writes `f` again with `drop` removed and `truncate_rows` tensors cut to that many rows (dim 0).
inline void write_st(const fs::path& p, const StFile& f, const std::set<std::string>& drop,
                     const std::map<std::string, std::int64_t>& truncate_rows) {
  json h = json::object();
  std::string data;
  for (auto& [name, t] : f.header.items()) {
    if (name == "__metadata__") {
      h[name] = t;
      continue;
    }
    if (drop.count(name)) continue;
    const std::size_t b0 = t["data_offsets"][0], b1 = t["data_offsets"][1];
    std::string bytes = f.data.substr(b0, b1 - b0);
    json shape = t["shape"];
    if (auto it = truncate_rows.find(name); it != truncate_rows.end()) {
      const std::int64_t rows = shape[0];
      bytes.resize(bytes.size() / static_cast<std::size_t>(rows) * static_cast<std::size_t>(it->second));
      shape[0] = it->second;
    }
    h[name] = {{"dtype", t["dtype"]}, {"shape", shape}, {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  std::string hs = h.dump();
  while (hs.size() % 8) hs += ' ';
  std::string out(8, '\0');
  const std::uint64_t n = hs.size();
  std::memcpy(out.data(), &n, 8);
  write_file(p, out + hs + data);
}

}  // namespace vlq::clitest
