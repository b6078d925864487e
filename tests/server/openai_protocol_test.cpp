// OpenAI request validation and response JSON without a server: field types and ranges, aliases
// (max_completion_tokens, top_k -1), unsupported features, error objects, chunk shapes, SSE framing;
// and the Prometheus histogram / metrics text.
#include <gtest/gtest.h>

#include <random>

#include "vlq/server/metrics.h"
#include "vlq/server/openai_protocol.h"

namespace vlq::server {
namespace {

using ojson = nlohmann::ordered_json;

int status_of(const std::string& body, std::string* param = nullptr) {
  try {
    (void)parse_chat_request(body);
  } catch (const ApiError& e) {
    if (param) *param = e.param();
    return e.status();
  }
  return 200;
}

const std::string kMsgs = R"("messages": [{"role": "user", "content": "hi"}])";

TEST(OpenAiProtocol, ParsesSamplingFieldsAndAliases) {
  const ChatRequest r = parse_chat_request("{" + kMsgs + R"(, "model": "m", "temperature": 0.5, "top_p": 0.9,
      "top_k": -1, "max_tokens": 7, "max_completion_tokens": 9, "stop": ["a", "b"], "seed": 3, "n": 1,
      "stream": true, "stream_options": {"include_usage": true}, "presence_penalty": 0, "user": "x"})");
  EXPECT_EQ(r.model, "m");
  EXPECT_DOUBLE_EQ(*r.sampling.temperature, 0.5);
  EXPECT_EQ(*r.sampling.top_k, 0);
  EXPECT_EQ(*r.sampling.max_tokens, 9);
  EXPECT_EQ(r.sampling.stop.size(), 2u);
  EXPECT_EQ(*r.sampling.seed, 3u);
  EXPECT_TRUE(r.sampling.stream && r.sampling.include_usage);
  const ChatRequest nulls = parse_chat_request("{" + kMsgs + R"(, "temperature": null, "stop": null})");
  EXPECT_FALSE(nulls.sampling.temperature);
  EXPECT_TRUE(nulls.sampling.stop.empty());
}

TEST(OpenAiProtocol, RejectsEachBadFieldNamingIt) {
  struct Case {
    std::string extra, param;
  };
  for (const Case& c : std::vector<Case>{{R"("temperature": 2.5)", "temperature"},
                                         {R"("top_p": 0)", "top_p"},
                                         {R"("top_k": -2)", "top_k"},
                                         {R"("max_tokens": "9")", "max_tokens"},
                                         {R"("max_completion_tokens": 0)", "max_completion_tokens"},
                                         {R"("stop": ["a", ""])", "stop"},
                                         {R"("stop": [1])", "stop"},
                                         {R"("n": 2)", "n"},
                                         {R"("seed": "x")", "seed"},
                                         {R"("logprobs": true)", "logprobs"},
                                         {R"("tools": [{"type": "function"}])", "tools"},
                                         {R"("frequency_penalty": 0.5)", "frequency_penalty"},
                                         {R"("response_format": {"type": "json_object"})", "response_format"},
                                         {R"("stream_options": 1)", "stream_options"},
                                         {R"("model": 5)", "model"}}) {
    std::string param;
    EXPECT_EQ(status_of("{" + kMsgs + ", " + c.extra + "}", &param), 400) << c.extra;
    EXPECT_EQ(param, c.param) << c.extra;
  }
  std::string many = "[";
  for (int i = 0; i < 17; ++i) many += std::string(i ? "," : "") + "\"s" + std::to_string(i) + "\"";
  EXPECT_EQ(status_of("{" + kMsgs + ", \"stop\": " + many + "]}"), 400);
  EXPECT_EQ(status_of("{\"messages\": []}"), 400);
  EXPECT_EQ(status_of("nope"), 400);
  EXPECT_EQ(status_of(std::string(100, '{')), 400);
}

// A number beyond a double (nlohmann throws out_of_range, not parse_error) is the client's error: 400, not 500.
TEST(OpenAiProtocol, NumberOutOfRangeIsA400) {
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "temperature": 1e999})"), 400);
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "max_tokens": -1e400})"), 400);
}

