// CPU soak of `vlq serve` in CI size (ctest `server_soak`, label `server`): starts the server on a loopback
// port, sends thousands of mixed requests from several threads for a bounded time — short good chats with
// an image, streamed completions, clients that disconnect mid-stream, and many cheap bad ones (malformed
// JSON, wrong types, bad base64, path traversal, no key, unknown model, huge body, too many tokens) — and
// checks: every answer has its expected status, the server never dies, RSS after the run stays within
// 15% + 16 MiB of RSS after warm-up, the metrics return to zero (no KV blocks, runner states or requests
// left), and SIGTERM exits 0.
// Usage: serve_soak_bench --vlq build/vlq --model models/qwen2_5_vl-tiny-trained [--seconds 20] [--threads 4]
//        [--max-requests 20000] [--images data/heldout/images]
#include <atomic>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "serve_common.h"

namespace {

using namespace vlq::bench;
using json = nlohmann::json;
constexpr const char* kKey = "soak-key";

struct Args {
  std::string vlq, model, images;
  double seconds = 20;
  int threads = 4;
  std::int64_t max_requests = 20000;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--vlq") a.vlq = v;
    else if (k == "--model") a.model = v;
    else if (k == "--images") a.images = v;
    else if (k == "--seconds") a.seconds = std::stod(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--max-requests") a.max_requests = std::stoll(v);
    else throw std::runtime_error("unknown option " + k);
  }
  if (a.vlq.empty() || a.model.empty()) throw std::runtime_error("usage: serve_soak_bench --vlq VLQ --model DIR [...]");
  if (a.images.empty()) a.images = a.model + "/../../data/heldout/images";
  return a;
}

struct Case {
  const char* name;
  std::vector<int> ok;  // accepted statuses
};

// Sends request kind `k`; returns the HTTP status (-1 none; 0 = client disconnected on purpose).
int send_kind(int k, int port, const std::string& image_url, std::int64_t i) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  c.set_default_headers({{"Authorization", std::string("Bearer ") + kKey}});
  auto chat = [&](const std::string& url, int max_tokens) {
    return json{{"messages", json::array({{{"role", "user"},
                                            {"content", json::array({{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                                                                     {{"type", "text"}, {"text", "What color is the shape?"}}})}}})},
                {"max_tokens", max_tokens}}
        .dump();
  };
  auto post = [&](const std::string& path, const std::string& body) {
    auto r = c.Post(path.c_str(), body, "application/json");
    return r ? r->status : -1;
  };
  switch (k) {
    case 0: return post("/v1/chat/completions", chat(image_url, 4));
    case 1: {
      const auto st = post_stream("127.0.0.1", port, "/v1/completions",
                                  json{{"prompt", fmt::format("Count {}", i % 97)}, {"max_tokens", 4}, {"stream", true},
                                       {"stream_options", {{"include_usage", true}}}}.dump(), kKey);
      return st.done ? st.status : -2;
    }
    case 2: return post("/v1/chat/completions", "{\"messages\": [{\"role\": ");
    case 3: return post("/v1/chat/completions", json{{"messages", 42}}.dump());
    case 4: return post("/v1/chat/completions", chat("data:image/png;base64,#not*base64#", 4));
    case 5: return post("/v1/chat/completions", chat("../../../../etc/passwd", 4));
    case 6: {
      httplib::Client anon("127.0.0.1", port);
      auto r = anon.Post("/v1/chat/completions", chat(image_url, 4), "application/json");
      return r ? r->status : -1;
    }
    case 7: {
      json body = json::parse(chat(image_url, 4));
      body["model"] = "no-such-model";
      return post("/v1/chat/completions", body.dump());
    }
    case 8: return post("/v1/completions", std::string((1 << 20) + 4096, ' '));
    case 9: {
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.headers = {{"Authorization", std::string("Bearer ") + kKey}, {"Content-Type", "application/json"}};
      req.body = json{{"prompt", "Count"}, {"max_tokens", 300}, {"ignore_eos", true}, {"stream", true}}.dump();
      int n = 0;
      req.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) { return ++n < 2; };
      c.send(req);
      return 0;
    }
    case 10: {
      auto r = c.Get(i % 2 ? "/metrics" : "/health");
      return r ? r->status : -1;
    }
    default: return post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", 1 << 20}}.dump());
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const std::string image_url = png_data_url(a.images + "/color-0003.png");
    const std::string log = fmt::format("/tmp/vlq_serve_soak_{}.log", ::getpid());
    ServeProcess srv = ServeProcess::start(a.vlq, {"--model", a.model, "--api-key", kKey, "--max-num-seqs", "4",
                                                   "--max-queue", "64", "--max-body-mb", "1", "--max-image-mb", "1"},
                                           log);
    const std::vector<Case> cases = {{"chat+image", {200, 429}}, {"stream", {200, 429}}, {"malformed", {400}},
                                     {"wrong type", {400}},      {"bad base64", {400}},  {"traversal", {400}},
                                     {"no key", {401}},          {"bad model", {404}},   {"huge body", {413}},
                                     {"disconnect", {0}},        {"metrics", {200}},     {"too long", {400}}};
    std::atomic<std::int64_t> next{0}, failures{0};
    std::mutex mu;
    std::map<std::string, std::int64_t> count, bad;
    std::int64_t rss_warm = 0;
    const auto t0 = Clock::now();
    auto worker = [&] {
      for (;;) {
        const std::int64_t i = next++;
        if (i >= a.max_requests || seconds_since(t0) > a.seconds) return;
        const int k = static_cast<int>(i % static_cast<std::int64_t>(cases.size()));
        const int st = send_kind(k, srv.port, image_url, i);
        const auto& ok = cases[k].ok;
        const bool good = std::find(ok.begin(), ok.end(), st) != ok.end();
        std::lock_guard<std::mutex> lock(mu);
        ++count[cases[k].name];
        if (!good) {
          ++failures;
          if (bad[cases[k].name]++ < 3) std::cerr << fmt::format("unexpected status {} for '{}'\n", st, cases[k].name);
        }
        if (rss_warm == 0 && (seconds_since(t0) > a.seconds * 0.25 || i > a.max_requests / 4)) rss_warm = rss_kib(srv.pid);
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < a.threads; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
    const double elapsed = seconds_since(t0);
    std::int64_t sent = 0;
    for (const auto& [name, n] : count) sent += n;

    // Settle: nothing in flight, no blocks, no runner state.
    bool settled = false;
    std::string m;
    for (int i = 0; i < 200 && !settled; ++i) {
      httplib::Client c("127.0.0.1", srv.port);
      auto r = c.Get("/metrics");
      if (r) {
        m = r->body;
        settled = metric(m, "vlq_requests_in_flight") == 0.0 && metric(m, "vlq_kv_blocks_used") == 0.0 &&
                  metric(m, "vlq_runner_live_sequences") == 0.0 && metric(m, "vlq_running_sequences") == 0.0;
      }
      if (!settled) ::usleep(50000);
    }
    const std::int64_t rss_end = rss_kib(srv.pid);
    const bool alive = ::kill(srv.pid, 0) == 0;
    const int rc = srv.terminate();
    const bool rss_flat = rss_warm > 0 && rss_end <= rss_warm + rss_warm * 15 / 100 + 16 * 1024;
    std::cout << fmt::format("serve soak: {} requests in {:.1f} s ({:.0f} req/s) from {} threads\n", sent, elapsed,
                             sent / elapsed, a.threads);
    for (const auto& [name, n] : count) std::cout << fmt::format("  {:<12} {:>6}  unexpected {}\n", name, n, bad[name]);
    std::cout << fmt::format("  RSS after warm-up {} KiB, at the end {} KiB ({})\n", rss_warm, rss_end,
                             rss_flat ? "flat" : "GREW");
    std::cout << fmt::format("  metrics back to zero: {}; alive at the end: {}; SIGTERM exit status {}\n",
                             settled ? "yes" : "NO", alive ? "yes" : "NO", rc);
    const bool pass = failures == 0 && settled && alive && rc == 0 && rss_flat && sent >= 1000;
    std::cout << (pass ? "1 passed, 0 failed" : "0 passed, 1 failed") << "\n";
    if (!pass) std::cerr << "server log: " << log << "\n";
    else std::remove(log.c_str());
    return pass ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "serve_soak_bench: " << e.what() << "\n";
    return 1;
  }
}
