// OpenAI request validation and response JSON for `vlq serve` (see vlq/server/openai_protocol.h).
#include "vlq/server/openai_protocol.h"

#include <fmt/format.h>

#include <cmath>
#include <random>

namespace vlq::server {

namespace {

using ojson = nlohmann::ordered_json;

constexpr std::size_t kMaxDepth = 64;
constexpr std::size_t kMaxStops = 16;

std::string type_name(const ojson& j) {
  switch (j.type()) {
    case ojson::value_t::null: return "null";
    case ojson::value_t::object: return "an object";
    case ojson::value_t::array: return "an array";
    case ojson::value_t::string: return "a string";
    case ojson::value_t::boolean: return "a boolean";
    case ojson::value_t::number_integer:
    case ojson::value_t::number_unsigned: return "an integer";
    case ojson::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, "invalid_request_error", param); }

// Rejects nesting deeper than kMaxDepth before nlohmann parses it (bounded work on hostile bodies).
void check_depth(const std::string& body) {
  std::size_t depth = 0;
  bool in_string = false, escape = false;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) bad("", fmt::format("request body nests deeper than {} levels (byte {})", kMaxDepth, i));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

ojson parse_body(const std::string& body) {
  check_depth(body);
  ojson j;
  try {
    j = ojson::parse(body);
  } catch (const ojson::parse_error& e) {
    // nlohmann's message quotes the text it last read, which can be most of the body: keep the answer short.
    std::string what = e.what();
    if (what.size() > 240) what = what.substr(0, 200) + " ... (" + std::to_string(what.size() - 200) + " more bytes)";
    bad("", fmt::format("request body is not valid JSON (at byte {}): {}", e.byte, what));
  } catch (const ojson::out_of_range& e) {  // e.g. a number beyond a double (1e999): the client's error, not ours
    bad("", fmt::format("request body has a number out of range: {}", e.what()));
  }
  if (!j.is_object()) bad("", "request body must be a JSON object, got " + type_name(j));
  return j;
}

const ojson* field(const ojson& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

double get_number(const ojson& v, const std::string& key) {
  if (!v.is_number()) bad(key, "'" + key + "' must be a number, got " + type_name(v));
  return v.get<double>();
}

std::int64_t get_int(const ojson& v, const std::string& key) {
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d) bad(key, "'" + key + "' must be an integer");
    // Before the cast (a double beyond int64 has no int64 value): 2^70 is an integer, just too large.
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
      bad(key, fmt::format("'{}' is too large ({:g}; at most 2^63-1)", key, d));
    return static_cast<std::int64_t>(d);
  }
  if (!v.is_number_integer()) bad(key, "'" + key + "' must be an integer, got " + type_name(v));
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    bad(key, fmt::format("'{}' is too large ({}; at most 2^63-1)", key, v.get<std::uint64_t>()));
  return v.get<std::int64_t>();
}

bool get_bool(const ojson& v, const std::string& key) {
  if (!v.is_boolean()) bad(key, "'" + key + "' must be a boolean, got " + type_name(v));
  return v.get<bool>();
}

std::string get_string(const ojson& v, const std::string& key) {
  if (!v.is_string()) bad(key, "'" + key + "' must be a string, got " + type_name(v));
  return v.get<std::string>();
}

void parse_stop(const ojson& j, SamplingRequest& s) {
  const ojson* v = field(j, "stop");
  if (v) {
    if (v->is_string()) {
      s.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > kMaxStops) bad("stop", fmt::format("'stop' has at most {} strings, got {}", kMaxStops, v->size()));
      for (const auto& e : *v) s.stop.push_back(get_string(e, "stop"));
    } else {
      bad("stop", "'stop' must be a string or an array of strings, got " + type_name(*v));
    }
    for (const auto& st : s.stop)
      if (st.empty()) bad("stop", "'stop' strings must not be empty");
  }
  if (const ojson* ids = field(j, "stop_token_ids")) {
    if (!ids->is_array()) bad("stop_token_ids", "'stop_token_ids' must be an array of integers");
    for (const auto& e : *ids) {
      const std::int64_t id = get_int(e, "stop_token_ids");
      if (id < 0 || id > INT32_MAX)
        bad("stop_token_ids", fmt::format("'stop_token_ids' entry {} is not a token id (ids are >= 0 and below the "
                                          "model's vocabulary size)", id));
      s.stop_token_ids.push_back(static_cast<std::int32_t>(id));
    }
  }
}

