// Tests for the Hugging Face metadata parsers (config.json 4.x/4.5x/5.x forms, generation_config.json,
// preprocessor_config.json, tokenizer/chat-template discovery) against transformers-made fixtures.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "vlq/core/error.h"
#include "vlq/formats/hf_config.h"
#include "vlq/io/json.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace vlq::formats;

namespace {

const fs::path kData = fs::path(VLQ_SOURCE_DIR) / "tests" / "data";

json load(const fs::path& p) { return vlq::io::read_json_file(p); }

// Compares a parsed ModelConfig with the values transformers read from the same file.
void expect_matches_oracle(const ModelConfig& c, const json& o) {
  const json& t = o["text"];
  EXPECT_EQ(c.text.hidden_size, t["hidden_size"].get<int64_t>());
  EXPECT_EQ(c.text.intermediate_size, t["intermediate_size"].get<int64_t>());
  EXPECT_EQ(c.text.num_hidden_layers, t["num_hidden_layers"].get<int64_t>());
  EXPECT_EQ(c.text.num_attention_heads, t["num_attention_heads"].get<int64_t>());
  EXPECT_EQ(c.text.num_key_value_heads, t["num_key_value_heads"].get<int64_t>());
  EXPECT_EQ(c.text.head_dim, t["head_dim"].get<int64_t>());
  EXPECT_EQ(c.text.vocab_size, t["vocab_size"].get<int64_t>());
  EXPECT_EQ(c.text.max_position_embeddings, t["max_position_embeddings"].get<int64_t>());
  EXPECT_DOUBLE_EQ(c.text.rms_norm_eps, t["rms_norm_eps"].get<double>());
  EXPECT_DOUBLE_EQ(c.text.rope_theta, t["rope_theta"].get<double>());
  EXPECT_EQ(c.text.mrope_section, t["mrope_section"].get<std::vector<int64_t>>());
  EXPECT_EQ(c.text.tie_word_embeddings, t["tie_word_embeddings"].get<bool>());
  EXPECT_EQ(c.text.dtype, t["dtype"].get<std::string>());
  const json& v = o["vision"];
  EXPECT_EQ(c.vision.depth, v["depth"].get<int64_t>());
  EXPECT_EQ(c.vision.hidden_size, v["hidden_size"].get<int64_t>());
  EXPECT_EQ(c.vision.intermediate_size, v["intermediate_size"].get<int64_t>());
  EXPECT_EQ(c.vision.num_heads, v["num_heads"].get<int64_t>());
  EXPECT_EQ(c.vision.out_hidden_size, v["out_hidden_size"].get<int64_t>());
  EXPECT_EQ(c.vision.patch_size, v["patch_size"].get<int64_t>());
  EXPECT_EQ(c.vision.spatial_merge_size, v["spatial_merge_size"].get<int64_t>());
  EXPECT_EQ(c.vision.temporal_patch_size, v["temporal_patch_size"].get<int64_t>());
  EXPECT_EQ(c.vision.window_size, v["window_size"].get<int64_t>());
  EXPECT_EQ(c.vision.fullatt_block_indexes, v["fullatt_block_indexes"].get<std::vector<int64_t>>());
  EXPECT_EQ(c.vision.tokens_per_second, v["tokens_per_second"].get<int64_t>());
  EXPECT_EQ(c.vision.in_chans, v["in_channels"].get<int64_t>());
  const json& k = o["tokens"];
  EXPECT_EQ(c.tokens.image_token_id, k["image_token_id"].get<int64_t>());
  EXPECT_EQ(c.tokens.video_token_id, k["video_token_id"].get<int64_t>());
  EXPECT_EQ(c.tokens.vision_start_token_id, k["vision_start_token_id"].get<int64_t>());
  EXPECT_EQ(c.tokens.vision_end_token_id, k["vision_end_token_id"].get<int64_t>());
  ASSERT_TRUE(c.tokens.bos_token_id.has_value());
  EXPECT_EQ(*c.tokens.bos_token_id, k["bos_token_id"].get<int64_t>());
  EXPECT_EQ(c.tokens.eos_token_ids, k["eos_token_ids"].get<std::vector<int64_t>>());
}

// Runs f and returns the error's message; fails the test if f does not throw E.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception";
  return "";
}

