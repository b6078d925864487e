// Chat-template loading (model folder: chat_template.jinja / chat_template.json / tokenizer_config.json /
// built-in Qwen2.5-VL default) and rendering of message lists (see include/vlq/model/chat_template.h).
#include "vlq/text/chat_template.h"

#include <fstream>
#include <map>
#include <sstream>

#include "text/jinja.h"
#include "vlq/io/json.h"

namespace vlq::text {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

constexpr std::string_view kQwen25VlTemplate =
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
    "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
    "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
    "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ "
    "content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in)
    throw IoError({p.string(), "cannot read chat template file", "", "not readable",
                   "check the file permissions of the model folder"});
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A JSON file of the model folder (io::read_json_file: IoError / FormatError naming the file); only arrays
// and named keys are read from it, so the sorted key order of nlohmann::json does not matter.
ordered_json read_json(const fs::path& p) { return ordered_json(io::read_json_file(p, /*require_object=*/false)); }

// A special-token entry of tokenizer_config.json: a string, or an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

std::string_view qwen2_5_vl_default_chat_template() { return kQwen25VlTemplate; }

ChatTemplate::ChatTemplate(std::string_view source, std::string origin)
    : source_(source), origin_(std::move(origin)), tmpl_(std::make_unique<jinja::Template>(source_, origin_)) {}

ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::from_model_dir(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  ordered_json specials = ordered_json::object();
  ordered_json config_template = nullptr;
  const fs::path config = dir / "tokenizer_config.json";
  if (fs::exists(config, ec)) {
    const ordered_json cfg = read_json(config);
    if (!cfg.is_object()) throw FormatError({config.string(), "expected a JSON object", "an object", cfg.type_name(), ""});
    for (const char* key : {"bos_token", "eos_token", "pad_token", "unk_token"}) {
      if (auto it = cfg.find(key); it != cfg.end())
        if (auto t = token_text(*it)) specials[key] = *t;
    }
    if (auto it = cfg.find("additional_special_tokens"); it != cfg.end() && it->is_array()) {
      ordered_json list = ordered_json::array();
      for (const auto& t : *it)
        if (auto s = token_text(t)) list.push_back(*s);
      specials["additional_special_tokens"] = list;
    }
    if (auto it = cfg.find("chat_template"); it != cfg.end()) config_template = *it;
  }

  auto make = [&](std::string source, std::string origin) {
    ChatTemplate t(source, std::move(origin));
    t.special_tokens_ = specials;
    return t;
  };

  if (name != "default") {
    const fs::path extra = dir / "additional_chat_templates" / (name + ".jinja");
    if (fs::exists(extra, ec)) return make(read_text(extra), extra.string());
  }
  const fs::path jinja_file = dir / "chat_template.jinja";
  if (name == "default" && fs::exists(jinja_file, ec)) return make(read_text(jinja_file), jinja_file.string());
  const fs::path json_file = dir / "chat_template.json";
  if (name == "default" && fs::exists(json_file, ec)) {
    const ordered_json j = read_json(json_file);
    if (!j.is_object() || !j.contains("chat_template") || !j["chat_template"].is_string())
      throw FormatError({json_file.string(), "field 'chat_template' is missing or not a string", "a string",
                         j.is_object() && j.contains("chat_template") ? j["chat_template"].type_name() : "no field", ""});
    return make(j["chat_template"].get<std::string>(), json_file.string() + ":chat_template");
  }
  if (!config_template.is_null()) {
    if (config_template.is_string()) {
      if (name != "default")
        throw ConfigError({config.string(), "chat template '" + name + "' not found", "a named template list",
                           "a single template", "use the default template"});
      return make(config_template.get<std::string>(), config.string() + ":chat_template");
    }
    if (config_template.is_array()) {
      std::string names;
      for (const auto& entry : config_template) {
        if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() || !entry.contains("template") ||
            !entry["template"].is_string())
          throw FormatError({config.string(), "field 'chat_template' list entries must be {\"name\", \"template\"} strings",
                             "", "", ""});
        const std::string n = entry["name"].get<std::string>();
        if (n == name)
          return make(entry["template"].get<std::string>(), config.string() + ":chat_template[" + n + "]");
        names += (names.empty() ? "" : ", ") + n;
      }
      throw ConfigError({config.string(), "chat template '" + name + "' not found", "one of: " + names, name,
                         "pick one of the listed template names"});
    }
    throw FormatError({config.string(), "field 'chat_template' has the wrong type", "a string or a list",
                       config_template.type_name(), ""});
  }
  if (name != "default")
    throw ConfigError({dir.string(), "chat template '" + name + "' not found", "", "no named templates", ""});
  return make(std::string(kQwen25VlTemplate), "built-in Qwen2.5-VL default");
}

std::string ChatTemplate::render(const ordered_json& messages, const ChatTemplateOptions& options) const {
  if (!messages.is_array())
    throw UsageError({origin_, "messages must be a JSON array", "an array of {role, content}", messages.type_name(), ""});
  const jinja::CycleCollector collect;  // declared before vars: it ends after them, when only cycles keep containers
  std::map<std::string, jinja::Value> vars;
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it)
    vars[it.key()] = jinja::Value::from_json(it.value());
  vars["messages"] = jinja::Value::from_json(messages);
  vars["tools"] = jinja::Value::from_json(options.tools);
  vars["documents"] = jinja::Value::from_json(options.documents);
  vars["add_generation_prompt"] = jinja::Value(options.add_generation_prompt);
  if (options.extra.is_object())
    for (auto it = options.extra.begin(); it != options.extra.end(); ++it) vars[it.key()] = jinja::Value::from_json(it.value());
  return tmpl_->render(vars);
}

std::string ChatTemplate::render_variables(const ordered_json& variables) const {
  const jinja::CycleCollector collect;
  std::map<std::string, jinja::Value> vars;
  if (variables.is_object())
    for (auto it = variables.begin(); it != variables.end(); ++it) vars[it.key()] = jinja::Value::from_json(it.value());
  return tmpl_->render(vars);
}

}  // namespace vlq::text