void reject_unsupported(const ojson& j, bool chat) {
  if (const ojson* n = field(j, "n"); n && get_int(*n, "n") != 1) bad("n", "only n=1 is supported");
  if (const ojson* b = field(j, "best_of"); b && get_int(*b, "best_of") != 1) bad("best_of", "only best_of=1 is supported");
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (const ojson* v = field(j, k); v && get_number(*v, k) != 0.0)
      bad(k, std::string("'") + k + "' is not supported (use repetition_penalty)");
  if (const ojson* v = field(j, "logprobs")) {
    const bool on = v->is_boolean() ? v->get<bool>() : (v->is_number() ? v->get<double>() > 0 : true);
    if (on) bad("logprobs", "logprobs are not supported");
  }
  if (field(j, "top_logprobs")) bad("top_logprobs", "logprobs are not supported");
  // A bias the sampler would silently ignore changes what the client asked for: refuse it (an empty map is a no-op).
  if (const ojson* v = field(j, "logit_bias"); v && !(v->is_object() && v->empty()))
    bad("logit_bias", v->is_object() ? "logit_bias is not supported" : "'logit_bias' must be an object, got " + type_name(*v));
  if (chat) {
    for (const char* k : {"tools", "functions", "tool_choice", "function_call"})
      if (const ojson* v = field(j, k); v && !(v->is_array() && v->empty()) && !(v->is_string() && v->get<std::string>() == "none"))
        bad(k, "tool calling is not supported");
    if (const ojson* rf = field(j, "response_format")) {
      const ojson* t = rf->is_object() ? field(*rf, "type") : nullptr;
      if (!t || !t->is_string() || t->get<std::string>() != "text") bad("response_format", "only response_format {\"type\": \"text\"} is supported");
    }
  } else {
    if (const ojson* e = field(j, "echo"); e && get_bool(*e, "echo")) bad("echo", "echo is not supported");
    if (const ojson* s = field(j, "suffix"); s && !(s->is_string() && s->get<std::string>().empty()))
      bad("suffix", "suffix is not supported");
  }
}

SamplingRequest parse_sampling(const ojson& j, bool chat) {
  reject_unsupported(j, chat);
  SamplingRequest s;
  if (const ojson* v = field(j, "temperature")) {
    s.temperature = get_number(*v, "temperature");
    if (!(*s.temperature >= 0 && *s.temperature <= 2)) bad("temperature", "'temperature' must be in [0, 2]");
  }
  if (const ojson* v = field(j, "top_p")) {
    s.top_p = get_number(*v, "top_p");
    if (!(*s.top_p > 0 && *s.top_p <= 1)) bad("top_p", "'top_p' must be in (0, 1]");
  }
  if (const ojson* v = field(j, "top_k")) {
    s.top_k = get_int(*v, "top_k");
    if (*s.top_k < -1) bad("top_k", "'top_k' must be -1 or 0 (off) or >= 1");
    if (*s.top_k == -1) s.top_k = 0;
  }
  if (const ojson* v = field(j, "repetition_penalty")) {
    s.repetition_penalty = get_number(*v, "repetition_penalty");
    if (!(*s.repetition_penalty > 0 && *s.repetition_penalty <= 10)) bad("repetition_penalty", "'repetition_penalty' must be in (0, 10]");
  }
  for (const char* k : {"max_tokens", "max_completion_tokens"})
    if (const ojson* v = field(j, k)) {
      const std::int64_t m = get_int(*v, k);
      if (m < 1) bad(k, std::string("'") + k + "' must be at least 1");
      if (!s.max_tokens || std::string(k) == "max_completion_tokens") s.max_tokens = m;
    }
  if (const ojson* v = field(j, "seed")) {
    const std::int64_t seed = get_int(*v, "seed");
    s.seed = static_cast<std::uint64_t>(seed);
  }
  parse_stop(j, s);
  if (const ojson* v = field(j, "ignore_eos")) s.ignore_eos = get_bool(*v, "ignore_eos");
  if (const ojson* v = field(j, "stream")) s.stream = get_bool(*v, "stream");
  if (const ojson* v = field(j, "stream_options")) {
    if (!v->is_object()) bad("stream_options", "'stream_options' must be an object, got " + type_name(*v));
    if (const ojson* u = field(*v, "include_usage")) s.include_usage = get_bool(*u, "stream_options.include_usage");
  }
  return s;
}

std::string model_field(const ojson& j) {
  const ojson* m = field(j, "model");
  return m ? get_string(*m, "model") : std::string();
}

