// libFuzzer target: `vlq serve`'s request validation. The input is a request body, parsed as a chat and as a
// completion request; only ApiError with a 4xx status may escape (anything else would be a 500), and an
// accepted request must satisfy the ranges the parser promises.
#include <cstddef>
#include <cstdint>
#include <string>

#include "vlq/server/openai_protocol.h"

namespace {

void check_sampling(const vlq::server::SamplingRequest& s) {
  if (s.temperature && !(*s.temperature >= 0 && *s.temperature <= 2)) __builtin_trap();
  if (s.top_p && !(*s.top_p > 0 && *s.top_p <= 1)) __builtin_trap();
  if (s.top_k && *s.top_k < 0) __builtin_trap();
  if (s.max_tokens && *s.max_tokens < 1) __builtin_trap();
  for (const auto& st : s.stop)
    if (st.empty()) __builtin_trap();
  for (auto id : s.stop_token_ids)
    if (id < 0) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    check_sampling(vlq::server::parse_chat_request(body).sampling);
  } catch (const vlq::server::ApiError& e) {
    if (e.status() < 400 || e.status() >= 500) __builtin_trap();
  }
  try {
    check_sampling(vlq::server::parse_completion_request(body).sampling);
  } catch (const vlq::server::ApiError& e) {
    if (e.status() < 400 || e.status() >= 500) __builtin_trap();
  }
  return 0;
}
