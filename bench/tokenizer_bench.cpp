// Benchmark: tokenizer.json load time and encode / decode throughput of vlq's byte-level BPE tokenizer.
//   build-*/tokenizer_bench [--seconds S] [MODEL_DIR_OR_TOKENIZER_JSON] [TEXT_FILE...]   (from the repo root)
// Defaults: ../shared/data/qwen-tokenizer and the texts of tests/data/golden/tokenizer/qwen_golden.jsonl.
// Encode is measured cold (fresh tokenizer, empty word cache) and warm (same text again). Results:
// docs/performance.md, "Tokenizer (CPU)".
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/text/tokenizer.h"

namespace fs = std::filesystem;
using vlq::text::Tokenizer;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Tokenizer load(const fs::path& p) {
  return fs::is_directory(p) ? Tokenizer::from_model_dir(p) : Tokenizer::load(p);
}

}  // namespace

double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  double seconds = 1.0;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--seconds" && i + 1 < argc) {
      seconds = std::stod(argv[++i]);
    } else {
      args.emplace_back(argv[i]);
    }
  }
  const fs::path src = ".";  // run from the repository root
  const fs::path model = !args.empty() ? fs::path(args[0]) : src / "../shared/data/qwen-tokenizer";
  std::string text;
  if (args.size() > 1) {
    for (std::size_t i = 1; i < args.size(); ++i) {
      std::ifstream in(args[i], std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      text += ss.str();
    }
  } else {
    std::ifstream in(src / "tests/data/golden/tokenizer/qwen_golden.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("text")) text += j["text"].get<std::string>() + "\n";
    }
  }

  std::vector<double> loads, load_cpu;
  for (int i = 0; i < 5; ++i) {
    const double t0 = now_s(), c0 = cpu_s();
    Tokenizer t = load(model);
    loads.push_back(now_s() - t0);
    load_cpu.push_back(cpu_s() - c0);
  }
  std::sort(loads.begin(), loads.end());
  std::sort(load_cpu.begin(), load_cpu.end());
  std::printf("load %s: wall median %.1f ms (min %.1f ms), CPU median %.1f ms\n", model.c_str(), loads[2] * 1e3,
              loads[0] * 1e3, load_cpu[2] * 1e3);

  // Throughput figures use process CPU time (the development machine is shared; wall time is noisy).
  Tokenizer tok = load(model);
  double c0 = cpu_s();
  const auto ids = tok.encode(text);
  const double cold = cpu_s() - c0;
  int reps = 0;
  c0 = cpu_s();
  do {
    (void)tok.encode(text);
    ++reps;
  } while (cpu_s() - c0 < seconds);
  const double warm = (cpu_s() - c0) / reps;
  std::printf("encode %zu bytes -> %zu tokens (CPU time): cold cache %.2f Mtok/s (%.1f MB/s), warm cache %.2f Mtok/s "
              "(%.1f MB/s)\n",
              text.size(), ids.size(), ids.size() / cold / 1e6, text.size() / cold / 1e6, ids.size() / warm / 1e6,
              text.size() / warm / 1e6);
  reps = 0;
  c0 = cpu_s();
  do {
    (void)tok.decode(ids);
    ++reps;
  } while (cpu_s() - c0 < seconds / 2);
  const double dec = (cpu_s() - c0) / reps;
  std::printf("decode %zu tokens (CPU time): %.1f Mtok/s\n", ids.size(), ids.size() / dec / 1e6);
  return 0;
}
