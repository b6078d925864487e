// Tests for the chat-template Jinja interpreter against Python jinja2 goldens rendered the way transformers
// does (tools/make_chat_template_golden.py): Qwen2.5-VL and Qwen3 templates, a feature matrix, model-folder
// loading, and typed errors with line/column.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/text/chat_template.h"

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using vlq::text::ChatTemplate;
using vlq::text::ChatTemplateOptions;
using vlq::text::TemplateError;

namespace {

const fs::path kGolden = fs::path(VLQ_SOURCE_DIR) / "tests/data/golden/chat_template";
const fs::path kTiny = fs::path(VLQ_SOURCE_DIR) / "tests/data/tiny";

ordered_json load(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in) << p;
  return ordered_json::parse(in);
}

void check_chat_golden(const fs::path& file, const ChatTemplate& tmpl) {
  const ordered_json g = load(file);
  ASSERT_GE(g["cases"].size(), 4u);
  for (const auto& c : g["cases"]) {
    ChatTemplateOptions opt;
    opt.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    if (c.contains("tools")) opt.tools = c["tools"];
    if (c.contains("extra")) opt.extra = c["extra"];
    const std::string name = c["name"];
    if (c.contains("expected")) {
      std::string got;
      try {
        got = tmpl.render(c["messages"], opt);
      } catch (const std::exception& e) {
        ADD_FAILURE() << file.filename() << " case " << name << " threw: " << e.what();
        continue;
      }
      EXPECT_EQ(got, c["expected"].get<std::string>()) << file.filename() << " case " << name;
    } else {
      EXPECT_THROW(tmpl.render(c["messages"], opt), TemplateError)
          << file.filename() << " case " << name << " (Python: " << c["error"].get<std::string>() << ")";
    }
  }
}

TEST(ChatTemplate, Qwen25VlGoldens) {
  const ordered_json g = load(kGolden / "qwen2_5_vl.json");
  EXPECT_EQ(g["template"].get<std::string>(), std::string(vlq::text::qwen2_5_vl_default_chat_template()));
  const ChatTemplate t(g["template"].get<std::string>(), "qwen2_5_vl.json");
  check_chat_golden(kGolden / "qwen2_5_vl.json", t);
}

TEST(ChatTemplate, Qwen3Goldens) {
  const ordered_json g = load(kGolden / "qwen3.json");
  const ChatTemplate t(g["template"].get<std::string>(), "qwen3.json");
  check_chat_golden(kGolden / "qwen3.json", t);
}

TEST(ChatTemplate, Qwen25ToolTemplateGoldens) {
  const ordered_json g = load(kGolden / "qwen2_5_tools.json");
  const ChatTemplate t(g["template"].get<std::string>(), "qwen2_5_tools.json");
  check_chat_golden(kGolden / "qwen2_5_tools.json", t);
}

TEST(ChatTemplate, FeatureGoldens) {
  const ordered_json g = load(kGolden / "features.json");
  ASSERT_GE(g["cases"].size(), 30u);
  for (const auto& c : g["cases"]) {
    const std::string name = c["name"];
    const std::string src = c["template"];
    if (c.contains("expected")) {
      try {
        const ChatTemplate t(src, name);
        EXPECT_EQ(t.render_variables(c["vars"]), c["expected"].get<std::string>()) << "case " << name;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "case " << name << " threw: " << e.what();
      }
    } else {
      EXPECT_THROW(ChatTemplate(src, name).render_variables(c["vars"]), TemplateError)
          << "case " << name << " (Python: " << c["error"].get<std::string>() << ")";
    }
  }
}