json minimal_flat() {
  return json::parse(R"({
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 512, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "image_token_id": 510, "video_token_id": 511, "vision_start_token_id": 507, "vision_end_token_id": 508,
    "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                      "out_hidden_size": 64, "fullatt_block_indexes": [1]}})");
}

}  // namespace

TEST(HfConfig, HubFlatAndV5NestedFormsMatchTransformers) {
  for (const char* name : {"qwen2_5_vl_3b", "qwen2_5_vl_7b"}) {
    SCOPED_TRACE(name);
    const json oracle = load(kData / "hf_config" / (std::string(name) + ".expected.json"));
    ModelConfig v4 = load_model_config(kData / "hf_config" / (std::string(name) + ".v4.config.json"));
    EXPECT_EQ(v4.form, ConfigForm::kFlatV4);
    EXPECT_EQ(v4.text.rope_type, "mrope");
    ASSERT_TRUE(v4.tokens.vision_token_id.has_value());
    EXPECT_EQ(*v4.tokens.vision_token_id, 151654);
    EXPECT_TRUE(v4.defaulted.empty()) << v4.defaulted.front();
    expect_matches_oracle(v4, oracle);
    ModelConfig v5 = load_model_config(kData / "hf_config" / (std::string(name) + ".v5.config.json"));
    EXPECT_EQ(v5.form, ConfigForm::kNestedV5);
    EXPECT_EQ(v5.text.rope_type, "default");
    expect_matches_oracle(v5, oracle);
    EXPECT_EQ(v5.architectures, std::vector<std::string>{"Qwen2_5_VLForConditionalGeneration"});
    EXPECT_EQ(v5.model_type, "qwen2_5_vl");
    EXPECT_FALSE(v5.quantization_config.has_value());
  }
}

TEST(HfConfig, TinyCheckpointsCoverAllThreeForms) {
  struct Case { const char* dir; ConfigForm form; const char* ver; };
  for (auto [dir, form, ver] : {Case{"qwen2_5_vl-bf16-v5", ConfigForm::kNestedV5, "5.24.0"},
                                Case{"qwen2_5_vl-bf16-legacy", ConfigForm::kFlatV4, "4.49.0"},
                                Case{"qwen2_5_vl-bf16-hf452", ConfigForm::kFlatWithText, "4.53.1"},
                                Case{"qwen2_5_vl-fp8-modelopt", ConfigForm::kFlatWithText, "4.53.1"}}) {
    SCOPED_TRACE(dir);
    ModelConfig c = load_model_config(kData / "tiny" / dir / "config.json");
    EXPECT_EQ(c.form, form);
    EXPECT_EQ(c.transformers_version, ver);
    EXPECT_EQ(c.text.hidden_size, 64);
    EXPECT_EQ(c.text.intermediate_size, 128);
    EXPECT_EQ(c.text.num_hidden_layers, 2);
    EXPECT_EQ(c.text.num_attention_heads, 4);
    EXPECT_EQ(c.text.num_key_value_heads, 2);
    EXPECT_EQ(c.text.head_dim, 16);
    EXPECT_EQ(c.text.vocab_size, 512);
    EXPECT_EQ(c.text.mrope_section, (std::vector<int64_t>{2, 3, 3}));
    EXPECT_DOUBLE_EQ(c.text.rope_theta, 1e6);
    EXPECT_DOUBLE_EQ(c.text.rms_norm_eps, 1e-6);
    EXPECT_FALSE(c.text.tie_word_embeddings);
    EXPECT_EQ(c.text.dtype, "bfloat16");
    EXPECT_EQ(c.vision.depth, 2);
    EXPECT_EQ(c.vision.hidden_size, 32);
    EXPECT_EQ(c.vision.num_heads, 2);
    EXPECT_EQ(c.vision.out_hidden_size, 64);
    EXPECT_EQ(c.vision.fullatt_block_indexes, std::vector<int64_t>{1});
    EXPECT_EQ(c.vision.tokens_per_second, 2);
    EXPECT_EQ(c.tokens.image_token_id, 510);
    EXPECT_EQ(c.tokens.video_token_id, 511);
    EXPECT_EQ(c.tokens.vision_start_token_id, 507);
    EXPECT_EQ(c.tokens.vision_end_token_id, 508);
    EXPECT_EQ(c.tokens.eos_token_ids, std::vector<int64_t>{500});
    EXPECT_EQ(c.quantization_config.has_value(), std::string(dir).find("fp8") != std::string::npos);
  }
}

