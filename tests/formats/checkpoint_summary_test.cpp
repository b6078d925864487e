// Tests for the `vlq inspect` library (checkpoint summary) and command: counts on the tiny checkpoints
// against the PyTorch-computed expected.json files, anomaly detection on synthetic tensor lists and
// modified copies, and the CLI's --json output.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "vlq/core/error.h"
#include "vlq/formats/checkpoint_summary.h"
#include "vlq/formats/hf_config.h"
#include "vlq/formats/quant_layout.h"
#include "vlq/io/json.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace vlq::formats;

namespace {

const fs::path kTiny = fs::path(VLQ_SOURCE_DIR) / "tests" / "data" / "tiny";
const char* kTinyNames[] = {"qwen2_5_vl-bf16-v5", "qwen2_5_vl-bf16-hf452", "qwen2_5_vl-bf16-legacy",
                            "qwen2_5_vl-fp8-modelopt"};

json as_json(const CheckpointSummary& s) { return json::parse(summary_to_json(s).dump()); }

const Anomaly* find_anomaly(const CheckpointSummary& s, const std::string& code) {
  for (const auto& a : s.anomalies)
    if (a.code == code) return &a;
  return nullptr;
}

std::string codes(const CheckpointSummary& s) {
  std::string r;
  for (const auto& a : s.anomalies) r += a.severity + ":" + a.code + " ";
  return r;
}

// A temporary copy of a tiny checkpoint that a test may modify.
struct TempCopy {
  fs::path dir;
  explicit TempCopy(const std::string& name) {
    dir = fs::temp_directory_path() / ("vlq_inspect_" + name + "_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::copy(kTiny / name, dir, fs::copy_options::recursive);
  }
  ~TempCopy() { fs::remove_all(dir); }
  json read(const std::string& f) const { return vlq::io::read_json_file(dir / f); }
  void write(const std::string& f, const json& j) const { std::ofstream(dir / f) << j.dump(2); }
};

// Runs a command, returns {exit code, stdout}.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, ""};
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// Synthetic tensor lists ------------------------------------------------------------------------------
TensorMeta T(std::string name, vlq::DType dt, std::vector<int64_t> shape) {
  TensorMeta t{std::move(name), dt, std::move(shape), 0};
  t.nbytes = t.numel() * vlq::dtype_size(dt);
  return t;
}

// A 1-layer, 1-block Qwen2.5-VL tensor list in >= 4.52 naming ("model.language_model."), BF16.
std::vector<TensorMeta> bf16_model(const std::string& lm = "model.language_model.",
                                   const std::string& vis = "model.visual.") {
  using vlq::DType;
  std::vector<TensorMeta> v;
  v.push_back(T(lm + "embed_tokens.weight", DType::BF16, {512, 64}));
  v.push_back(T(lm + "norm.weight", DType::BF16, {64}));
  for (const char* p : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
    v.push_back(T(lm + "layers.0." + p + ".weight", DType::BF16, {64, 64}));
  v.push_back(T(vis + "patch_embed.proj.weight", DType::BF16, {32, 3, 2, 14, 14}));
  for (const char* p : {"attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
    v.push_back(T(vis + "blocks.0." + p + ".weight", DType::BF16, {32, 32}));
  v.push_back(T(vis + "merger.mlp.0.weight", DType::BF16, {128, 128}));
  v.push_back(T("lm_head.weight", DType::BF16, {512, 64}));
  return v;
}

// Quantizes the LM Linears of `v` ModelOpt-style (F8 weight + F32 scalar weight_scale/input_scale).
void quantize_lm(std::vector<TensorMeta>& v, bool vision_too = false) {
  std::vector<TensorMeta> add;
  for (auto& t : v) {
    const bool lm = t.name.find("layers.0.") != std::string::npos;
    const bool vis = vision_too && t.name.find("blocks.0.") != std::string::npos;
    if ((lm || vis) && t.shape.size() == 2) {
      t.dtype = vlq::DType::F8_E4M3;
      t.nbytes = t.numel();
      std::string m = t.name.substr(0, t.name.size() - 7);
      add.push_back(T(m + ".weight_scale", vlq::DType::F32, {}));
      add.push_back(T(m + ".input_scale", vlq::DType::F32, {}));
    }
  }
  v.insert(v.end(), add.begin(), add.end());
}

vlq::formats::HfModelFiles tiny_files(json qc = nullptr, int layers = 1, int depth = 1) {
  json c = vlq::io::read_json_file(kTiny / "qwen2_5_vl-bf16-legacy" / "config.json");
  c["num_hidden_layers"] = layers;
  c["vision_config"]["depth"] = depth;
  c["vision_config"]["fullatt_block_indexes"] = json::array({0});
  if (!qc.is_null()) c["quantization_config"] = qc;
  vlq::formats::HfModelFiles f;
  f.config = vlq::formats::parse_model_config(c, "config.json");
  return f;
}

json modelopt_hf(json exclude = json::array({"lm_head", "model.visual*"}), json kv = "FP8") {
  return json{{"producer", {{"name", "modelopt"}, {"version", "0.35.0"}}},
              {"quantization", {{"quant_algo", "FP8"}, {"kv_cache_quant_algo", kv}, {"exclude_modules", exclude}}}};
}
json modelopt_qc(json ignore = json::array({"lm_head", "model.visual*"}), bool kv = true) {
  json fmt = {{"dynamic", false}, {"num_bits", 8}, {"type", "float"}};
  json q = {{"quant_method", "modelopt"}, {"quant_algo", "FP8"}, {"ignore", ignore},
            {"producer", {{"name", "modelopt"}, {"version", "0.35.0"}}},
            {"config_groups", {{"group_0", {{"weights", fmt}, {"input_activations", fmt}, {"targets", {"Linear"}}}}}}};
  if (kv) q["kv_cache_scheme"] = fmt;
  return q;
}

SummaryInput input(std::vector<TensorMeta> tensors, vlq::formats::HfModelFiles files,
                   std::optional<json> hf = std::nullopt) {
  SummaryInput in;
  in.dir = "synthetic";
  in.files = std::move(files);
  in.hf_quant_config = std::move(hf);
  in.shards = {"model.safetensors"};
  in.tensors = std::move(tensors);
  return in;
}

}  // namespace

// ---- tiny checkpoints vs PyTorch ------------------------------------------------------------------

TEST(CheckpointSummary, TinyCheckpointsMatchPyTorchCounts) {
  for (const char* name : kTinyNames) {
    SCOPED_TRACE(name);
    const json exp = vlq::io::read_json_file(kTiny / (std::string(name) + ".expected.json"));
    const CheckpointSummary s = summarize_checkpoint(kTiny / name);
    const json j = as_json(s);
    EXPECT_EQ(j["files"]["shards"].size(), exp["shards"].get<size_t>());
    EXPECT_EQ(j["naming"], exp["naming"]);
    EXPECT_EQ(j["totals"]["tensors"], exp["tensors"]);
    EXPECT_EQ(j["totals"]["params"], exp["params"]);
    EXPECT_EQ(j["totals"]["bytes"], exp["bytes"]);
    EXPECT_EQ(j["totals"]["params"], exp["model_num_parameters"]);  // = sum(p.numel()) of the torch model
    for (auto& [comp, counts] : exp["components"].items()) {
      for (auto& [field, value] : counts.items()) {
        EXPECT_EQ(j["components"][comp][field], value) << comp << "." << field;
      }
    }
    EXPECT_EQ(j["by_dtype"], exp["by_dtype"]);
    EXPECT_EQ(j["scales"]["tensors"], exp["scales"]["tensors"]);
    EXPECT_EQ(j["scales"]["params"], exp["scales"]["params"]);
    EXPECT_EQ(j["scales"]["bytes"], exp["scales"]["bytes"]);
    EXPECT_EQ(j["scales"]["by_dtype"], exp["scales"]["by_dtype"]);
    EXPECT_EQ(j["scales"]["by_kind"].size(), exp["scales"]["by_kind"].size());
    for (auto& [kind, n] : exp["scales"]["by_kind"].items()) EXPECT_EQ(j["scales"]["by_kind"][kind]["count"], n) << kind;
    if (exp["quantized_modules"].get<int>() > 0 || !exp["kv_scale_spellings"].empty()) {
      ASSERT_FALSE(j["quantization"].is_null());
      EXPECT_EQ(j["quantization"]["quantized_modules"]["total"], exp["quantized_modules"]);
      EXPECT_EQ(j["quantization"]["kv_scales"]["spellings"], exp["kv_scale_spellings"]);
    } else {
      EXPECT_TRUE(j["quantization"].is_null());
    }
    EXPECT_EQ(j["lm_head"], "separate");
    EXPECT_TRUE(s.anomalies.empty()) << codes(s);
  }
}

TEST(CheckpointSummary, TinyFp8IsModelOptProfileA) {
  const CheckpointSummary s = summarize_checkpoint(kTiny / "qwen2_5_vl-fp8-modelopt");
  ASSERT_TRUE(s.quant.has_value());
  EXPECT_EQ(s.quant->format, "modelopt");
  EXPECT_EQ(s.quant->sources, (std::vector<std::string>{"hf_quant_config.json", "config.json:quantization_config"}));
  EXPECT_EQ(s.quant->quant_algo, "FP8");
  EXPECT_EQ(s.quant->kv_cache_quant_algo, "FP8");
  EXPECT_EQ(s.quant->producer_name, "modelopt");
  EXPECT_EQ(*s.quant->exclude_modules, (std::vector<std::string>{"lm_head", "model.visual*"}));
  EXPECT_EQ(*s.quant->ignore, *s.quant->exclude_modules);
  EXPECT_TRUE(s.sharded);
  EXPECT_EQ(s.shards.size(), 2u);
  const auto& ws = s.scale_kinds.at("weight_scale");
  EXPECT_EQ(ws.values_read, 14u);
  EXPECT_EQ(ws.shapes.at("scalar"), 14u);
  ASSERT_TRUE(ws.min && ws.max);
  EXPECT_GT(*ws.min, 0.0);
  EXPECT_LT(*ws.max, 1.0);
  // Headers only: no value is read.
  InspectOptions headers_only;
  headers_only.read_scale_values = false;
  EXPECT_EQ(summarize_checkpoint(kTiny / "qwen2_5_vl-fp8-modelopt", headers_only).scale_kinds.at("k_scale").values_read, 0u);
  // A single shard file works too (its folder's JSON files are used).
  const CheckpointSummary one = summarize_checkpoint(kTiny / "qwen2_5_vl-bf16-legacy" / "model.safetensors");
  EXPECT_EQ(one.weights.params, 223456u);
  EXPECT_EQ(one.files.config->form, vlq::formats::ConfigForm::kFlatV4);
}

TEST(CheckpointSummary, TableNamesTheEssentials) {
  const std::string t = summary_to_table(summarize_checkpoint(kTiny / "qwen2_5_vl-fp8-modelopt"));
  for (const char* needle : {"Qwen2_5_VLForConditionalGeneration", "transformers >= 4.52", "language_model",
                             "F8_E4M3", "Quantization modelopt", "quant_algo FP8", "kv_cache FP8",
                             "language_model 14/14", "k_proj.k_scale x2", "Anomalies    none"}) {
    EXPECT_NE(t.find(needle), std::string::npos) << needle << "\n" << t;
  }
}

// ---- anomalies on modified copies ------------------------------------------------------------------

TEST(CheckpointSummary, ConfigFilesDisagree) {
  TempCopy c("qwen2_5_vl-fp8-modelopt");
  json cfg = c.read("config.json");
  cfg["quantization_config"]["ignore"] = json::array({"lm_head"});
  cfg["quantization_config"].erase("kv_cache_scheme");
  c.write("config.json", cfg);
  const CheckpointSummary s = summarize_checkpoint(c.dir);
  const Anomaly* a = find_anomaly(s, "quant_configs_disagree");
  ASSERT_NE(a, nullptr) << codes(s);
  EXPECT_EQ(a->severity, "error");
  EXPECT_EQ(a->count, 2u);  // exclude/ignore and kv
}

TEST(CheckpointSummary, TensorsWithoutQuantConfigAndNoConfigAtAll) {
  TempCopy c("qwen2_5_vl-fp8-modelopt");
  fs::remove(c.dir / "hf_quant_config.json");
  json cfg = c.read("config.json");
  cfg.erase("quantization_config");
  c.write("config.json", cfg);
  CheckpointSummary s = summarize_checkpoint(c.dir);
  ASSERT_NE(find_anomaly(s, "quant_config_missing"), nullptr) << codes(s);
  ASSERT_TRUE(s.quant.has_value());
  EXPECT_EQ(s.quant->format, "unknown");

  fs::remove(c.dir / "config.json");
  s = summarize_checkpoint(c.dir);
  EXPECT_NE(find_anomaly(s, "no_config"), nullptr) << codes(s);
  EXPECT_EQ(s.lm_head, "unknown");
  EXPECT_TRUE(as_json(s)["model"].is_null());
}

TEST(CheckpointSummary, ErrorsForBadInputs) {
  EXPECT_THROW(summarize_checkpoint(kTiny / "does-not-exist"), vlq::IoError);
  TempCopy c("qwen2_5_vl-bf16-legacy");
  json cfg = c.read("config.json");
  cfg["architectures"] = json::array({"LlavaForConditionalGeneration"});
  cfg["model_type"] = "llava";
  c.write("config.json", cfg);
  try {
    summarize_checkpoint(c.dir);
    ADD_FAILURE() << "no exception";
  } catch (const vlq::UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("not supported yet"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("LlavaForConditionalGeneration"), std::string::npos);
  }
  std::ofstream(c.dir / "hf_quant_config.json") << R"({"quantization": {"exclude_modules": "lm_head"}})";
  c.write("config.json", vlq::io::read_json_file(kTiny / "qwen2_5_vl-bf16-legacy" / "config.json"));
  EXPECT_THROW(summarize_checkpoint(c.dir), vlq::ConfigError);
}

// ---- anomalies on synthetic tensor lists ------------------------------------------------------------

TEST(CheckpointSummary, ProfileBVisionKvScalesAreOrphans) {
  auto v = bf16_model();
  quantize_lm(v, /*vision_too=*/true);
  v.push_back(T("model.language_model.layers.0.self_attn.k_proj.k_scale", vlq::DType::F32, {}));
  v.push_back(T("model.language_model.layers.0.self_attn.v_proj.v_scale", vlq::DType::F32, {}));
  v.push_back(T("model.visual.blocks.0.attn.k_proj.k_scale", vlq::DType::F32, {}));
  v.push_back(T("model.visual.blocks.0.attn.v_proj.v_scale", vlq::DType::F32, {}));
  const CheckpointSummary s =
      summarize(input(v, tiny_files(modelopt_qc(json::array({"lm_head"}))), modelopt_hf(json::array({"lm_head"}))));
  const Anomaly* a = find_anomaly(s, "vision_kv_scale");
  ASSERT_NE(a, nullptr) << codes(s);
  EXPECT_EQ(a->severity, "error");
  EXPECT_EQ(a->count, 2u);
  EXPECT_EQ(a->examples[0], "model.visual.blocks.0.attn.k_proj.k_scale");
  EXPECT_EQ(s.components[static_cast<size_t>(Component::kVisionTower)].quantized_modules, 5u);
  EXPECT_EQ(s.components[static_cast<size_t>(Component::kVisionTower)].kv_scales, 2u);
  EXPECT_EQ(s.quant->kv_spellings.at("k_proj.k_scale"), 2u);
  EXPECT_EQ(find_anomaly(s, "orphan_kv_scale"), nullptr);
  EXPECT_EQ(find_anomaly(s, "quant_configs_disagree"), nullptr) << codes(s);
  // The merger is BF16 and not excluded by ["lm_head"].
  const Anomaly* u = find_anomaly(s, "unquantized_not_excluded");
  ASSERT_NE(u, nullptr) << codes(s);
  EXPECT_EQ(u->examples, std::vector<std::string>{"model.visual.merger.mlp.0"});
}

TEST(CheckpointSummary, MissingAndMisplacedScales) {
  auto v = bf16_model();
  quantize_lm(v);
  // Drop one weight_scale, add a scale next to a BF16 weight and one for a module without weight,
  // and an LM KV scale under a k_proj that does not exist.
  v.erase(std::find_if(v.begin(), v.end(), [](const TensorMeta& t) {
    return t.name == "model.language_model.layers.0.mlp.down_proj.weight_scale";
  }));
  v.push_back(T("model.visual.blocks.0.attn.qkv.weight_scale", vlq::DType::F32, {}));
  v.push_back(T("model.language_model.layers.0.mlp.nothing.input_scale", vlq::DType::F32, {}));
  v.push_back(T("model.language_model.layers.0.cross_attn.k_proj.k_scale", vlq::DType::F32, {}));
  v.push_back(T("model.language_model.layers.0.cross_attn.k_proj.v_scale", vlq::DType::F32, {}));
  const CheckpointSummary s = summarize(input(v, tiny_files(modelopt_qc()), modelopt_hf()));
  for (const char* code : {"fp8_weight_without_weight_scale", "scale_without_fp8_weight", "scale_without_weight",
                           "orphan_kv_scale"}) {
    const Anomaly* a = find_anomaly(s, code);
    ASSERT_NE(a, nullptr) << code << ": " << codes(s);
    EXPECT_EQ(a->severity, "error") << code;
  }
  EXPECT_EQ(find_anomaly(s, "fp8_weight_without_weight_scale")->examples[0],
            "model.language_model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(find_anomaly(s, "orphan_kv_scale")->count, 2u);
  // Errors come first.
  EXPECT_EQ(s.anomalies.front().severity, "error");
}

TEST(CheckpointSummary, MixedNamingAndUnknownTensors) {
  auto v = bf16_model();
  auto legacy = bf16_model("model.", "visual.");
  v.push_back(legacy[2]);  // model.layers.0.self_attn.q_proj.weight
  v.push_back(T("mtp.layers.0.weight", vlq::DType::BF16, {4, 4}));
  const CheckpointSummary s = summarize(input(v, tiny_files()));
  EXPECT_EQ(s.naming, "mixed");
  ASSERT_NE(find_anomaly(s, "mixed_naming"), nullptr) << codes(s);
  ASSERT_NE(find_anomaly(s, "unrecognized_tensor"), nullptr);
  EXPECT_EQ(s.components[static_cast<size_t>(Component::kOther)].weights.tensors, 1u);
  EXPECT_EQ(summarize(input(bf16_model("model.", "visual."), tiny_files())).naming, "legacy");
  EXPECT_EQ(summarize(input(bf16_model(), tiny_files())).naming, "hf-4.52");
}

TEST(CheckpointSummary, ExclusionListChecks) {
  // ModelOpt <= 0.37 under transformers >= 4.52 wrote "model.layers.visual*", which matches nothing.
  auto v = bf16_model();
  quantize_lm(v);
  auto ex = json::array({"model.layers.visual*", "lm_head"});
  CheckpointSummary s = summarize(input(v, tiny_files(modelopt_qc(ex)), modelopt_hf(ex)));
  ASSERT_NE(find_anomaly(s, "exclude_entry_matches_nothing"), nullptr) << codes(s);
  EXPECT_EQ(find_anomaly(s, "exclude_entry_matches_nothing")->examples[0], "model.layers.visual*");
  EXPECT_EQ(find_anomaly(s, "unquantized_not_excluded")->count, 6u);  // 5 ViT Linears + merger
  // A quantized module listed in the exclusions.
  ex = json::array({"lm_head", "model.visual*", "*.o_proj"});
  s = summarize(input(v, tiny_files(modelopt_qc(ex)), modelopt_hf(ex)));
  ASSERT_NE(find_anomaly(s, "excluded_but_quantized"), nullptr) << codes(s);
  EXPECT_EQ(find_anomaly(s, "excluded_but_quantized")->examples[0], "model.language_model.layers.0.self_attn.o_proj");
  EXPECT_EQ(find_anomaly(s, "unquantized_not_excluded"), nullptr);
}

TEST(CheckpointSummary, CompressedTensorsLayout) {
  auto v = bf16_model();
  std::vector<TensorMeta> add;
  for (auto& t : v) {
    if (t.name.find("layers.0.") != std::string::npos && t.shape.size() == 2) {
      t.dtype = vlq::DType::F8_E4M3;
      t.nbytes = t.numel();
      add.push_back(T(t.name.substr(0, t.name.size() - 7) + ".weight_scale", vlq::DType::BF16, {t.shape[0], 1}));
    }
  }
  v.insert(v.end(), add.begin(), add.end());
  v.push_back(T("model.language_model.layers.0.self_attn.k_scale", vlq::DType::BF16, {1}));
  v.push_back(T("model.language_model.layers.0.self_attn.v_scale", vlq::DType::BF16, {1}));
  json ignore = json::array({"lm_head", "re:model.visual.*"});
  json qc = json::parse(R"({"quant_method": "compressed-tensors", "format": "float-quantized",
    "config_groups": {"group_0": {"targets": ["Linear"],
      "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "dynamic": false, "symmetric": true},
      "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": true}}},
    "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": false}})");
  qc["ignore"] = ignore;
  const CheckpointSummary s = summarize(input(v, tiny_files(qc)));
  ASSERT_TRUE(s.quant.has_value());
  EXPECT_EQ(s.quant->format, "compressed-tensors");
  EXPECT_EQ(s.quant->quant_algo, "FP8");
  EXPECT_EQ(s.quant->kv_cache_quant_algo, "FP8");
  EXPECT_NE(s.quant->scheme.find("weights float8 channel static, input float8 token dynamic"), std::string::npos)
      << s.quant->scheme;
  EXPECT_EQ(s.quant->kv_spellings.at("self_attn.k_scale"), 1u);
  EXPECT_EQ(s.scale_kinds.at("weight_scale").shapes.at("per-channel"), 7u);
  EXPECT_EQ(s.scale_kinds.at("weight_scale").dtypes.at("BF16"), 7u);
  EXPECT_TRUE(s.anomalies.empty()) << codes(s);
}

TEST(CheckpointSummary, ScaleValuesAndKvConfig) {
  auto v = bf16_model();
  quantize_lm(v);
  v.push_back(T("model.language_model.layers.0.self_attn.k_proj.k_scale", vlq::DType::F32, {}));
  v.push_back(T("model.language_model.layers.0.self_attn.v_proj.v_scale", vlq::DType::F32, {}));
  SummaryInput in = input(v, tiny_files(modelopt_qc(json::array({"lm_head", "model.visual*"}), false)),
                          modelopt_hf(json::array({"lm_head", "model.visual*"}), nullptr));
  in.read_scalar = [](const TensorMeta& t) -> std::optional<double> {
    if (t.name.find("q_proj.input_scale") != std::string::npos) return 0.0;
    if (t.name.find("_proj.k_scale") != std::string::npos || t.name.find("v_proj.v_scale") != std::string::npos)
      return 1.0;
    return 0.01;
  };
  const CheckpointSummary s = summarize(in);
  ASSERT_NE(find_anomaly(s, "scale_not_positive"), nullptr) << codes(s);
  EXPECT_EQ(find_anomaly(s, "scale_not_positive")->count, 1u);
  ASSERT_NE(find_anomaly(s, "kv_scales_all_one"), nullptr) << codes(s);
  ASSERT_NE(find_anomaly(s, "kv_scales_without_kv_config"), nullptr) << codes(s);
  EXPECT_DOUBLE_EQ(*s.scale_kinds.at("input_scale").min, 0.0);
  EXPECT_DOUBLE_EQ(*s.scale_kinds.at("input_scale").max, 0.01);
}

TEST(CheckpointSummary, ConfigVsTensors) {
  auto v = bf16_model();
  v.pop_back();  // no lm_head.weight
  CheckpointSummary s = summarize(input(v, tiny_files(nullptr, /*layers=*/2, /*depth=*/1)));
  EXPECT_EQ(s.lm_head, "missing");
  ASSERT_NE(find_anomaly(s, "lm_head_missing"), nullptr) << codes(s);
  ASSERT_NE(find_anomaly(s, "config_tensor_mismatch"), nullptr) << codes(s);
  EXPECT_NE(find_anomaly(s, "config_tensor_mismatch")->examples[0].find("num_hidden_layers 2"), std::string::npos);

  auto files = tiny_files();
  files.config->text.tie_word_embeddings = true;
  s = summarize(input(v, files));
  EXPECT_EQ(s.lm_head, "tied");
  EXPECT_TRUE(s.anomalies.empty()) << codes(s);
  s = summarize(input(bf16_model(), files));
  EXPECT_EQ(s.lm_head, "tied+stored");
  EXPECT_NE(find_anomaly(s, "tied_lm_head_stored"), nullptr);
}

TEST(CheckpointSummary, KvScaleKeyParsing) {
  auto k = parse_kv_scale_key("model.layers.3.self_attn.k_proj.k_scale");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->attention, "model.layers.3.self_attn");
  EXPECT_EQ(k->holder, "model.layers.3.self_attn.k_proj");
  EXPECT_EQ(k->spelling, "k_proj.k_scale");
  EXPECT_EQ(k->kind, 'k');
  k = parse_kv_scale_key("model.layers.3.self_attn.v_scale");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->attention, "model.layers.3.self_attn");
  EXPECT_EQ(k->spelling, "self_attn.v_scale");
  EXPECT_EQ(k->kind, 'v');
  k = parse_kv_scale_key("model.layers.3.self_attn.v_proj.output_scale");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->spelling, "v_proj.output_scale");
  EXPECT_EQ(k->kind, 'v');
  k = parse_kv_scale_key("model.layers.3.self_attn.attn.k_scale");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->attention, "model.layers.3.self_attn");
  k = parse_kv_scale_key("model.layers.3.self_attn.kv_scale");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->kind, 'b');
  EXPECT_FALSE(parse_kv_scale_key("model.layers.3.mlp.down_proj.output_scale"));
  EXPECT_FALSE(parse_kv_scale_key("model.layers.3.self_attn.k_proj.weight_scale"));
  EXPECT_EQ(scale_kind("a.b.weight_scale"), "weight_scale");
  EXPECT_EQ(scale_kind("a.b.weight"), "");
  EXPECT_EQ(component_of("model.visual.merger.mlp.0.weight"), Component::kVisionMerger);
  EXPECT_EQ(component_of("visual.blocks.0.attn.qkv.weight"), Component::kVisionTower);
  EXPECT_EQ(component_of("model.language_model.embed_tokens.weight"), Component::kEmbedTokens);
  EXPECT_EQ(component_of("model.norm.weight"), Component::kLanguageModel);
  EXPECT_EQ(component_of("lm_head.weight"), Component::kLmHead);
}

