// `vlq serve`'s HTTP layer end to end without Python: an in-process server (bundled tiny model, ephemeral
// loopback port) driven by cpp-httplib's client — answers equal engine::generate, SSE streaming, completions,
// concurrency, every error class (400 naming the field, 401, 404, 413, 429, 503), disconnects mid-stream,
// drain — and the metrics back to zero (no leaked blocks) afterwards.
#include <gtest/gtest.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>
#include <tuple>

#include <nlohmann/json.hpp>

#include "vlq/engine/generate.h"
#include "vlq/engine/llm_engine.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/engine/model_runner.h"
#include "vlq/server/async_engine.h"
#include "vlq/server/http_server.h"
#include "vlq/server/metrics.h"

namespace vlq::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
const fs::path kRoot = fs::path(VLQ_SOURCE_DIR);
const fs::path kModelDir = kRoot / "models/qwen2_5_vl-tiny-trained";
const fs::path kHeldout = kRoot / "data/heldout";
constexpr const char* kKey = "test-key-123";

const engine::ModelBundle& bundle() {
  static engine::ModelBundle* b = new engine::ModelBundle(engine::ModelBundle::load(kModelDir));
  return *b;
}

std::string base64(const std::vector<std::uint8_t>& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t{in[i]} << 16) | (i + 1 < in.size() ? std::uint32_t{in[i + 1]} << 8 : 0) |
                            (i + 2 < in.size() ? std::uint32_t{in[i + 2]} : 0);
    out += t[(n >> 18) & 63];
    out += t[(n >> 12) & 63];
    out += i + 1 < in.size() ? t[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? t[n & 63] : '=';
  }
  return out;
}

std::string data_url(const std::string& image) {
  std::ifstream f(kHeldout / "images" / image, std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return "data:image/png;base64," + base64(bytes);
}

json image_message(const std::string& url, const std::string& text) {
  return json::array({{{"role", "user"},
                       {"content", json::array({{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                                                {{"type", "text"}, {"text", text}}})}}});
}

// engine::generate (the `vlq generate` loop) on the same request, greedy; ignore_eos: no stop ids.
std::string reference(const json& messages, std::int64_t max_new, bool ignore_eos = false) {
  engine::MessageOptions mo;
  mo.base_dir = kHeldout;
  const engine::ParsedMessages pm = engine::parse_messages(nlohmann::ordered_json::parse(messages.dump()), mo);
  const engine::Prompt prompt = bundle().build_prompt(pm);
  engine::GenerationOverrides o;
  o.max_new_tokens = max_new;
  engine::GenerateOptions go = bundle().generate_options(o);
  if (ignore_eos) go.eos_ids.clear();
  const auto r = engine::generate(bundle().model(), prompt, go);
  return bundle().tokenizer().decode(r.output_ids, true);
}

struct TestServer {
  std::unique_ptr<engine::CpuModelRunner> runner;
  std::unique_ptr<engine::LlmEngine> core;
  Metrics metrics;
  std::unique_ptr<AsyncEngine> async;
  std::unique_ptr<HttpServer> http;
  std::thread thread;
  int port = 0;
  explicit TestServer(std::int64_t max_num_seqs = 4, std::int64_t max_queue = 16, std::size_t max_body = 1 << 20,
                      int http_threads = 16, std::chrono::seconds read_timeout = std::chrono::seconds(10)) {
    engine::CpuRunnerOptions ro;
    ro.num_blocks = 512;
    runner = std::make_unique<engine::CpuModelRunner>(bundle().model(), ro);
    engine::EngineConfig ec;
    ec.num_blocks = 512;
    ec.max_model_len = 2048;
    ec.scheduler.max_num_seqs = max_num_seqs;
    ec.scheduler.max_waiting = max_queue + 1;
    core = std::make_unique<engine::LlmEngine>(*runner, bundle().tokenizer(), ec);
    async = std::make_unique<AsyncEngine>(*core, metrics, max_queue);
    ServerOptions so;
    so.port = 0;
    so.api_key = kKey;
    so.served_model_name = "tiny";
    so.max_body_bytes = max_body;
    so.http_threads = http_threads;
    so.read_timeout = read_timeout;
    so.media.allowed_media_dir = kHeldout;
    so.media.max_image_bytes = 64 << 10;
    so.max_model_len = 2048;
    http = std::make_unique<HttpServer>(bundle(), *async, metrics, so);
    port = http->bind();
    async->start();
    thread = std::thread([this] { http->serve(); });
  }
  ~TestServer() {
    http->shutdown(std::chrono::milliseconds(5000));
    thread.join();
  }
  httplib::Client client(bool auth = true) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    if (auth) c.set_default_headers({{"Authorization", std::string("Bearer ") + kKey}});
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body, bool auth = true) const {
    return client(auth).Post(path.c_str(), body, "application/json");
  }
  json metrics_values() const {
    auto r = client().Get("/metrics");
    json m = json::object();
    if (!r) return m;
    std::istringstream in(r->body);
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] == '#' || line.find('{') != std::string::npos) continue;
      const auto sp = line.find(' ');
      m[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
    }
    return m;
  }
  // Waits until nothing is in flight and every block and runner state is released.
  bool settles() const {
    for (int i = 0; i < 200; ++i) {
      const json m = metrics_values();
      if (m.value("vlq_requests_in_flight", -1.0) == 0 && m.value("vlq_kv_blocks_used", -1.0) == 0 &&
          m.value("vlq_runner_live_sequences", -1.0) == 0 && m.value("vlq_running_sequences", -1.0) == 0)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }
};