TEST(HfConfig, NestedTextConfigWinsOverTopLevel) {
  json j = minimal_flat();
  j["text_config"] = {{"hidden_size", 64}, {"num_hidden_layers", 3}, {"torch_dtype", "float16"}};
  j["torch_dtype"] = "bfloat16";
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.form, ConfigForm::kFlatWithText);
  EXPECT_EQ(c.text.num_hidden_layers, 3);
  EXPECT_EQ(c.text.dtype, "float16");
}

TEST(HfConfig, TieIsTrueIfAnyLevelSaysSo) {
  json j = minimal_flat();
  j["text_config"] = {{"tie_word_embeddings", true}};
  j["tie_word_embeddings"] = false;
  EXPECT_TRUE(parse_model_config(j, "config.json").text.tie_word_embeddings);
  j = minimal_flat();
  EXPECT_FALSE(parse_model_config(j, "config.json").text.tie_word_embeddings);
  EXPECT_NE(std::find(parse_model_config(j, "c").defaulted.begin(), parse_model_config(j, "c").defaulted.end(),
                      "tie_word_embeddings"),
            parse_model_config(j, "c").defaulted.end());
}

TEST(HfConfig, RopeParametersV5AndDefaultsAreRecorded) {
  json j = minimal_flat();
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "default"}, {"mrope_section", {2, 3, 3}}, {"rope_theta", 5e5}};
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_DOUBLE_EQ(c.text.rope_theta, 5e5);
  EXPECT_EQ(c.text.rope_type, "default");
  // Absent keys take the transformers class default and are listed.
  EXPECT_DOUBLE_EQ(c.text.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.vision.window_size, 112);
  auto has = [&](const std::string& k) {
    return std::find(c.defaulted.begin(), c.defaulted.end(), k) != c.defaulted.end();
  };
  EXPECT_TRUE(has("text.rms_norm_eps"));
  EXPECT_TRUE(has("vision.window_size"));
  EXPECT_FALSE(has("text.rope_theta"));
  EXPECT_FALSE(has("vision.fullatt_block_indexes"));
}

TEST(HfConfig, MissingRequiredKeysNameFileAndKey) {
  json j = minimal_flat();
  j.erase("num_key_value_heads");
  std::string m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "/x/config.json"); });
  EXPECT_NE(m.find("/x/config.json"), std::string::npos) << m;
  EXPECT_NE(m.find("num_key_value_heads"), std::string::npos) << m;
  EXPECT_NE(m.find("missing required key"), std::string::npos) << m;

  j = minimal_flat();
  j["text_config"] = json::object();
  j.erase("hidden_size");
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("text_config.hidden_size or hidden_size"), std::string::npos) << m;

  j = minimal_flat();
  j["vision_config"].erase("depth");
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("vision_config.depth"), std::string::npos) << m;

  j = minimal_flat();
  j.erase("vision_config");
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("vision_config"), std::string::npos) << m;

  j = minimal_flat();
  j["rope_scaling"].erase("mrope_section");
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("rope_scaling.mrope_section"), std::string::npos) << m;

  j = minimal_flat();
  j.erase("rope_scaling");
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("rope_parameters"), std::string::npos) << m;
}

