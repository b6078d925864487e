// libFuzzer target: the chat-template Jinja interpreter. The input is a template, rendered with a fixed
// message list; only vlq::Error (TemplateError) may escape, and rendering must be deterministic.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "sys"},
    {"role": "user", "content": [{"type": "image", "image": "a.jpg"}, {"type": "text", "text": "hi é"}]},
    {"role": "assistant", "content": "<think>\nx\n</think>\n\nok", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]},
    {"role": "tool", "content": "42"}])");
  const std::string_view src(reinterpret_cast<const char*>(data), size);
  try {
    const vlq::text::ChatTemplate t(src, "fuzz.jinja");
    vlq::text::ChatTemplateOptions opt;
    opt.add_generation_prompt = size % 2;
    opt.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
    const std::string a = t.render(messages, opt);
    const std::string b = t.render(messages, opt);
    if (a != b && src.find("strftime_now") == std::string_view::npos) __builtin_trap();
  } catch (const vlq::Error&) {
  }
  return 0;
}