TestServer& shared() {
  static TestServer* s = new TestServer();
  return *s;
}

void expect_error(const httplib::Result& r, int status, const std::string& param = "", const std::string& code = "") {
  ASSERT_TRUE(r) << "no response";
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  if (!param.empty()) EXPECT_EQ(j["error"]["param"], param) << r->body;
  if (!code.empty()) EXPECT_EQ(j["error"]["code"], code) << r->body;
}

// Concatenated delta text and the finish reason of an SSE body; fails unless it ends with [DONE] and exactly
// one chunk, the last with a choice, carries a finish_reason.
std::pair<std::string, std::string> read_sse(const std::string& body, json* usage = nullptr) {
  std::string text, reason;
  std::istringstream in(body);
  bool done = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json j = json::parse(data);
    if (j.contains("usage") && usage) *usage = j["usage"];
    if (j["choices"].empty()) continue;
    EXPECT_TRUE(reason.empty()) << "a choice chunk after the one with the finish_reason: " << data;
    const json& c = j["choices"][0];
    if (c.contains("delta") && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
    if (c.contains("text")) text += c["text"].get<std::string>();
    if (!c["finish_reason"].is_null()) reason = c["finish_reason"];
  }
  EXPECT_TRUE(done) << body;
  return {text, reason};
}

TEST(HttpServer, HealthModelsAndMetricsNeedNoKeyButV1Does) {
  TestServer& s = shared();
  auto h = s.client(false).Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = s.client().Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "tiny");
  expect_error(s.client(false).Get("/v1/models"), 401, "", "invalid_api_key");
  httplib::Client wrong("127.0.0.1", s.port);
  wrong.set_default_headers({{"Authorization", "Bearer nope"}});
  expect_error(wrong.Post("/v1/chat/completions", "{}", "application/json"), 401, "", "invalid_api_key");
  auto mt = s.client(false).Get("/metrics");
  ASSERT_TRUE(mt);
  EXPECT_NE(mt->body.find("# TYPE vlq_time_to_first_token_seconds histogram"), std::string::npos);
  EXPECT_NE(mt->body.find("vlq_kv_blocks_used"), std::string::npos);
  expect_error(s.client().Get("/v1/nothing"), 404);
}

TEST(HttpServer, ChatWithImageEqualsGenerateStreamingOrNot) {
  TestServer& s = shared();
  const json msgs = image_message(data_url("color-0003.png"), "What color is the shape?");
  const std::string want = reference(msgs, 16);
  auto r = s.post("/v1/chat/completions", json{{"model", "tiny"}, {"messages", msgs}, {"max_tokens", 16}}.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["content"], want);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 16);
  EXPECT_GE(j["usage"]["completion_tokens"].get<int>(), 1);
  auto st = s.post("/v1/chat/completions",
                   json{{"messages", msgs}, {"max_tokens", 16}, {"stream", true}, {"stream_options", {{"include_usage", true}}}}.dump());
  ASSERT_TRUE(st);
  ASSERT_EQ(st->status, 200);
  EXPECT_NE(st->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  json usage;
  const auto [text, reason] = read_sse(st->body, &usage);
  EXPECT_EQ(text, want);
  EXPECT_EQ(reason, "stop");
  EXPECT_EQ(usage["completion_tokens"], j["usage"]["completion_tokens"]);
  // A local file under --allowed-media-dir gives the same answer.
  auto f = s.post("/v1/chat/completions",
                  json{{"messages", image_message("images/color-0003.png", "What color is the shape?")}, {"max_tokens", 16}}.dump());
  ASSERT_TRUE(f);
  EXPECT_EQ(json::parse(f->body)["choices"][0]["message"]["content"], want);
  EXPECT_TRUE(s.settles());
}