TEST(ChatTemplate, ErrorsCarryLineAndColumn) {
  try {
    ChatTemplate t("line one\n  {{ 1 + }}", "t.jinja");
    FAIL() << "no syntax error";
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.column(), 10);
    EXPECT_NE(std::string(e.what()).find("t.jinja:2:10"), std::string::npos) << e.what();
  }
  try {
    ChatTemplate t("{% for m in messages %}\n{% if m.role == 'bad' %}{{ raise_exception('Role ' + m.role + ' not allowed') }}{% endif %}{% endfor %}",
                   "r.jinja");
    t.render(ordered_json::parse(R"([{"role": "user", "content": "x"}, {"role": "bad", "content": "y"}])"));
    FAIL() << "no runtime error";
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_NE(std::string(e.what()).find("Role bad not allowed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("r.jinja:2:"), std::string::npos) << e.what();
  }
  try {
    ChatTemplate t("{% if x %}\n\n{{ x.y.z }}{% endif %}", "u.jinja");
    t.render_variables(ordered_json::parse(R"({"x": {"a": 1}})"));
    FAIL() << "no undefined error";
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line(), 3);
    EXPECT_NE(std::string(e.what()).find("has no attribute 'y'"), std::string::npos) << e.what();
  }
  // TemplateError is a FormatError (the CLI maps it to exit code 3).
  EXPECT_THROW(ChatTemplate("{% endfor %}", "x"), vlq::FormatError);
}

