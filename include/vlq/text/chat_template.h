// Chat templates: loading a model folder's Jinja chat template and rendering OpenAI-style message lists
// into the prompt text, as transformers' apply_chat_template(tokenize=False) does.
//
// Spec: /work/shared/docs/qwen2_5_vl.md §5 (Qwen2.5-VL template and its rendering); transformers
// `utils/chat_template_utils.py` (_compile_jinja_template: ImmutableSandboxedEnvironment, trim_blocks=True,
// lstrip_blocks=True, loopcontrols, raise_exception, strftime_now, json.dumps-based tojson; render(messages,
// tools, documents, add_generation_prompt, **special tokens, **kwargs)); Jinja 3.1 template semantics.
// Checked against Python jinja2 goldens: tools/make_chat_template_golden.py, tests/data/golden/chat_template/.
// The interpreter covers the Jinja subset listed in src/model/jinja.h.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"

namespace vlq::text {

namespace jinja {
class Template;
}

// A chat template failed to parse or render. where() is "<template origin>:<line>:<column>"; line and
// column (1-based, in the template source) are also available separately. raise_exception("msg") inside
// a template produces this error with what = "template raised an exception: msg".
class TemplateError : public FormatError {
 public:
  TemplateError(ErrorInfo info, int line, int column) : FormatError(std::move(info)), line_(line), column_(column) {}
  int line() const { return line_; }
  int column() const { return column_; }

 private:
  int line_;
  int column_;
};

// Options of one rendering (transformers apply_chat_template keyword arguments).
struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  // `tools` variable (a list of JSON tool schemas); null means not passed (templates see None).
  nlohmann::ordered_json tools = nullptr;
  // `documents` variable; null means not passed.
  nlohmann::ordered_json documents = nullptr;
  // Further template variables (e.g. {"add_vision_id": true, "enable_thinking": false}); they override the
  // special-token variables (bos_token, eos_token, ...) read from tokenizer_config.json.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  // Parses template source. `origin` names it in errors (file path, or e.g. "qwen2_5_vl default").
  // Throws TemplateError on a syntax error.
  ChatTemplate(std::string_view source, std::string origin);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  // The template of a model folder, searched like transformers 5: DIR/chat_template.jinja, then
  // DIR/chat_template.json ("chat_template" string), then DIR/tokenizer_config.json ("chat_template":
  // a string, or a list of {"name", "template"} from which `name` is taken, default "default"); when none
  // exists, the Qwen2.5-VL-Instruct default template. Special-token variables (bos_token, eos_token,
  // pad_token, unk_token) come from tokenizer_config.json when present.
  // Throws IoError (unreadable file), FormatError (invalid JSON or wrong field type, naming the file),
  // ConfigError (named template not in the list), TemplateError (syntax error, naming file:line:column).
  static ChatTemplate from_model_dir(const std::filesystem::path& dir, const std::string& name = "default");

  // Renders `messages` (JSON array of {"role": ..., "content": string | [{"type": "text", "text": ...},
  // {"type": "image", ...}, ...], ...}) to the prompt string. Throws TemplateError on template runtime
  // errors (undefined attribute access, type errors, raise_exception), with line/column.
  std::string render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& options = {}) const;

  // Renders with arbitrary top-level variables (a JSON object), nothing else predefined but the globals.
  std::string render_variables(const nlohmann::ordered_json& variables) const;

  const std::string& source() const { return source_; }
  // Where the template came from: a file path (with ":chat_template" / ":chat_template[name]" for JSON
  // fields) or "built-in Qwen2.5-VL default".
  const std::string& origin() const { return origin_; }

 private:
  std::string source_;
  std::string origin_;
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();
  std::unique_ptr<jinja::Template> tmpl_;
};

// The Qwen2.5-VL-Instruct chat template as shipped in the hub chat_template.json (qwen2_5_vl.md §5).
std::string_view qwen2_5_vl_default_chat_template();

}  // namespace vlq::text