TEST(HfConfig, WrongTypesAndInconsistentValuesAreConfigErrors) {
  json j = minimal_flat();
  j["hidden_size"] = "64";
  std::string m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("hidden_size"), std::string::npos) << m;
  EXPECT_NE(m.find("string"), std::string::npos) << m;

  j = minimal_flat();
  j["rope_scaling"]["mrope_section"] = {16, 24, 24};
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("head_dim/2 = 8"), std::string::npos) << m;

  j = minimal_flat();
  j["vision_config"]["fullatt_block_indexes"] = {7, 15};
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("fullatt_block_indexes"), std::string::npos) << m;

  j = minimal_flat();
  j["image_token_id"] = 151655;  // outside the 512-row vocabulary
  m = error_of<vlq::ConfigError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("image_token_id"), std::string::npos) << m;

  j = minimal_flat();
  j["num_key_value_heads"] = 3;
  EXPECT_THROW(parse_model_config(j, "config.json"), vlq::ConfigError);

  j = minimal_flat();
  j["vision_config"]["out_hidden_size"] = 32;
  EXPECT_THROW(parse_model_config(j, "config.json"), vlq::ConfigError);
}

TEST(HfConfig, UnknownArchitectureIsUnsupported) {
  json j = minimal_flat();
  j["architectures"] = {"Qwen2VLForConditionalGeneration"};
  j["model_type"] = "qwen2_vl";
  std::string m = error_of<vlq::UnsupportedError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("not supported yet"), std::string::npos) << m;
  EXPECT_NE(m.find("Qwen2VLForConditionalGeneration"), std::string::npos) << m;
  EXPECT_NE(m.find("qwen2_vl"), std::string::npos) << m;

  j = json{{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 4096}};
  m = error_of<vlq::UnsupportedError>([&] { parse_model_config(j, "config.json"); });
  EXPECT_NE(m.find("LlamaForCausalLM"), std::string::npos) << m;

  EXPECT_THROW(parse_model_config(json{{"foo", 1}}, "config.json"), vlq::ConfigError);
  EXPECT_THROW(parse_model_config(json::array(), "config.json"), vlq::FormatError);
}

TEST(HfConfig, GenerationConfigEosIntOrList) {
  GenerationConfig g = load_generation_config(kData / "tiny" / "qwen2_5_vl-bf16-v5" / "generation_config.json");
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{500, 498}));
  EXPECT_EQ(g.bos_token_id, 498);
  EXPECT_EQ(g.pad_token_id, 498);
  EXPECT_EQ(g.do_sample, true);
  EXPECT_DOUBLE_EQ(*g.temperature, 1e-6);
  EXPECT_DOUBLE_EQ(*g.top_p, 0.001);
  EXPECT_EQ(g.top_k, 1);
  EXPECT_DOUBLE_EQ(*g.repetition_penalty, 1.05);
  EXPECT_EQ(g.max_new_tokens, 64);
  EXPECT_FALSE(g.max_length.has_value());
  EXPECT_EQ(g.transformers_version, "5.24.0");

  GenerationConfig g2 = parse_generation_config(json{{"eos_token_id", 151645}}, "generation_config.json");
  EXPECT_EQ(g2.eos_token_ids, std::vector<int64_t>{151645});
  std::string m = error_of<vlq::ConfigError>(
      [&] { parse_generation_config(json{{"temperature", "0.7"}}, "generation_config.json"); });
  EXPECT_NE(m.find("generation_config.json: temperature"), std::string::npos) << m;
}

