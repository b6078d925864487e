// Load generator for `vlq serve`: streamed requests at max rate (closed loop, --concurrency clients) or as a
// Poisson process (--rate req/s, open loop, at most --concurrency in flight), from one prompt set — `image`
// (one image + a question, --output-tokens tokens each, EOS ignored) or `text` (text only) — and a report of
// req/s, output tok/s, TTFT and inter-token latency p50/p99 (client-side, from the SSE chunks) plus a JSON line.
// Either starts its own server (--vlq + --model, extra flags after --) or targets --port of a running one on
// 127.0.0.1 (loopback only).
// Usage: serve_load_bench --vlq build/vlq --model models/qwen2_5_vl-tiny-trained [--requests 64]
//        [--concurrency 8] [--rate 0] [--prompt-set image|text] [--output-tokens 32] [--seed 1]
//        [--images data/heldout/images] [--api-key K] [--prompt-words N] [-- <vlq serve flags>]
#include <algorithm>
#include <filesystem>
#include <atomic>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "serve_common.h"

namespace {

using namespace vlq::bench;
using json = nlohmann::json;

struct Args {
  std::string vlq, model, images, prompt_set = "image", api_key;
  int port = 0, concurrency = 8;
  std::int64_t requests = 64, output_tokens = 32, prompt_words = 0;
  double rate = 0;
  std::uint64_t seed = 1;
  std::vector<std::string> serve_flags;
};

Args parse(int argc, char** argv) {
  Args a;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) throw std::runtime_error("missing value for " + k);
    const std::string v = argv[++i];
    if (k == "--vlq") a.vlq = v;
    else if (k == "--model") a.model = v;
    else if (k == "--images") a.images = v;
    else if (k == "--prompt-set") a.prompt_set = v;
    else if (k == "--api-key") a.api_key = v;
    else if (k == "--port") a.port = std::stoi(v);
    else if (k == "--concurrency") a.concurrency = std::stoi(v);
    else if (k == "--requests") a.requests = std::stoll(v);
    else if (k == "--output-tokens") a.output_tokens = std::stoll(v);
    else if (k == "--rate") a.rate = std::stod(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--prompt-words") a.prompt_words = std::stoll(v);
    else throw std::runtime_error("unknown option " + k);
  }
  for (; i < argc; ++i) a.serve_flags.push_back(argv[i]);
  if (a.port == 0 && (a.vlq.empty() || a.model.empty()))
    throw std::runtime_error("give --port of a running server, or --vlq and --model to start one");
  if (a.prompt_set != "image" && a.prompt_set != "text") throw std::runtime_error("--prompt-set is image or text");
  if (a.images.empty()) a.images = (a.model.empty() ? std::string(".") : a.model + "/../..") + "/data/heldout/images";
  return a;
}