TEST(HttpServer, CompletionsTextAndTokenIdsWithStopAndLength) {
  TestServer& s = shared();
  auto r = s.post("/v1/completions", json{{"prompt", "What color"}, {"max_tokens", 3}, {"ignore_eos", true}}.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  const std::vector<std::int32_t> ids = bundle().tokenizer().encode("What color", true);
  auto t = s.post("/v1/completions", json{{"prompt", ids}, {"max_tokens", 3}, {"ignore_eos", true}}.dump());
  ASSERT_TRUE(t);
  EXPECT_EQ(json::parse(t->body)["choices"][0]["text"], j["choices"][0]["text"]);
  auto st = s.post("/v1/completions", json{{"prompt", "What color"}, {"max_tokens", 3}, {"ignore_eos", true}, {"stream", true}}.dump());
  ASSERT_TRUE(st);
  EXPECT_EQ(read_sse(st->body).first, j["choices"][0]["text"].get<std::string>());
  EXPECT_TRUE(s.settles());
}

TEST(HttpServer, EveryBadRequestGetsItsErrorAndTheServerKeepsServing) {
  TestServer& s = shared();
  const json good = image_message(data_url("color-0000.png"), "What color is the shape?");
  expect_error(s.post("/v1/chat/completions", "{\"messages\": [}"), 400);
  expect_error(s.post("/v1/chat/completions", "[1, 2]"), 400);
  expect_error(s.post("/v1/chat/completions", std::string(200, '[')), 400);
  expect_error(s.post("/v1/chat/completions", json{{"messages", "hi"}}.dump()), 400, "messages");
  expect_error(s.post("/v1/chat/completions", json::object().dump()), 400, "messages");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"temperature", "hot"}}.dump()), 400, "temperature");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"temperature", 5}}.dump()), 400, "temperature");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"max_tokens", 0}}.dump()), 400, "max_tokens");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"max_tokens", 1.5}}.dump()), 400, "max_tokens");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"max_tokens", 5000}}.dump()), 400, "max_tokens",
               "context_length_exceeded");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"n", 2}}.dump()), 400, "n");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"stop", 3}}.dump()), 400, "stop");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"stream", "yes"}}.dump()), 400, "stream");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"logprobs", true}}.dump()), 400, "logprobs");
  expect_error(s.post("/v1/chat/completions", json{{"messages", good}, {"model", "gpt-4"}}.dump()), 404, "model",
               "model_not_found");
  expect_error(s.post("/v1/chat/completions", json{{"messages", json::array({{{"role", "wizard"}, {"content", "x"}}})}}.dump()),
               400, "messages");
  // Images: bad base64, not an image, path traversal, outside the folder, remote URL, too large.
  expect_error(s.post("/v1/chat/completions", json{{"messages", image_message("data:image/png;base64,@@@@", "x")}}.dump()),
               400, "messages");
  expect_error(s.post("/v1/chat/completions", json{{"messages", image_message("data:image/png;base64,aGVsbG8=", "x")}}.dump()),
               400, "messages");
  for (const char* p : {"../../etc/passwd", "images/../../README.md", "file:///etc/passwd", "/etc/hostname",
                        "file:///%2e%2e/etc/passwd", "images/no-such.png"}) {
    auto r = s.post("/v1/chat/completions", json{{"messages", image_message(p, "x")}}.dump());
    expect_error(r, 400, "messages");
    EXPECT_EQ(r->body.find("root:"), std::string::npos);
  }
  expect_error(s.post("/v1/chat/completions", json{{"messages", image_message("https://example.com/a.png", "x")}}.dump()),
               400, "messages", "remote_media_unsupported");
  const std::string big = "data:image/png;base64," + std::string(100 << 10, 'A');  // > 64 KiB limit of this server
  expect_error(s.post("/v1/chat/completions", json{{"messages", image_message(big, "x")}}.dump()), 413, "messages");
  expect_error(s.post("/v1/chat/completions", std::string(2 << 20, ' ')), 413);  // body over 1 MiB
  expect_error(s.post("/v1/completions", json{{"prompt", 7}}.dump()), 400, "prompt");
  expect_error(s.post("/v1/completions", json{{"prompt", json::array({1, 999999})}}.dump()), 400, "prompt");
  expect_error(s.post("/v1/completions", json{{"prompt", "x"}, {"echo", true}}.dump()), 400, "echo");
  expect_error(s.post("/v1/completions", json{{"prompt", "a <|image_pad|> b"}}.dump()), 400, "prompt");
  // ... and it still answers.
  auto ok = s.post("/v1/chat/completions", json{{"messages", good}, {"max_tokens", 8}}.dump());
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_TRUE(s.settles());
}

