// The OpenAI HTTP protocol of `vlq serve`, without sockets: request bodies of /v1/chat/completions and
// /v1/completions validated into typed requests (every bad field → ApiError 400 naming the field), and the
// JSON of responses, stream chunks and errors. No tensor code (style-anchors.md practice 14).
// Spec: OpenAI API reference — Chat Completions (create; the chat.completion and chat.completion.chunk
// objects; stream_options.include_usage), Completions (legacy; text_completion), error objects
// {"error": {"message", "type", "param", "code"}}; vLLM's extra sampling fields top_k, repetition_penalty,
// ignore_eos, stop_token_ids.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace vlq::server {

// An error answered to the client: HTTP status + OpenAI error object.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "");
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // {"error": {"message", "type", "param" (null when empty), "code" (null when empty)}}
  nlohmann::ordered_json to_json() const;

 private:
  int status_;
  std::string type_, param_, code_;
};

// Sampling and stopping fields shared by both endpoints. Absent fields stay nullopt (the server applies the
// model's generation defaults).
struct SamplingRequest {
  std::optional<double> temperature;         // [0, 2]
  std::optional<double> top_p;               // (0, 1]
  std::optional<std::int64_t> top_k;         // -1 or 0 = off, else >= 1
  std::optional<double> repetition_penalty;  // > 0
  std::optional<std::int64_t> max_tokens;    // >= 1 (max_completion_tokens wins over max_tokens)
  std::optional<std::uint64_t> seed;
  std::vector<std::string> stop;             // at most 16 non-empty strings
  std::vector<std::int32_t> stop_token_ids;  // >= 0
  bool ignore_eos = false;
  bool stream = false;
  bool include_usage = false;                // stream_options.include_usage
};

struct ChatRequest {
  std::string model;                // "" when absent
  nlohmann::ordered_json messages;  // as sent (engine::parse_messages converts it)
  SamplingRequest sampling;
};

struct CompletionRequest {
  std::string model;
  std::variant<std::string, std::vector<std::int32_t>> prompt;  // text, or token ids
  SamplingRequest sampling;
};

// Parses a request body (JSON text). Throws ApiError 400 with param set: invalid JSON (with the byte
// offset), a non-object body, a field of the wrong type or out of range, n != 1, unsupported features
// (logprobs, tools, echo, suffix, best_of > 1, non-zero presence/frequency penalty).
ChatRequest parse_chat_request(const std::string& body);
CompletionRequest parse_completion_request(const std::string& body);

// A new response id: prefix + 24 random hex characters ("chatcmpl-...", "cmpl-...").
std::string make_response_id(const std::string& prefix);

struct Usage {
  std::int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

// Response bodies. finish_reason: "stop" | "length" | "abort"; created in Unix seconds.
nlohmann::ordered_json chat_response_json(const std::string& id, const std::string& model, std::int64_t created,
                                  const std::string& text, const std::string& finish_reason, const Usage& usage);
nlohmann::ordered_json completion_response_json(const std::string& id, const std::string& model, std::int64_t created,
                                        const std::string& text, const std::string& finish_reason, const Usage& usage);
// One stream chunk. Chat: role_delta adds "role":"assistant" to the delta; finish_reason empty → null.
// usage (when set) gives the final usage-only chunk with "choices": [].
nlohmann::ordered_json chat_chunk_json(const std::string& id, const std::string& model, std::int64_t created,
                               const std::string& text, bool role_delta, const std::string& finish_reason);
nlohmann::ordered_json completion_chunk_json(const std::string& id, const std::string& model, std::int64_t created,
                                     const std::string& text, const std::string& finish_reason);
nlohmann::ordered_json usage_chunk_json(const std::string& id, const std::string& object, const std::string& model,
                                std::int64_t created, const Usage& usage);
// "data: <json>\n\n"
std::string sse_event(const nlohmann::ordered_json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace vlq::server
