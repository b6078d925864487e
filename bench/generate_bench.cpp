// Benchmark: CPU generation speed of a Qwen2.5-VL checkpoint (load, vision tower, prefill, decode, peak RSS).
// Loads the model once (timed like `vlq generate`: tokenizer + chat template + weights), then for each
// prompt — image(s) + text (when --image is given or --text-tokens is not), and a text-only prompt whose user
// text is N tokens of data/calib/text.jsonl (--text-tokens N; the template adds ~20) — runs REPEAT times: a
// fresh session, prefill (wall time split at the vision tower's end with a ForwardObserver: "vision" = vision
// tower + merger, "LM prefill" = the rest), then NEW greedy decode steps (EOS ignored, so every run decodes
// the same count). Prints per-run lines and the median; wall and process CPU seconds.
// Results: docs/performance.md ("CPU generation").
//   build-*/generate_bench --model DIR [--image PATH]... [--prompt TEXT] [--text-tokens N] [--new N]
//                          [--repeat R] [--kv-cache auto|f32|fp8]        (env VLQ_BENCH_MODEL = default DIR)
#include <sys/resource.h>
#include <unistd.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/engine/messages.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/model/observer.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/ops/sampling.h"

extern "C" int openblas_get_num_threads(void);

using namespace vlq;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Process CPU time (user + system, all threads), seconds.
double cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}
double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}
double current_rss_mb() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1048576.0);
}

// Records when the vision tower has produced its merged features (the "vision.merger" intermediate).
class VisionClock : public model::ForwardObserver {
 public:
  Clock::time_point vision_done{};
  bool seen = false;
  bool wants_tensors() const override { return true; }
  void on_tensor(const std::string& name, const float*, std::int64_t, std::int64_t) override {
    if (name == "vision.merger") {
      vision_done = Clock::now();
      seen = true;
    }
  }
};

struct Run {
  double vision = 0, lm_prefill = 0, prefill = 0, prefill_cpu = 0, decode = 0, decode_cpu = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// A user text of roughly `tokens` tokens: calibration sentences repeated, cut at a token boundary.
std::string text_of_tokens(const text::Tokenizer& tok, std::int64_t tokens) {
  std::ifstream f("data/calib/text.jsonl");
  if (!f) throw IoError({"data/calib/text.jsonl", "cannot open", "the repo's calibration text", "", "run from the repo root"});
  std::string all, line;
  while (std::getline(f, line))
    if (!line.empty()) all += nlohmann::json::parse(line).at("text").get<std::string>() + " ";
  std::string text;
  while (static_cast<std::int64_t>(tok.encode(text, false).size()) < tokens) text += all;
  std::vector<std::int32_t> ids = tok.encode(text, false);
  ids.resize(tokens);
  return tok.decode(ids);
}

void bench_prompt(const engine::ModelBundle& bundle, const engine::MessageOptions& mo,
                  const std::string& prompt_text, const std::vector<std::string>& images, std::int64_t new_tokens,
                  std::int64_t repeat) {
  const auto t_pre = Clock::now();
  const engine::Prompt prompt = bundle.build_prompt(engine::build_prompt_messages(prompt_text, images, std::nullopt, mo));
  const double preprocess_s = since(t_pre);
  const std::int64_t S = static_cast<std::int64_t>(prompt.ids.size());
  const image::ProcessedImages* pimg = prompt.images.n_patches > 0 ? &prompt.images : nullptr;

  std::printf("prompt: %lld tokens (%lld image tokens, %lld patches", static_cast<long long>(S),
              static_cast<long long>(prompt.image_tokens), static_cast<long long>(prompt.images.n_patches));
  for (const auto& g : prompt.images.grid_thw)
    std::printf(", grid %lldx%lldx%lld", static_cast<long long>(g[0]), static_cast<long long>(g[1]),
                static_cast<long long>(g[2]));
  std::printf("); decode %lld new tokens per run, %lld runs\n", static_cast<long long>(new_tokens),
              static_cast<long long>(repeat));
  std::printf("prompt build + image preprocess %.3f s\n", preprocess_s);
  std::fflush(stdout);

  const model::Qwen2_5_VL& m = bundle.model();
  std::vector<Run> runs;
  for (std::int64_t r = 0; r < repeat; ++r) {
    Run run;
    model::Session s = m.new_session(S + new_tokens + 1);
    VisionClock vc;
    const double c0 = cpu_s();
    const auto t0 = Clock::now();
    ops::Matrix logits = m.prefill(s, prompt.ids, pimg, 1, &vc);
    run.prefill = since(t0);
    run.prefill_cpu = cpu_s() - c0;
    run.vision = vc.seen ? std::chrono::duration<double>(vc.vision_done - t0).count() : 0;
    run.lm_prefill = run.prefill - run.vision;
    std::int32_t id = static_cast<std::int32_t>(ops::argmax(logits.row(0), logits.cols));
    const double c1 = cpu_s();
    const auto t1 = Clock::now();
    for (std::int64_t k = 0; k < new_tokens; ++k) {
      ops::Matrix next = m.decode(s, id);
      id = static_cast<std::int32_t>(ops::argmax(next.row(0), next.cols));
    }
    run.decode = since(t1);
    run.decode_cpu = cpu_s() - c1;
    std::printf("run %lld: vision %.3f s, LM prefill %.3f s, prefill %.3f s wall / %.2f s CPU (%.1f tok/s); decode %lld "
                "in %.3f s wall / %.2f s CPU (%.2f tok/s, %.1f ms/token)\n",
                static_cast<long long>(r + 1), run.vision, run.lm_prefill, run.prefill, run.prefill_cpu, S / run.prefill,
                static_cast<long long>(new_tokens), run.decode, run.decode_cpu, new_tokens / run.decode,
                1e3 * run.decode / new_tokens);
    std::fflush(stdout);
    runs.push_back(run);
  }
  auto med = [&](double Run::*f) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*f);
    return median(v);
  };
  const double pf = med(&Run::prefill), lm = med(&Run::lm_prefill), dec = med(&Run::decode);
  std::printf("median: vision %.3f s; LM prefill %.3f s (%.1f tok/s over %lld text+image tokens); prefill total %.3f s "
              "(%.1f tok/s, CPU %.2f s); decode %.2f tok/s (%.1f ms/token, CPU %.2f s for %lld); peak RSS so far %.0f MiB\n",
              med(&Run::vision), lm, S / lm, static_cast<long long>(S), pf, S / pf, med(&Run::prefill_cpu),
              new_tokens / dec, 1e3 * dec / new_tokens, med(&Run::decode_cpu), static_cast<long long>(new_tokens),
              peak_rss_mb());
}