TEST(HfConfig, PreprocessorPixelsFromMinMaxOrSize) {
  PreprocessorConfig v5 = load_preprocessor_config(kData / "tiny" / "qwen2_5_vl-bf16-v5" / "preprocessor_config.json");
  EXPECT_EQ(v5.min_pixels, 3136);
  EXPECT_EQ(v5.max_pixels, 12845056);
  EXPECT_EQ(v5.pixels_source, "size");
  EXPECT_EQ(v5.patch_size, 14);
  EXPECT_EQ(v5.merge_size, 2);
  EXPECT_EQ(v5.temporal_patch_size, 2);
  EXPECT_DOUBLE_EQ(v5.image_mean[0], 0.48145466);
  EXPECT_DOUBLE_EQ(v5.image_std[2], 0.27577711);
  EXPECT_DOUBLE_EQ(v5.rescale_factor, 0.00392156862745098);

  PreprocessorConfig hub = load_preprocessor_config(kData / "tiny" / "qwen2_5_vl-bf16-legacy" / "preprocessor_config.json");
  EXPECT_EQ(hub.min_pixels, 3136);
  EXPECT_EQ(hub.max_pixels, 12845056);
  EXPECT_EQ(hub.pixels_source, "min_pixels/max_pixels");
  EXPECT_EQ(hub.image_processor_type, "Qwen2_5_VLImageProcessor");

  // min_pixels/max_pixels override size (transformers' rule).
  PreprocessorConfig both = parse_preprocessor_config(
      json::parse(R"({"min_pixels": 100, "max_pixels": 2000, "size": {"shortest_edge": 1, "longest_edge": 9}})"), "p");
  EXPECT_EQ(both.min_pixels, 100);
  EXPECT_EQ(both.max_pixels, 2000);

  std::string m = error_of<vlq::ConfigError>(
      [&] { parse_preprocessor_config(json::parse(R"({"patch_size": 14})"), "preprocessor_config.json"); });
  EXPECT_NE(m.find("preprocessor_config.json: min_pixels or size.shortest_edge"), std::string::npos) << m;
  EXPECT_THROW(parse_preprocessor_config(json::parse(R"({"min_pixels": 10, "max_pixels": 5})"), "p"), vlq::ConfigError);
  EXPECT_THROW(parse_preprocessor_config(json::parse(R"({"min_pixels": 1, "max_pixels": 5, "image_mean": [0.5]})"), "p"),
               vlq::ConfigError);
}

TEST(HfConfig, TokenizerAndChatTemplateDiscovery) {
  TokenizerFiles v5 = find_tokenizer_files(kData / "tiny" / "qwen2_5_vl-bf16-v5");
  EXPECT_FALSE(v5.tokenizer_json.empty());
  EXPECT_FALSE(v5.tokenizer_config_json.empty());
  EXPECT_FALSE(v5.chat_template_jinja.empty());
  EXPECT_TRUE(v5.chat_template_json.empty());
  EXPECT_EQ(v5.chat_template_source, "chat_template.jinja");

  TokenizerFiles hub = find_tokenizer_files(kData / "tiny" / "qwen2_5_vl-bf16-legacy");
  EXPECT_FALSE(hub.chat_template_json.empty());
  EXPECT_EQ(hub.chat_template_source, "chat_template.json");

  // Only tokenizer_config.json carries the template.
  fs::path tmp = fs::temp_directory_path() / ("vlq_tok_test_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  std::ofstream(tmp / "tokenizer_config.json") << R"({"chat_template": "{{ messages }}"})";
  EXPECT_EQ(find_tokenizer_files(tmp).chat_template_source, "tokenizer_config.json");
  std::ofstream(tmp / "tokenizer_config.json") << R"({"eos_token": "x"})";
  EXPECT_EQ(find_tokenizer_files(tmp).chat_template_source, "");
  std::ofstream(tmp / "tokenizer_config.json") << R"({"eos_token": )";
  EXPECT_THROW(find_tokenizer_files(tmp), vlq::FormatError);
  fs::remove_all(tmp);
}

TEST(HfConfig, LoadHfModelFilesReadsEverything) {
  HfModelFiles h = load_hf_model_files(kData / "tiny" / "qwen2_5_vl-fp8-modelopt");
  ASSERT_TRUE(h.config.has_value());
  ASSERT_TRUE(h.generation.has_value());
  ASSERT_TRUE(h.preprocessor.has_value());
  EXPECT_EQ(h.preprocessor_file, "preprocessor_config.json");
  ASSERT_TRUE(h.config->quantization_config.has_value());
  EXPECT_EQ((*h.config->quantization_config)["quant_method"], "modelopt");
  EXPECT_THROW(vlq::io::read_json_file(kData / "does-not-exist.json"), vlq::IoError);
}