TEST(OpenAiProtocol, CompletionPromptForms) {
  EXPECT_EQ(std::get<std::string>(parse_completion_request(R"({"prompt": "hi"})").prompt), "hi");
  EXPECT_EQ(std::get<std::string>(parse_completion_request(R"({"prompt": ["hi"]})").prompt), "hi");
  EXPECT_EQ(std::get<std::vector<std::int32_t>>(parse_completion_request(R"({"prompt": [1, 2]})").prompt).size(), 2u);
  EXPECT_EQ(std::get<std::vector<std::int32_t>>(parse_completion_request(R"({"prompt": [[5]]})").prompt)[0], 5);
  for (const char* bad : {R"({})", R"({"prompt": ""})", R"({"prompt": ["a", "b"]})", R"({"prompt": [-1]})",
                          R"({"prompt": "x", "echo": true})", R"({"prompt": "x", "best_of": 2})"})
    EXPECT_THROW(parse_completion_request(bad), ApiError) << bad;
}

TEST(OpenAiProtocol, ErrorAndChunkShapes) {
  const ApiError e(401, "no key", "authentication_error", "", "invalid_api_key");
  const ojson j = e.to_json();
  EXPECT_EQ(j.dump(), R"({"error":{"message":"no key","type":"authentication_error","param":null,"code":"invalid_api_key"}})");
  const ojson first = chat_chunk_json("id", "m", 1, "", true, "");
  EXPECT_EQ(first["choices"][0]["delta"].dump(), R"({"role":"assistant","content":""})");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const ojson last = chat_chunk_json("id", "m", 1, "", false, "stop");
  EXPECT_EQ(last["choices"][0]["delta"].dump(), "{}");
  const ojson u = usage_chunk_json("id", "chat.completion.chunk", "m", 1, {3, 4, 0});
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);
  EXPECT_EQ(sse_event(ojson{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(make_response_id("cmpl-").size(), 5u + 24u);
}

TEST(ServerMetrics, HistogramIsCumulativeAndTextHasEveryFamily) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  std::string out;
  h.render("x", out);
  EXPECT_NE(out.find("x_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(out.find("x_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(out.find("x_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("x_count 3\n"), std::string::npos);
  Metrics m;
  m.count_request("/v1/models", 200);
  m.add_tokens(5, 7);
  m.observe_ttft(0.2);
  EngineGauges g;
  g.stats.blocks.used_blocks = 3;
  const std::string text = m.render(g);
  for (const char* name : {"vlq_requests_total{endpoint=\"/v1/models\",status=\"200\"} 1", "vlq_queue_length 0",
                           "vlq_running_sequences 0", "vlq_kv_blocks_used 3", "vlq_generation_tokens_total 7",
                           "vlq_time_to_first_token_seconds_count 1", "vlq_time_per_output_token_seconds_count 0",
                           "# TYPE vlq_generation_throughput_tokens_per_second gauge"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
  EXPECT_GT(m.generation_throughput(), 0.0);
}

}  // namespace
}  // namespace vlq::server

namespace vlq::server {
namespace {

std::string message_of(const std::string& body) {
  try {
    (void)parse_chat_request(body);
  } catch (const ApiError& e) {
    return e.what();
  }
  return "";
}

// Found by an adversarial serve review (2026-12-06): logit_bias was accepted and ignored (the client got
// unbiased samples without knowing); seed 2^70 was called "not an integer"; stop_token_ids 2^32 "must be >= 0".
TEST(OpenAiProtocol, LogitBiasIsRefusedAndRangeMessagesSayTooLarge) {
  std::string param;
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "logit_bias": {"50256": -100}})", &param), 400);
  EXPECT_EQ(param, "logit_bias");
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "logit_bias": 3})", &param), 400);
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "logit_bias": {}})"), 200);  // empty: a no-op
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "logit_bias": null})"), 200);
  EXPECT_NE(message_of("{" + kMsgs + R"(, "seed": 1180591620717411303424})").find("too large"), std::string::npos);
  EXPECT_NE(message_of("{" + kMsgs + R"(, "seed": 18446744073709551615})").find("too large"), std::string::npos);
  EXPECT_NE(message_of("{" + kMsgs + R"(, "seed": 1.5})").find("must be an integer"), std::string::npos);
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "seed": -7})"), 200);
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "seed": 4.0})"), 200);
  const std::string ids = message_of("{" + kMsgs + R"(, "stop_token_ids": [4294967296]})");
  EXPECT_NE(ids.find("4294967296 is not a token id"), std::string::npos) << ids;
  EXPECT_EQ(status_of("{" + kMsgs + R"(, "top_k": 4294967297})"), 200);  // int64: no truncation
}

}  // namespace
}  // namespace vlq::server

