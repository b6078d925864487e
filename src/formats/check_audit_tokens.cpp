// The special-token audit of `vlq check` (F25): tokenizer, generation and config token ids against the
// base model, or against the released Qwen2.5-VL-Instruct ids when the vocabulary is the real one.
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "check_internal.h"
#include "vlq/io/json.h"

namespace vlq::formats::check_detail {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct TokenField {
  std::string where;
  json value;
};

std::vector<TokenField> special_token_fields(const fs::path& dir) {
  std::vector<TokenField> f;
  auto add_ids = [&](const std::string& file, const json& j, const std::string& prefix) {
    for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
      if (j.contains(k)) f.push_back({file + " " + prefix + k, j[k]});
  };
  if (auto g = io::read_json_file_if_present(dir / "generation_config.json")) add_ids("generation_config.json", *g, "");
  if (auto c = io::read_json_file_if_present(dir / "config.json")) {
    add_ids("config.json", *c, "");
    if (c->contains("text_config") && (*c)["text_config"].is_object())
      add_ids("config.json", (*c)["text_config"], "text_config.");
  }
  auto tok_str = [](const json& v) -> json {
    if (v.is_object() && v.contains("content")) return v["content"];
    return v;
  };
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    if (auto t = io::read_json_file_if_present(dir / file)) {
      for (const char* k : {"bos_token", "eos_token", "pad_token", "unk_token"})
        if (t->contains(k)) f.push_back({std::string(file) + " " + k, tok_str((*t)[k])});
      if (t->contains("added_tokens_decoder") && (*t)["added_tokens_decoder"].is_object()) {
        json special = json::object();
        for (const auto& [id, tok] : (*t)["added_tokens_decoder"].items())
          if (tok.is_object() && tok.value("special", false)) special[id] = tok.value("content", "");
        f.push_back({std::string(file) + " added_tokens_decoder (special)", special});
      }
    }
  }
  return f;
}

}  // namespace

void audit_tokens(const fs::path& dir, const CheckOptions& opts, std::vector<Finding>& out) {
  if (dir.empty()) return;
  auto mine = special_token_fields(dir);
  if (opts.base_model) {
    auto base = special_token_fields(*opts.base_model);
    std::map<std::string, json> b;
    for (auto& x : base) b[x.where] = x.value;
    for (auto& x : mine) {
      auto it = b.find(x.where);
      if (it == b.end() || it->second == x.value) continue;
      Finding f = make_finding(Severity::kWarning, "special_tokens_changed", x.where,
                       fmt::format("{} is {} in the checkpoint but {} in the base model", x.where, x.value.dump(),
                                   it->second.dump()));
      f.risk = "generation stops at the wrong token or never stops";
      f.hint = "copy the tokenizer/generation files from the base model (vlq convert keeps them byte-identical)";
      f.evidence = "field-bug-classes.md F25";
      out.push_back(f);
    }
    for (const char* file : {"chat_template.jinja", "chat_template.json"}) {
      bool a = fs::exists(dir / file), c = fs::exists(*opts.base_model / file);
      if (a && c && slurp(dir / file) != slurp(*opts.base_model / file)) {
        Finding f = make_finding(Severity::kWarning, "special_tokens_changed", file,
                         std::string(file) + " differs from the base model's");
        f.evidence = "field-bug-classes.md F25";
        out.push_back(f);
      }
    }
    return;
  }
  // Without a base model: the released Qwen2.5-VL-Instruct ids, only for the real 151,665-token vocabulary.
  auto cfg = io::read_json_file_if_present(dir / "config.json");
  if (!cfg) return;
  std::int64_t vocab = 0;
  if (cfg->contains("vocab_size") && (*cfg)["vocab_size"].is_number_integer()) vocab = (*cfg)["vocab_size"];
  else if (cfg->contains("text_config") && (*cfg)["text_config"].contains("vocab_size"))
    vocab = (*cfg)["text_config"]["vocab_size"].get<std::int64_t>();
  if (vocab < 151665) return;
  const std::map<std::string, json> expected = {
      {"config.json eos_token_id", 151645},
      {"config.json bos_token_id", 151643},
      {"generation_config.json eos_token_id", json::array({151645, 151643})},
      {"generation_config.json pad_token_id", 151643},
      {"generation_config.json bos_token_id", 151643},
      {"tokenizer_config.json eos_token", "<|im_end|>"},
      {"tokenizer_config.json pad_token", "<|endoftext|>"},
  };
  for (auto& x : mine) {
    auto it = expected.find(x.where);
    if (it == expected.end() || it->second == x.value) continue;
    Finding f = make_finding(Severity::kWarning, "special_tokens_changed", x.where,
                     fmt::format("{} is {}; released Qwen2.5-VL-Instruct has {}", x.where, x.value.dump(),
                                 it->second.dump()));
    f.risk = "generation stops at the wrong token or never stops";
    f.hint = "pass --base <source model> to compare with the model that was quantized";
    f.evidence = "field-bug-classes.md F25; qwen2_5_vl.md §1.1";
    out.push_back(f);
  }
}

}  // namespace vlq::formats::check_detail