ojson usage_json(const Usage& u) {
  ojson j = {{"prompt_tokens", u.prompt_tokens},
             {"completion_tokens", u.completion_tokens},
             {"total_tokens", u.prompt_tokens + u.completion_tokens}};
  if (u.cached_tokens > 0) j["prompt_tokens_details"] = {{"cached_tokens", u.cached_tokens}};
  return j;
}

ojson reason_json(const std::string& r) { return r.empty() ? ojson(nullptr) : ojson(r); }

}  // namespace

ApiError::ApiError(int status, std::string message, std::string type, std::string param, std::string code)
    : std::runtime_error(std::move(message)), status_(status), type_(std::move(type)), param_(std::move(param)),
      code_(std::move(code)) {}

nlohmann::ordered_json ApiError::to_json() const {
  nlohmann::ordered_json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) e["param"] = param_;
  if (!code_.empty()) e["code"] = code_;
  return {{"error", e}};
}

ChatRequest parse_chat_request(const std::string& body) {
  const ojson j = parse_body(body);
  ChatRequest r;
  r.model = model_field(j);
  const ojson* m = field(j, "messages");
  if (!m) bad("messages", "'messages' is required");
  if (!m->is_array()) bad("messages", "'messages' must be an array, got " + type_name(*m));
  if (m->empty()) bad("messages", "'messages' must not be empty");
  r.messages = *m;
  r.sampling = parse_sampling(j, true);
  return r;
}

CompletionRequest parse_completion_request(const std::string& body) {
  const ojson j = parse_body(body);
  CompletionRequest r;
  r.model = model_field(j);
  const ojson* p = field(j, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  const ojson* one = p;
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    if (p->size() != 1) bad("prompt", "only one prompt per request is supported");
    one = &p->front();
  }
  if (one->is_string()) {
    r.prompt = one->get<std::string>();
    if (std::get<std::string>(r.prompt).empty()) bad("prompt", "'prompt' must not be empty");
  } else if (one->is_array()) {
    std::vector<std::int32_t> ids;
    for (const auto& e : *one) {
      const std::int64_t id = get_int(e, "prompt");
      if (id < 0 || id > INT32_MAX) bad("prompt", "token ids in 'prompt' must be >= 0");
      ids.push_back(static_cast<std::int32_t>(id));
    }
    if (ids.empty()) bad("prompt", "'prompt' must not be empty");
    r.prompt = std::move(ids);
  } else {
    bad("prompt", "'prompt' must be a string or an array of token ids, got " + type_name(*one));
  }
  r.sampling = parse_sampling(j, false);
  return r;
}

std::string make_response_id(const std::string& prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return prefix + fmt::format("{:016x}{:08x}", rng(), static_cast<std::uint32_t>(rng()));
}

nlohmann::ordered_json chat_response_json(const std::string& id, const std::string& model, std::int64_t created,
                                  const std::string& text, const std::string& finish_reason, const Usage& usage) {
  ojson choice = {{"index", 0},
                  {"message", {{"role", "assistant"}, {"content", text}}},
                  {"logprobs", nullptr},
                  {"finish_reason", reason_json(finish_reason)}};
  ojson j = {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model},
             {"choices", ojson::array({choice})}, {"usage", usage_json(usage)}};
  return j;
}

nlohmann::ordered_json completion_response_json(const std::string& id, const std::string& model, std::int64_t created,
                                        const std::string& text, const std::string& finish_reason, const Usage& usage) {
  ojson choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  ojson j = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
             {"choices", ojson::array({choice})}, {"usage", usage_json(usage)}};
  return j;
}

nlohmann::ordered_json chat_chunk_json(const std::string& id, const std::string& model, std::int64_t created,
                               const std::string& text, bool role_delta, const std::string& finish_reason) {
  ojson delta = ojson::object();
  if (role_delta) delta["role"] = "assistant";
  if (!text.empty() || role_delta) delta["content"] = text;
  ojson choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  ojson j = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
             {"choices", ojson::array({choice})}};
  return j;
}

nlohmann::ordered_json completion_chunk_json(const std::string& id, const std::string& model, std::int64_t created,
                                     const std::string& text, const std::string& finish_reason) {
  ojson choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  ojson j = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
             {"choices", ojson::array({choice})}};
  return j;
}

nlohmann::ordered_json usage_chunk_json(const std::string& id, const std::string& object, const std::string& model,
                                std::int64_t created, const Usage& usage) {
  ojson j = {{"id", id}, {"object", object}, {"created", created}, {"model", model},
             {"choices", ojson::array()}, {"usage", usage_json(usage)}};
  return j;
}

std::string sse_event(const nlohmann::ordered_json& j) {
  return "data: " + j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n\n";
}

}  // namespace vlq::server