namespace vlq::server {
namespace {

// Mutated requests (a fixed seed, so the test is the same everywhere): every field of a full chat and completion
// request replaced by values of every JSON type and odd numbers. Each parse either succeeds or throws ApiError
// with a 4xx status — never another exception (nlohmann type_error, out_of_range, a bad cast) that would be a 500.
TEST(OpenAiProtocol, MutatedRequestsGiveApiErrorsOnly) {
  const ojson chat = ojson::parse(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}], "temperature": 0.5, "top_p": 0.9,
      "top_k": 4, "max_tokens": 8, "max_completion_tokens": 8, "stop": ["x"], "stop_token_ids": [1], "seed": 3,
      "stream": true, "stream_options": {"include_usage": true}, "n": 1, "logprobs": false, "logit_bias": {},
      "repetition_penalty": 1.1, "ignore_eos": false, "presence_penalty": 0, "response_format": {"type": "text"}})");
  const ojson completion = ojson::parse(R"({"model": "m", "prompt": "hi", "max_tokens": 4, "echo": false, "suffix": "",
      "best_of": 1, "stop": "y", "seed": 1})");
  const std::vector<ojson> values = {
      nullptr, true, false, 0, -1, 1, 2, 1.5, -0.0, 1e308, -1e308, 4294967296LL, -9223372036854775807LL - 1,
      18446744073709551615ULL, "", "x", std::string(300, 'z'), ojson::array(), ojson::array({1, "a", nullptr}),
      ojson::object(), ojson{{"type", 5}}, ojson{{"a", ojson::array({ojson::object()})}}};
  std::mt19937 rng(20261208);
  int parsed = 0, refused = 0;
  for (const ojson* base : {&chat, &completion}) {
    std::vector<std::string> keys;
    for (auto it = base->begin(); it != base->end(); ++it) keys.push_back(it.key());
    for (int round = 0; round < 600; ++round) {
      ojson j = *base;
      const int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits; ++e) {
        const std::string& k = keys[rng() % keys.size()];
        if (rng() % 5 == 0) j.erase(k);
        else j[k] = values[rng() % values.size()];
      }
      if (base == &chat && j.contains("messages") && j["messages"].is_array() && !j["messages"].empty() && rng() % 2) {
        ojson& m = j["messages"][0];  // the message itself: role / content replaced
        if (m.is_object()) m[rng() % 2 ? "role" : "content"] = values[rng() % values.size()];
      }
      const std::string body = j.dump();
      try {
        if (base == &chat) (void)parse_chat_request(body);
        else (void)parse_completion_request(body);
        ++parsed;
      } catch (const ApiError& e) {
        EXPECT_GE(e.status(), 400) << body;
        EXPECT_LT(e.status(), 500) << body;
        ++refused;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "not an ApiError: " << e.what() << " for " << body;
      }
    }
  }
  EXPECT_GT(parsed, 20);   // the mutations are not all fatal: the test would not notice a parser that refuses all
  EXPECT_GT(refused, 200);
}

}  // namespace
}  // namespace vlq::server