TEST(ChatTemplate, HostileTemplatesFailCleanly) {
  const std::string deep_parens = std::string(5000, '(') + "1" + std::string(5000, ')');
  EXPECT_THROW(ChatTemplate("{{ " + deep_parens + " }}", "deep"), TemplateError);
  std::string deep_ifs;
  for (int i = 0; i < 2000; ++i) deep_ifs += "{% if true %}";
  EXPECT_THROW(ChatTemplate(deep_ifs, "ifs"), TemplateError);
  EXPECT_THROW(ChatTemplate("{{ " + std::string(5000, '-') + "1 }}", "neg"), TemplateError);
  EXPECT_THROW(ChatTemplate("{{ " + [] { std::string s; for (int i = 0; i < 3000; ++i) s += "not "; return s; }() + "x }}", "not"),
               TemplateError);
  const ChatTemplate cyc("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", "cyc");
  EXPECT_THROW(cyc.render_variables(ordered_json::object()), TemplateError);
  const ChatTemplate cyc_json("{% set ns = namespace() %}{% set ns.me = ns %}{{ {'a': ns}|tojson }}", "cycj");
  EXPECT_THROW(cyc_json.render_variables(ordered_json::object()), TemplateError);
  const ChatTemplate big("{% for i in range(100000000) %}{% endfor %}", "big");
  EXPECT_THROW(big.render_variables(ordered_json::object()), TemplateError);
  const ChatTemplate loops("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "loops");
  EXPECT_THROW(loops.render_variables(ordered_json::object()), TemplateError);
  const ChatTemplate rec("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "rec");
  EXPECT_THROW(rec.render_variables(ordered_json::object()), TemplateError);
  const ChatTemplate rep("{{ ([1] * 100000) * 100000 }}", "rep");
  EXPECT_THROW(rep.render_variables(ordered_json::object()), TemplateError);
  // Found by fuzz/jinja_fuzz.cpp: 64-bit overflow is an error, bad literals are syntax errors.
  for (const char* src : {"{{ 270 ** 60 }}", "{{ 9223372036854775807 + 1 }}", "{{ -(-9223372036854775807 - 1) }}",
                          "{{ '%99999999s' % 'x' }}", "{{ 'x'|indent(100000000) }}"})
    EXPECT_THROW(ChatTemplate(src, "ovf").render_variables(ordered_json::object()), TemplateError) << src;
  EXPECT_THROW(ChatTemplate("{{ 0x }}", "hex"), TemplateError);
  EXPECT_THROW(ChatTemplate("{{ 99999999999999999999 }}", "big"), TemplateError);
  EXPECT_EQ(ChatTemplate("{{ (-1) ** 7 }} {{ 2 ** 62 }} {{ 0 ** 0 }}", "pow").render_variables(ordered_json::object()),
            "-1 4611686018427387904 1");
}

// ---- loading from model folders ----------------------------------------------------------------------

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("vlq_chat_test_" + std::to_string(::getpid()) + "_" + tag);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

const ordered_json kImageMessages = ordered_json::parse(
    R"([{"role": "user", "content": [{"type": "image", "image": "a.jpg"}, {"type": "text", "text": "Describe this image."}]}])");
const std::string kImagePrompt =
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|>"
    "<|vision_end|>Describe this image.<|im_end|>\n<|im_start|>assistant\n";

TEST(ChatTemplate, LoadsEveryTinyCheckpointForm) {
  ChatTemplateOptions opt;
  opt.add_generation_prompt = true;
  for (const char* dir : {"qwen2_5_vl-bf16-hf452", "qwen2_5_vl-bf16-legacy", "qwen2_5_vl-bf16-v5", "qwen2_5_vl-fp8-modelopt"}) {
    const ChatTemplate t = ChatTemplate::from_model_dir(kTiny / dir);
    EXPECT_EQ(t.render(kImageMessages, opt), kImagePrompt) << dir << " from " << t.origin();
  }
  EXPECT_NE(ChatTemplate::from_model_dir(kTiny / "qwen2_5_vl-bf16-legacy").origin().find("chat_template.json"),
            std::string::npos);
  EXPECT_NE(ChatTemplate::from_model_dir(kTiny / "qwen2_5_vl-bf16-hf452").origin().find("chat_template.jinja"),
            std::string::npos);
}

TEST(ChatTemplate, DefaultWhenNoTemplateAndTokenizerConfigForms) {
  const fs::path d = temp_dir("forms");
  ChatTemplateOptions opt;
  opt.add_generation_prompt = true;
  // Nothing: the built-in Qwen2.5-VL template.
  EXPECT_EQ(ChatTemplate::from_model_dir(d).origin(), "built-in Qwen2.5-VL default");
  EXPECT_EQ(ChatTemplate::from_model_dir(d).render(kImageMessages, opt), kImagePrompt);
  // tokenizer_config.json with a string template and special tokens (string and AddedToken forms).
  write_file(d / "tokenizer_config.json",
             R"({"eos_token": "<|im_end|>", "bos_token": {"content": "<s>", "__type": "AddedToken"},
                 "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"})");
  EXPECT_EQ(ChatTemplate::from_model_dir(d).render(ordered_json::parse(R"([{"role": "user", "content": "hi"}])")),
            "<s>hi<|im_end|>");
  // A list of named templates.
  write_file(d / "tokenizer_config.json",
             R"({"chat_template": [{"name": "default", "template": "D{{ messages|length }}"},
                                    {"name": "tool_use", "template": "T{{ tools|length }}"}]})");
  EXPECT_EQ(ChatTemplate::from_model_dir(d).render(ordered_json::array()), "D0");
  opt.tools = ordered_json::parse(R"([{"name": "f"}, {"name": "g"}])");
  EXPECT_EQ(ChatTemplate::from_model_dir(d, "tool_use").render(ordered_json::array(), opt), "T2");
  EXPECT_THROW(ChatTemplate::from_model_dir(d, "nope"), vlq::ConfigError);
  // chat_template.jinja wins over tokenizer_config.json.
  write_file(d / "chat_template.jinja", "J{{ add_generation_prompt }}\n");
  EXPECT_EQ(ChatTemplate::from_model_dir(d).render(ordered_json::array(), opt), "JTrue");
  // Broken JSON is a FormatError naming the file.
  fs::remove(d / "chat_template.jinja");
  write_file(d / "tokenizer_config.json", "{\"chat_template\": ");
  try {
    ChatTemplate::from_model_dir(d);
    FAIL() << "no error";
  } catch (const vlq::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
  }
  // A syntax error names the file, line and column.
  fs::remove(d / "tokenizer_config.json");
  write_file(d / "chat_template.jinja", "ok\n{% if %}");
  try {
    ChatTemplate::from_model_dir(d);
    FAIL() << "no error";
  } catch (const TemplateError& e) {
    EXPECT_NE(std::string(e.what()).find("chat_template.jinja:2:"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(ChatTemplate, RealQwen3TokenizerConfig) {
  const fs::path dir = fs::path(VLQ_SOURCE_DIR) / "../shared/data/qwen-tokenizer";
  if (!fs::exists(dir / "tokenizer_config.json")) GTEST_SKIP() << "shared Qwen tokenizer folder not found at " << dir;
  const ChatTemplate t = ChatTemplate::from_model_dir(dir);
  const ordered_json g = load(kGolden / "qwen3.json");
  EXPECT_EQ(t.source(), g["template"].get<std::string>());
  ChatTemplateOptions opt;
  opt.add_generation_prompt = true;
  EXPECT_EQ(t.render(ordered_json::parse(R"([{"role": "user", "content": "Hello!"}])"), opt),
            "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