// ---- the command ------------------------------------------------------------------------------------

TEST(InspectCli, JsonOutputParsesAndMatchesExpected) {
  const fs::path ck = kTiny / "qwen2_5_vl-fp8-modelopt";
  auto [rc, out] = run(std::string(VLQ_BINARY) + " inspect " + ck.string() + " --json");
  ASSERT_EQ(rc, 0) << out;
  json j = json::parse(out);
  EXPECT_EQ(j["schema"], "vlq.inspect/1");
  EXPECT_EQ(j["model"]["architectures"][0], "Qwen2_5_VLForConditionalGeneration");
  EXPECT_EQ(j["model"]["text"]["num_hidden_layers"], 2);
  EXPECT_EQ(j["model"]["vision"]["fullatt_block_indexes"], json::array({1}));
  EXPECT_EQ(j["quantization"]["format"], "modelopt");
  EXPECT_EQ(j["quantization"]["quant_algo"], "FP8");
  EXPECT_EQ(j["quantization"]["kv_cache_quant_algo"], "FP8");
  EXPECT_EQ(j["quantization"]["quantized_modules"]["language_model"], 14);
  EXPECT_EQ(j["quantization"]["quantized_modules"]["vision_tower"], 0);
  const json exp = vlq::io::read_json_file(kTiny / "qwen2_5_vl-fp8-modelopt.expected.json");
  EXPECT_EQ(j["totals"]["params"], exp["params"]);
  EXPECT_EQ(j["by_dtype"], exp["by_dtype"]);
  EXPECT_EQ(j["anomaly_counts"]["error"], 0);
  for (const char* key : {"schema", "path", "files", "model", "generation", "preprocessor", "naming", "totals",
                          "components", "by_dtype", "scales", "lm_head", "tie_word_embeddings", "quantization",
                          "anomalies", "anomaly_counts"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(out.rfind("{\n  \"schema\": \"vlq.inspect/1\",", 0), 0u) << out.substr(0, 80);  // schema first
}

TEST(InspectCli, TableAndErrors) {
  auto [rc, out] = run(std::string(VLQ_BINARY) + " inspect " + (kTiny / "qwen2_5_vl-bf16-v5").string());
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("Naming       legacy"), std::string::npos) << out;
  EXPECT_NE(out.find("transformers-5-nested"), std::string::npos) << out;
  EXPECT_NE(out.find("3 shards + index"), std::string::npos) << out;
  auto [rc2, out2] = run(std::string(VLQ_BINARY) + " inspect /nonexistent/dir 2>&1");
  EXPECT_EQ(rc2, 3);
  EXPECT_NE(out2.find("/nonexistent/dir"), std::string::npos) << out2;
  EXPECT_NE(out2.find("no such file"), std::string::npos) << out2;
}

// ---- real sizes: the released 3B/7B layouts reproduce the parameter totals of qwen2_5_vl.md §7 -------

namespace {
std::vector<TensorMeta> released_layout(const vlq::formats::ModelConfig& c) {
  using vlq::DType;
  const auto& t = c.text;
  const auto& v = c.vision;
  const int64_t H = t.hidden_size, I = t.intermediate_size, kv = t.num_key_value_heads * t.head_dim;
  const int64_t Hv = v.hidden_size, Iv = v.intermediate_size, M = Hv * v.spatial_merge_size * v.spatial_merge_size;
  std::vector<TensorMeta> out;
  auto add = [&](std::string n, std::vector<int64_t> s) { out.push_back(T(std::move(n), DType::BF16, std::move(s))); };
  add("visual.patch_embed.proj.weight", {Hv, v.in_chans, v.temporal_patch_size, v.patch_size, v.patch_size});
  for (int64_t b = 0; b < v.depth; ++b) {
    const std::string p = "visual.blocks." + std::to_string(b) + ".";
    add(p + "norm1.weight", {Hv});
    add(p + "norm2.weight", {Hv});
    add(p + "attn.qkv.weight", {3 * Hv, Hv});
    add(p + "attn.qkv.bias", {3 * Hv});
    add(p + "attn.proj.weight", {Hv, Hv});
    add(p + "attn.proj.bias", {Hv});
    for (const char* m : {"gate_proj", "up_proj"}) {
      add(p + "mlp." + m + ".weight", {Iv, Hv});
      add(p + "mlp." + m + ".bias", {Iv});
    }
    add(p + "mlp.down_proj.weight", {Hv, Iv});
    add(p + "mlp.down_proj.bias", {Hv});
  }
  add("visual.merger.ln_q.weight", {Hv});
  add("visual.merger.mlp.0.weight", {M, M});
  add("visual.merger.mlp.0.bias", {M});
  add("visual.merger.mlp.2.weight", {v.out_hidden_size, M});
  add("visual.merger.mlp.2.bias", {v.out_hidden_size});
  add("model.embed_tokens.weight", {t.vocab_size, H});
  for (int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {H, H});
    add(p + "self_attn.q_proj.bias", {H});
    add(p + "self_attn.k_proj.weight", {kv, H});
    add(p + "self_attn.k_proj.bias", {kv});
    add(p + "self_attn.v_proj.weight", {kv, H});
    add(p + "self_attn.v_proj.bias", {kv});
    add(p + "self_attn.o_proj.weight", {H, H});
    add(p + "mlp.gate_proj.weight", {I, H});
    add(p + "mlp.up_proj.weight", {I, H});
    add(p + "mlp.down_proj.weight", {H, I});
  }
  add("model.norm.weight", {H});
  if (!t.tie_word_embeddings) add("lm_head.weight", {t.vocab_size, H});
  return out;
}
}  // namespace