// Many clients at once, more than --max-num-seqs (streams and not, image and text prompts, answers of 8 to 55
// tokens, so sequences join and finish at different steps): each gets its whole answer in order
// (= engine::generate alone) and its finish once, last; then nothing is left in flight or queued and the
// token counters and TTFT / inter-token / e2e histograms add up over all of them.
TEST(HttpServer, ConcurrentClientsEachGetTheirOwnAnswer) {
  constexpr int kClients = 48;
  TestServer s(/*max_num_seqs=*/32, /*max_queue=*/64, 1 << 20, /*http_threads=*/kClients + 8);
  const std::vector<std::string> images = {"color-0000.png", "color-0001.png", "color-0002.png", "color-0003.png",
                                           "color-0004.png", "color-0005.png"};
  const std::vector<std::string> texts = {"What is a red square?", "Name a color.", "Describe a blue circle.",
                                          "Which shape has three sides?"};
  struct Case {
    json messages, reference_messages;  // the image as a data: URL / as a file under the media folder
    std::int64_t max_tokens = 16;
    bool stream = false, ignore_eos = false;
  };
  std::vector<Case> cases(kClients);
  std::map<std::string, std::string> refs;  // reference answer by request
  std::vector<std::string> want(kClients);
  for (int i = 0; i < kClients; ++i) {
    Case& c = cases[static_cast<std::size_t>(i)];
    c.stream = i % 2 == 1;
    if (i % 3 == 0) {  // text, a fixed number of tokens
      const std::string& text = texts[static_cast<std::size_t>(i / 3) % texts.size()];
      c.messages = c.reference_messages = json::array({{{"role", "user"}, {"content", text}}});
      c.max_tokens = 8 + (i * 7) % 48;
      c.ignore_eos = true;
    } else {  // image, 24 tokens or up to the model's own stop
      const std::string& im = images[static_cast<std::size_t>(i) % images.size()];
      c.messages = image_message(data_url(im), "What color is the shape?");
      c.reference_messages = image_message("images/" + im, "What color is the shape?");
      c.ignore_eos = i % 3 == 1;
      c.max_tokens = c.ignore_eos ? 24 : 16;
    }
    const std::string key = c.reference_messages.dump() + std::to_string(c.max_tokens) + std::to_string(c.ignore_eos);
    if (!refs.count(key)) refs[key] = reference(c.reference_messages, c.max_tokens, c.ignore_eos);
    want[static_cast<std::size_t>(i)] = refs[key];
  }
  std::vector<std::string> got(kClients), reasons(kClients);
  std::vector<json> usage(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i)
    threads.emplace_back([&, i] {
      const Case& c = cases[static_cast<std::size_t>(i)];
      json body = {{"messages", c.messages}, {"max_tokens", c.max_tokens}, {"stream", c.stream}, {"ignore_eos", c.ignore_eos}};
      if (c.stream) body["stream_options"] = {{"include_usage", true}};
      auto r = s.post("/v1/chat/completions", body.dump());
      if (!r || r->status != 200) return;
      const auto k = static_cast<std::size_t>(i);
      if (c.stream) {
        std::tie(got[k], reasons[k]) = read_sse(r->body, &usage[k]);
      } else {
        const json j = json::parse(r->body);
        got[k] = j["choices"][0]["message"]["content"];
        reasons[k] = j["choices"][0]["finish_reason"];
        usage[k] = j["usage"];
      }
    });
  for (auto& t : threads) t.join();
  std::int64_t prompt_tokens = 0, completion_tokens = 0;
  for (int i = 0; i < kClients; ++i) {
    const auto k = static_cast<std::size_t>(i);
    EXPECT_EQ(got[k], want[k]) << "client " << i;
    EXPECT_TRUE(reasons[k] == "stop" || reasons[k] == "length") << "client " << i << ": " << reasons[k];
    ASSERT_TRUE(usage[k].is_object()) << "client " << i;
    prompt_tokens += usage[k]["prompt_tokens"].get<std::int64_t>();
    completion_tokens += usage[k]["completion_tokens"].get<std::int64_t>();
  }
  ASSERT_TRUE(s.settles());
  const json m = s.metrics_values();
  EXPECT_EQ(m.value("vlq_queue_length", -1.0), 0);
  EXPECT_EQ(m.value("vlq_time_to_first_token_seconds_count", -1.0), kClients);
  EXPECT_EQ(m.value("vlq_e2e_request_latency_seconds_count", -1.0), kClients);
  EXPECT_EQ(m.value("vlq_time_per_output_token_seconds_count", -1.0), completion_tokens - kClients);
  EXPECT_EQ(m.value("vlq_generation_tokens_total", -1.0), completion_tokens);
  EXPECT_EQ(m.value("vlq_prompt_tokens_total", -1.0), prompt_tokens);
}

TEST(HttpServer, ClientDisconnectMidStreamFreesItsSequence) {
  TestServer& s = shared();
  const double before = s.metrics_values().value("vlq_client_disconnects_total", 0.0);
  for (bool stream : {true, false}) {
    std::atomic<int> chunks{0};
    httplib::Client c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.headers = {{"Authorization", std::string("Bearer ") + kKey}, {"Content-Type", "application/json"}};
    req.body = json{{"prompt", "Count"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", stream}}.dump();
    req.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) { return ++chunks < 2; };
    if (!stream) {  // no body arrives before the end: give up after a moment
      std::thread closer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        c.stop();
      });
      c.send(req);
      closer.join();
    } else {
      c.send(req);
    }
  }
  EXPECT_TRUE(s.settles());
  EXPECT_GE(s.metrics_values().value("vlq_client_disconnects_total", 0.0), before + 1);
}