int run(int argc, char** argv) {
  std::string model_dir = std::getenv("VLQ_BENCH_MODEL") ? std::getenv("VLQ_BENCH_MODEL") : "";
  std::string prompt_text = "Describe the picture.", kv = "auto";
  std::vector<std::string> images;
  std::int64_t text_tokens = 0, new_tokens = 32, repeat = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError({a, "missing value", "a value", "end of arguments", ""});
      return argv[++i];
    };
    if (a == "--model") model_dir = next();
    else if (a == "--image") images.push_back(next());
    else if (a == "--prompt") prompt_text = next();
    else if (a == "--text-tokens") text_tokens = std::stoll(next());
    else if (a == "--new") new_tokens = std::stoll(next());
    else if (a == "--repeat") repeat = std::stoll(next());
    else if (a == "--kv-cache") kv = next();
    else throw UsageError({a, "unknown argument", "--model --image --prompt --text-tokens --new --repeat --kv-cache", a, ""});
  }
  if (model_dir.empty()) throw UsageError({"generate_bench", "no model", "--model DIR or VLQ_BENCH_MODEL", "neither", ""});

  engine::BundleOptions bo;
  bo.kv_cache = engine::parse_kv_cache_mode(kv);
  const double c_load = cpu_s();
  const engine::ModelBundle bundle = engine::ModelBundle::load(model_dir, bo);
  const double load_s = bundle.load_seconds(), load_cpu = cpu_s() - c_load;
  const double rss_loaded = current_rss_mb(), peak_loaded = peak_rss_mb();
  const model::Qwen2_5_VL& m = bundle.model();
  engine::MessageOptions mo;
  mo.base_dir = fs::current_path();
  std::printf("model %s: %d layers, hidden %lld, vocab %lld; vision depth %d\n", model_dir.c_str(),
              static_cast<int>(m.weights().lm.layers.size()), static_cast<long long>(m.config().text.hidden_size),
              static_cast<long long>(m.config().text.vocab_size), static_cast<int>(m.weights().vision.blocks.size()));
  std::printf("threads: OpenMP %d, OpenBLAS %d; KV cache %s\n", omp_get_max_threads(), openblas_get_num_threads(),
              m.fp8_kv_cache() ? "FP8" : "f32");
  // The load's peak includes the mmap'd (file-backed, reclaimable) shard pages it has touched.
  std::printf("load %.2f s wall (%.2f s CPU), RSS after load %.0f MiB, peak RSS during load %.0f MiB\n", load_s, load_cpu,
              rss_loaded, peak_loaded);
  // Case 1: the image(s) + text (unless only --text-tokens was given); case 2: text-only of ~N tokens.
  if (!images.empty() || text_tokens == 0) bench_prompt(bundle, mo, prompt_text, images, new_tokens, repeat);
  if (text_tokens > 0) bench_prompt(bundle, mo, text_of_tokens(bundle.tokenizer(), text_tokens), {}, new_tokens, repeat);
  std::printf("peak RSS %.0f MiB\n", peak_rss_mb());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate_bench: %s\n", e.what());
    return 1;
  }
}