TEST(CheckpointSummary, ReleasedSizesMatchTheSpecTotals) {
  struct Case { const char* name; uint64_t vision, lm, total; const char* lm_head; };
  for (auto c : {Case{"qwen2_5_vl_3b", 668684288ull, 3085938688ull, 3754622976ull, "tied"},
                 Case{"qwen2_5_vl_7b", 676550144ull, 7615616512ull, 8292166656ull, "separate"}}) {
    SCOPED_TRACE(c.name);
    vlq::formats::HfModelFiles f;
    f.config = vlq::formats::load_model_config(fs::path(VLQ_SOURCE_DIR) / "tests" / "data" / "hf_config" /
                                             (std::string(c.name) + ".v4.config.json"));
    const CheckpointSummary s = summarize(input(released_layout(*f.config), f));
    auto params = [&](Component k) { return s.components[static_cast<size_t>(k)].weights.params; };
    EXPECT_EQ(params(Component::kVisionTower) + params(Component::kVisionMerger), c.vision);
    EXPECT_EQ(params(Component::kLanguageModel) + params(Component::kEmbedTokens) + params(Component::kLmHead), c.lm);
    EXPECT_EQ(s.weights.params, c.total);
    EXPECT_EQ(s.weights.bytes, 2 * c.total);
    EXPECT_EQ(s.lm_head, c.lm_head);
    EXPECT_EQ(s.naming, "legacy");
    EXPECT_EQ(s.components[static_cast<size_t>(Component::kLanguageModel)].linear_modules,
              7u * f.config->text.num_hidden_layers);
    EXPECT_TRUE(s.anomalies.empty()) << codes(s);
    EXPECT_FALSE(s.quant.has_value());
  }
}