TEST(HttpServer, QueueFullIs429AndDrainIs503ThenFinishes) {
  auto s = std::make_unique<TestServer>(/*max_num_seqs=*/1, /*max_queue=*/1);
  const std::string longreq = json{{"prompt", "Count"}, {"max_tokens", 800}, {"ignore_eos", true}}.dump();
  std::vector<int> status(3, 0);
  std::vector<std::thread> t;
  for (int i = 0; i < 2; ++i) {
    t.emplace_back([&, i] {
      auto r = s->post("/v1/completions", longreq);
      status[i] = r ? r->status : -1;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto third = s->post("/v1/completions", longreq);  // one runs, one waits: the queue (1) is full
  expect_error(third, 429, "", "queue_full");
  std::thread drainer([&] { s->http->shutdown(std::chrono::milliseconds(30000)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto late = s->post("/v1/completions", longreq);
  if (late) expect_error(late, 503, "", "shutting_down");  // or the listener is already closed
  for (auto& th : t) th.join();
  drainer.join();
  EXPECT_EQ(status[0], 200);
  EXPECT_EQ(status[1], 200);
  s->thread.join();
  s->thread = std::thread([] {});
}

}  // namespace
}  // namespace vlq::server

namespace vlq::server {
namespace {

// Found by a new-user attack run: cpp-httplib's default SO_REUSEPORT let a second server bind the same port
// (connections then alternated between the two), and its 8 KiB cap on form-encoded bodies answered plain
// `curl -d` requests over 8 KiB with a bare 413 although --max-body-mb allows 32 MiB: now 415 saying what to send.
TEST(HttpServer, SecondServerOnTheSamePortIsRefused) {
  TestServer& s = shared();
  engine::LlmEngine& core = *s.core;
  Metrics m;
  AsyncEngine a(core, m, 4);
  ServerOptions so;
  so.port = s.port;
  so.served_model_name = "other";
  HttpServer second(bundle(), a, m, so);
  EXPECT_THROW(second.bind(), IoError);
}

TEST(HttpServer, FormEncodedBodyOverEightKiBIs415NamingTheContentType) {
  TestServer& s = shared();
  json body = {{"model", "tiny"}, {"max_tokens", 2}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  std::string text = body.dump();
  text.insert(text.size() - 1, std::string(20000, ' '));  // whitespace padding inside the object
  expect_error(s.client().Post("/v1/chat/completions", text, "application/x-www-form-urlencoded"), 415, "",
               "unsupported_media_type");
  auto r = s.client().Post("/v1/chat/completions", text, "application/json");  // the same body as JSON is fine
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(s.settles());
}

}  // namespace
}  // namespace vlq::server

namespace vlq::server {
namespace {

// Found by a new-user attack run (2026-12-06): GET on a POST route answered 404 "no route". Now 405 with an
// OpenAI-shaped error and an Allow header naming the route's methods; unknown paths stay 404.
TEST(HttpServer, WrongMethodOnAKnownRouteIs405WithAllow) {
  TestServer& s = shared();
  for (const char* path : {"/v1/chat/completions", "/v1/completions"}) {
    auto r = s.client().Get(path);
    expect_error(r, 405, "", "method_not_allowed");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get_header_value("Allow"), "POST") << path;
  }
  auto m = s.client().Post("/v1/models", "{}", "application/json");
  expect_error(m, 405, "", "method_not_allowed");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->get_header_value("Allow"), "GET, HEAD");
  expect_error(s.client().Get("/v1/nothing"), 404, "", "not_found");
}

}  // namespace
}  // namespace vlq::server

namespace vlq::server {
namespace {

// A TCP connection to the server on loopback; -1 when it cannot connect.
int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Appends what arrives on fd to `into` until the server closes (true) or `wait` passes (false).
bool read_for(int fd, std::chrono::milliseconds wait, std::string& into) {
  const auto end = std::chrono::steady_clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;  // closed (or reset)
    into.append(buf, static_cast<std::size_t>(n));
  }
}

// One raw exchange on a fresh loopback socket: sends `request`, reads until the server closes or `wait` passes;
// returns what arrived.
std::string raw_exchange(int port, const std::string& request, std::chrono::milliseconds wait) {
  const int fd = connect_loopback(port);
  if (fd < 0) return "";
  (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  read_for(fd, wait, out);
  ::close(fd);
  return out;
}

// A request a refused body may carry, to see whether the server ever serves it: its answer holds "object":"list".
std::string smuggled_get() {
  return std::string("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ") + kKey + "\r\n\r\n";
}

std::string post_head(const std::string& path, const std::string& extra_headers, const std::string& version = "HTTP/1.1") {
  return "POST " + path + " " + version + "\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + kKey +
         "\r\nContent-Type: application/json\r\n" + extra_headers + "\r\n";
}

// Found by an adversarial serve review (2026-12-06): a POST announcing a huge Content-Length got its 413 only
// after the library had read (and dropped) the whole announced body; a POST with neither Content-Length nor
// chunking hung until the client gave up; "Content-Length: abc" was read as 0.
TEST(HttpServer, FramingIsCheckedBeforeAnyBodyIsRead) {
  TestServer& s = shared();
  using namespace std::chrono_literals;
  const std::string huge = raw_exchange(s.port, post_head("/v1/completions", "Content-Length: 1000000000000\r\n") + "{", 3s);
  EXPECT_EQ(huge.rfind("HTTP/1.1 413", 0), 0u) << huge;
  EXPECT_NE(huge.find("request_too_large"), std::string::npos) << huge;
  const std::string none = raw_exchange(s.port, post_head("/v1/completions", "") + "{\"prompt\": \"x\"}", 3s);
  EXPECT_EQ(none.rfind("HTTP/1.1 411", 0), 0u) << none;
  const std::string word = raw_exchange(s.port, post_head("/v1/completions", "Content-Length: abc\r\n"), 3s);
  EXPECT_EQ(word.rfind("HTTP/1.1 400", 0), 0u) << word;
  EXPECT_NE(word.find("bad_content_length"), std::string::npos) << word;
  // One "Connection: close" header, not two, when the client asked for it itself.
  const std::string closed =
      raw_exchange(s.port, post_head("/v1/completions", "Connection: close\r\nContent-Length: 1000000000000\r\n"), 3s);
  std::size_t n = 0;
  for (std::size_t at = closed.find("Connection: close"); at != std::string::npos; at = closed.find("Connection: close", at + 1)) ++n;
  EXPECT_EQ(n, 1u) << closed;
  EXPECT_TRUE(s.settles());
}

// HTTP/1.0 has no chunked transfer coding: a whole answer carries Content-Length, a stream ends with the connection.
TEST(HttpServer, Http10ClientsGetNoChunkedEncoding) {
  TestServer& s = shared();
  using namespace std::chrono_literals;
  for (bool stream : {false, true}) {
    const std::string body = json{{"prompt", "Count"}, {"max_tokens", 6}, {"stream", stream}}.dump();
    const std::string r = raw_exchange(
        s.port, post_head("/v1/completions", "Content-Length: " + std::to_string(body.size()) + "\r\n", "HTTP/1.0") + body, 30s);
    ASSERT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
    const std::size_t head_end = r.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos) << r;
    const std::string head = r.substr(0, head_end), payload = r.substr(head_end + 4);
    EXPECT_EQ(head.find("chunked"), std::string::npos) << head;
    if (stream) {
      EXPECT_NE(payload.find("data: [DONE]"), std::string::npos) << payload;
    } else {
      EXPECT_NE(head.find("Content-Length: " + std::to_string(payload.size())), std::string::npos) << head;
      EXPECT_TRUE(json::parse(payload, nullptr, false).is_object()) << payload;
    }
  }
  EXPECT_TRUE(s.settles());
}

// RFC 9110: the auth scheme is case-insensitive; RFC 6750: a 401 names the scheme in WWW-Authenticate.
TEST(HttpServer, BearerSchemeIsCaseInsensitiveAndA401SaysWhichScheme) {
  TestServer& s = shared();
  httplib::Client c("127.0.0.1", s.port);
  for (const char* scheme : {"bearer ", "BEARER ", "Bearer  "}) {
    auto r = c.Get("/v1/models", {{"Authorization", std::string(scheme) + kKey}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << scheme;
  }
  for (const std::string bad : {std::string("Basic ") + kKey, std::string("Bearer ") + kKey + "x", std::string(kKey), std::string("Bearer")}) {
    auto r = c.Get("/v1/models", {{"Authorization", bad}});
    expect_error(r, 401, "", "invalid_api_key");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u);
  }
}

// Found by an adversarial serve review (2026-12-06): about a dozen clients that sent headers and part of a
// body, then nothing, held every connection thread of the fixed pool, so /health and every new request waited
// ~30 s each. The pool now grows with the connections: others are served at once.
TEST(HttpServer, StalledClientsDoNotStarveOthers) {
  auto s = std::make_unique<TestServer>(4, 16, std::size_t{1} << 20, /*http_threads=*/2);
  std::vector<int> fds;
  const std::string partial = post_head("/v1/completions", "Content-Length: 100000\r\n") + "{\"prompt\":";
  for (int i = 0; i < 40; ++i) {
    const int fd = connect_loopback(s->port);
    ASSERT_GE(fd, 0);
    (void)!::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  httplib::Client c("127.0.0.1", s->port);
  c.set_read_timeout(3, 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto h = c.Get("/health");
  ASSERT_TRUE(h) << "no answer within 3 s while 40 clients stall";
  EXPECT_EQ(h->status, 200);
  auto r = s->post("/v1/completions", json{{"prompt", "Count"}, {"max_tokens", 3}}.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  for (int fd : fds) ::close(fd);
}

// Adversarial serve review: a NUL inside a local image path was cut at the system call (a.png\0x opened
// a.png); stop_token_ids beyond the vocabulary were accepted and could never match.
TEST(HttpServer, NulInAnImagePathAndOutOfVocabularyStopIdsAre400) {
  TestServer& s = shared();
  const std::string nul = std::string("images/color-0000.png") + '\0' + ".txt";
  expect_error(s.post("/v1/chat/completions", json{{"messages", image_message(nul, "x")}}.dump()), 400, "messages");
  expect_error(s.post("/v1/completions", json{{"prompt", "x"}, {"stop_token_ids", json::array({1000000000})}}.dump()),
               400, "stop_token_ids");
  EXPECT_TRUE(s.settles());
}


// Sends `first`, reads for `wait`, then sends `second` on the same socket (if it is still open) and reads until
// the server closes or `wait` passes again: {answer to first, what came after second, closed after first}.
struct TwoStep {
  std::string first, second;
  bool closed = false;
};
TwoStep two_step(int port, const std::string& first, const std::string& second, std::chrono::milliseconds wait) {
  TwoStep out;
  const int fd = connect_loopback(port);
  if (fd < 0) return out;
  (void)!::send(fd, first.data(), first.size(), MSG_NOSIGNAL);
  out.closed = read_for(fd, wait, out.first);
  if (!out.closed) {
    (void)!::send(fd, second.data(), second.size(), MSG_NOSIGNAL);
    read_for(fd, wait, out.second);
  }
  ::close(fd);
  return out;
}

// Found by an adversarial serve review (2026-12-07): after an early refusal whose body stayed unread (413 for a
// huge Content-Length, 400 for a bad one, 411) the connection stayed open — cpp-httplib 0.11 honours only the
// request's "Connection: close" — and the next bytes (the body) were served as a new request; a 401 for a POST
// did the same with its body. Chunked bodies escaped --max-body-mb (512 MiB read, echoed back in a 400).
// Conflicting Content-Length headers were accepted (the first won).
TEST(HttpServer, RefusedBodiesAreNeverServedAsRequests) {
  TestServer& s = shared();
  using namespace std::chrono_literals;
  const std::string smuggled = smuggled_get();
  for (const std::string head : {std::string("Content-Length: 1000000000000\r\n"), std::string("Content-Length: abc\r\n"),
                                 std::string(""), std::string("Transfer-Encoding: chunked\r\n"),
                                 std::string("Content-Length: 5\r\nContent-Length: 38\r\n")}) {
    const TwoStep t = two_step(s.port, post_head("/v1/completions", head), smuggled, 1500ms);
    EXPECT_TRUE(t.first.rfind("HTTP/1.1 4", 0) == 0) << head << t.first;
    EXPECT_TRUE(t.closed) << "the connection stayed open after: " << head << t.first;
    EXPECT_EQ(t.second.find("\"object\":\"list\""), std::string::npos) << "the body was served as a request: " << head;
  }
  const TwoStep chunked = two_step(s.port, post_head("/v1/completions", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n", "", 1500ms);
  EXPECT_NE(chunked.first.find("length_required"), std::string::npos) << chunked.first;
  const TwoStep twice = two_step(s.port, post_head("/v1/completions", "Content-Length: 5\r\nContent-Length: 38\r\n"), "", 1500ms);
  EXPECT_NE(twice.first.find("conflicting Content-Length"), std::string::npos) << twice.first;
  // A POST with a wrong key: its body is read, then refused; the body is not a request either.
  const std::string bad_key = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
                              "Content-Type: application/json\r\nContent-Length: " + std::to_string(smuggled.size()) +
                              "\r\n\r\n" + smuggled;
  const std::string r = raw_exchange(s.port, bad_key, 1500ms);
  EXPECT_EQ(r.rfind("HTTP/1.1 401", 0), 0u) << r;
  EXPECT_EQ(r.find("\"object\":\"list\""), std::string::npos) << r;
  // A long invalid body gets a short error.
  const std::string junk = "{\"prompt\": \"" + std::string(200000, 'a');
  auto long_err = s.post("/v1/completions", junk);
  expect_error(long_err, 400);
  EXPECT_LT(long_err->body.size(), 1000u);
  EXPECT_TRUE(s.settles());
}

// HTTP/1.0 with "Connection: Keep-Alive": a whole answer says keep-alive (the connection is kept); a stream
// ends with the connection even so.
TEST(HttpServer, Http10KeepAliveIsAnsweredConsistently) {
  TestServer& s = shared();
  using namespace std::chrono_literals;
  for (bool stream : {false, true}) {
    const std::string body = json{{"prompt", "Count"}, {"max_tokens", 4}, {"stream", stream}}.dump();
    const auto t0 = std::chrono::steady_clock::now();
    const TwoStep t = two_step(
        s.port,
        post_head("/v1/completions", "Connection: Keep-Alive\r\nContent-Length: " + std::to_string(body.size()) + "\r\n",
                  "HTTP/1.0") + body,
        "", 3000ms);
    ASSERT_EQ(t.first.rfind("HTTP/1.1 200", 0), 0u) << t.first;
    if (stream) {
      EXPECT_TRUE(t.closed);
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 2500ms) << "the stream did not end with the connection";
      EXPECT_NE(t.first.find("data: [DONE]"), std::string::npos);
    } else {
      EXPECT_FALSE(t.closed);
      EXPECT_NE(t.first.find("Connection: keep-alive"), std::string::npos) << t.first;
    }
  }
  EXPECT_TRUE(s.settles());
}


// Found by a desk review (2026-12-08): the framing checks covered POST only — a chunked PUT (any path, no key)
// was read without a limit, a GET's body was read as the next request; the library's own 400 for a body that
// stalled kept the connection (the rest of the body then became a request); `Expect: 100-continue` invited an
// oversized body that was then refused unread.
TEST(HttpServer, EveryMethodAndTheLibrarysOwnRefusalsEndTheConnection) {
  using namespace std::chrono_literals;
  auto s = std::make_unique<TestServer>(4, 16, std::size_t{1} << 20, 16, std::chrono::seconds(1));
  const std::string smuggled = smuggled_get();
  // PUT / DELETE / OPTIONS: 405 at once, connection ended.
  for (const char* m : {"PUT", "DELETE", "OPTIONS", "PATCH"}) {
    const TwoStep t = two_step(s->port, std::string(m) + " /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                               smuggled, 1500ms);
    EXPECT_EQ(t.first.rfind("HTTP/1.1 405", 0), 0u) << m << t.first;
    EXPECT_TRUE(t.closed) << m;
    EXPECT_EQ(t.second.find("\"object\":\"list\""), std::string::npos) << m;
  }
  // A GET with a body is answered, and its body is never a request.
  const TwoStep get = two_step(s->port, "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                             std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled, "", 1500ms);
  EXPECT_EQ(get.first.rfind("HTTP/1.1 200", 0), 0u) << get.first;
  EXPECT_EQ(get.first.find("\"object\":\"list\""), std::string::npos) << get.first;
  EXPECT_TRUE(get.closed);
  // A POST body that stalls: the library's 400 after the receive timeout (1 s here), then the connection ends.
  const TwoStep stall = two_step(s->port, post_head("/v1/completions", "Content-Length: 500\r\n") + "{\"prompt\":", smuggled, 3000ms);
  EXPECT_EQ(stall.first.rfind("HTTP/1.1 400", 0), 0u) << stall.first;
  EXPECT_TRUE(stall.closed) << stall.first;
  // Expect: 100-continue with a body far over the limit: 413 instead of "100 Continue".
  const std::string r = raw_exchange(s->port, post_head("/v1/completions", "Expect: 100-continue\r\nContent-Length: 1000000000\r\n"), 1500ms);
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  EXPECT_EQ(r.find("100 Continue"), std::string::npos) << r;
  // ... and a small one is still invited and served.
  const std::string body = json{{"prompt", "Count"}, {"max_tokens", 2}}.dump();
  const std::string ok = raw_exchange(s->port, post_head("/v1/completions", "Connection: close\r\nExpect: 100-continue\r\nContent-Length: " +
                                                                       std::to_string(body.size()) + "\r\n") + body, 5000ms);
  EXPECT_NE(ok.find("HTTP/1.1 200"), std::string::npos) << ok;
  EXPECT_TRUE(s->settles());
}


// Desk review (2026-12-08): an HTTP/1.0 client gets its whole answer with a length, so the server waits for the
// end before writing; one that left meanwhile was not noticed and its generation ran to max_tokens.
TEST(HttpServer, Http10ClientThatLeavesFreesItsSequence) {
  TestServer& s = shared();
  const double before = s.metrics_values().value("vlq_client_disconnects_total", 0.0);
  const std::string body = json{{"prompt", "Count"}, {"max_tokens", 2000}, {"ignore_eos", true}}.dump();
  const auto t0 = std::chrono::steady_clock::now();
  (void)raw_exchange(s.port, post_head("/v1/completions", "Content-Length: " + std::to_string(body.size()) + "\r\n", "HTTP/1.0") + body,
                     std::chrono::milliseconds(150));
  EXPECT_TRUE(s.settles());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4)) << "ran to max_tokens";
  EXPECT_GE(s.metrics_values().value("vlq_client_disconnects_total", 0.0), before + 1);
}

}  // namespace
}  // namespace vlq::server