std::string request_body(const Args& a, std::int64_t i, const std::vector<std::string>& urls) {
  static const char* questions[] = {"What color is the shape?", "What shape is this?", "How many shapes are there?",
                                    "Where is the shape?"};
  // --prompt-words N: pad the text to about N more tokens (each " wN" is about two Qwen tokens; usage reports the count).
  std::string pad;
  for (std::int64_t w = 0; w < a.prompt_words; ++w) pad += fmt::format(" w{}", (w * 7 + i) % 10);
  const std::string q = questions[i % 4] + pad;
  json content;
  if (a.prompt_set == "image")
    content = json::array({{{"type", "image_url"}, {"image_url", {{"url", urls[static_cast<std::size_t>(i) % urls.size()]}}}},
                           {{"type", "text"}, {"text", q}}});
  else
    content = fmt::format("Request {}: {} Describe a red circle, a blue square and a green triangle.", i, q);
  return json{{"messages", json::array({{{"role", "user"}, {"content", content}}})},
              {"max_tokens", a.output_tokens}, {"ignore_eos", true}, {"temperature", 0}, {"stream", true},
              {"stream_options", {{"include_usage", true}}}}
      .dump();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    std::vector<std::string> urls;
    if (a.prompt_set == "image")
    {  // every PNG of --images (sorted), e.g. the held-out set's or 640x480 photos made for the bench
      std::vector<std::string> names;
      for (const auto& e : std::filesystem::directory_iterator(a.images))
        if (e.path().extension() == ".png") names.push_back(e.path().filename().string());
      std::sort(names.begin(), names.end());
      if (names.size() > 64) names.resize(64);
      if (names.empty()) throw std::runtime_error("no .png images in " + a.images);
      for (const auto& n : names) urls.push_back(png_data_url(a.images + "/" + n));
    }
    std::optional<ServeProcess> srv;
    int port = a.port;
    if (port == 0) {
      std::vector<std::string> flags = {"--model", a.model};
      if (!a.api_key.empty()) flags.insert(flags.end(), {"--api-key", a.api_key});
      flags.insert(flags.end(), a.serve_flags.begin(), a.serve_flags.end());
      srv = ServeProcess::start(a.vlq, flags, fmt::format("/tmp/vlq_serve_load_{}.log", ::getpid()));
      port = srv->port;
    }
    // Arrival times: all at 0 (max rate, closed loop) or Poisson with mean gap 1/rate.
    std::vector<double> arrival(static_cast<std::size_t>(a.requests), 0.0);
    std::mt19937_64 rng(a.seed);
    std::exponential_distribution<double> gap(a.rate > 0 ? a.rate : 1.0);
    for (std::size_t i = 1; a.rate > 0 && i < arrival.size(); ++i) arrival[i] = arrival[i - 1] + gap(rng);

    std::vector<StreamTiming> results(arrival.size());
    std::atomic<std::int64_t> next{0};
    const auto t0 = Clock::now();
    auto worker = [&] {
      for (;;) {
        const std::int64_t i = next++;
        if (i >= a.requests) return;
        const double wait = arrival[static_cast<std::size_t>(i)] - seconds_since(t0);
        if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
        results[static_cast<std::size_t>(i)] =
            post_stream("127.0.0.1", port, "/v1/chat/completions", request_body(a, i, urls), a.api_key);
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < a.concurrency; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
    const double wall = seconds_since(t0);
    if (srv) srv->terminate();

    std::vector<double> ttft, itl, e2e;
    std::int64_t ok = 0, tokens = 0, prompt_tokens = 0;
    for (const auto& r : results) {
      if (r.status != 200 || !r.done) continue;
      ++ok;
      tokens += r.tokens;
      prompt_tokens += r.prompt_tokens;
      ttft.push_back(r.ttft_s);
      e2e.push_back(r.total_s);
      itl.insert(itl.end(), r.gaps_s.begin(), r.gaps_s.end());
    }
    const json report = {{"prompt_set", a.prompt_set}, {"requests", a.requests}, {"ok", ok},
                         {"concurrency", a.concurrency}, {"rate", a.rate}, {"output_tokens", a.output_tokens}, {"mean_prompt_tokens", ok ? prompt_tokens / ok : 0},
                         {"wall_s", wall}, {"req_per_s", ok / wall}, {"output_tok_per_s", tokens / wall},
                         {"ttft_p50_ms", 1e3 * percentile(ttft, 50)}, {"ttft_p99_ms", 1e3 * percentile(ttft, 99)},
                         {"itl_p50_ms", 1e3 * percentile(itl, 50)}, {"itl_p99_ms", 1e3 * percentile(itl, 99)},
                         {"e2e_p50_ms", 1e3 * percentile(e2e, 50)}};
    std::cout << fmt::format(
        "serve load ({} prompts, {} output tokens, {}): {}/{} ok in {:.2f} s\n"
        "  {:.2f} req/s, {:.1f} output tok/s\n  TTFT p50 {:.1f} ms, p99 {:.1f} ms\n"
        "  inter-token p50 {:.2f} ms, p99 {:.2f} ms\n",
        a.prompt_set, a.output_tokens,
        a.rate > 0 ? fmt::format("Poisson {:.1f} req/s, <= {} in flight", a.rate, a.concurrency)
                   : fmt::format("max rate, {} clients", a.concurrency),
        ok, a.requests, wall, ok / wall, tokens / wall, 1e3 * percentile(ttft, 50), 1e3 * percentile(ttft, 99),
        1e3 * percentile(itl, 50), 1e3 * percentile(itl, 99));
    std::cout << report.dump() << "\n";
    return ok == a.requests ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "serve_load_bench: " << e.what() << "\n";
    return 1;
  }
}