// `vlq inspect` reads both quantization configs through quant_layout's parser, the one `vlq check` uses:
// same normalisation (upper-cased algorithms), same lists, same refusals.
TEST(CheckpointSummary, QuantConfigsThroughTheCheckersParser) {
  auto v = bf16_model();
  quantize_lm(v);
  json hf = modelopt_hf(json::array({"lm_head"}), "fp8");
  hf["quantization"]["quant_algo"] = "fp8";
  json qc = modelopt_qc(json::array({"lm_head"}));
  qc["exclude_modules"] = json::array({"lm_head", "model.visual*"});
  const CheckpointSummary s = summarize(input(v, tiny_files(qc), hf));
  ASSERT_TRUE(s.quant);
  const DeclaredConfig d = parse_declared_config(json{{"quantization_config", qc}}, hf);
  EXPECT_EQ(s.quant->quant_algo, "FP8");
  EXPECT_EQ(s.quant->quant_algo, d.hf_quant_config->quant_algo);
  EXPECT_EQ(s.quant->kv_cache_quant_algo, d.hf_quant_config->kv_cache_quant_algo);
  EXPECT_EQ(s.quant->exclude_modules, d.hf_quant_config->exclude_modules);
  // config.json's `ignore` as written, although exclude_modules is there too (check merges both).
  EXPECT_EQ(*s.quant->ignore, (std::vector<std::string>{"lm_head"}));
  EXPECT_EQ(s.quant->ignore, d.config_json->ignore);
  EXPECT_EQ(d.config_json->exclude_key, "exclude_modules+ignore");
  // hf_quant_config.json without its `quantization` block: both refuse it with a ConfigError.
  json broken = {{"producer", {{"name", "modelopt"}, {"version", "0.35.0"}}}, {"quant_algo", "FP8"}};
  EXPECT_THROW(summarize(input(v, tiny_files(qc), broken)), vlq::ConfigError);
  EXPECT_THROW(parse_declared_config(std::nullopt, broken), vlq::ConfigError);
}
