// Hugging Face model metadata of a Qwen2.5-VL checkpoint folder: config.json (transformers 4.x flat form,
// the 4.5x re-save form with a nested text_config, and the 5.x nested form), generation_config.json,
// preprocessor_config.json, and discovery of the tokenizer / chat-template files.
//
// Spec: /work/shared/docs/qwen2_5_vl.md §1 (configs, how transformers nests text and vision fields),
// §2.1 (processor constants), §5 (chat template, generation defaults); transformers v5
// `configuration_qwen2_5_vl.py` (Qwen2_5_VLConfig.__post_init__: flat kwargs become text_config;
// tie_word_embeddings is true if the root or text_config says so) and
// `image_processing_qwen2_vl.py` (min_pixels / max_pixels override size.shortest_edge / longest_edge).
//
// Field resolution rules (one struct for every form):
// - Text fields: taken from "text_config" when it holds the key, else from the top level (the 4.x flat
//   form, and the 4.53 re-save form which has both; the nested one wins, as in transformers).
// - RoPE: "rope_parameters" {rope_theta, mrope_section, rope_type} (5.x) or "rope_scaling"
//   {type|rope_type, mrope_section} + "rope_theta" (4.x); same text_config-then-top-level lookup.
// - dtype: "dtype" (5.x) or "torch_dtype" (4.x), text_config first, then top level.
// - Token ids (image/video/vision_start/vision_end/vision_token_id): top level first, then text_config.
//   bos/eos: text_config first, then top level. eos may be an int or a list of ints.
// - Vision: "vision_config"; "in_chans" (hub) or "in_channels" (transformers).
// Keys absent from the JSON and not required take the transformers class default; the key path is then
// recorded in `defaulted` so callers can show it (class defaults are NOT checkpoint values, doc §1.3).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vlq::formats {

// Which serialisation of config.json was found.
enum class ConfigForm {
  kFlatV4,        // language-model fields at the top level, no text_config (hub release, transformers < 4.53)
  kFlatWithText,  // top-level fields AND text_config (transformers 4.53-4.5x re-save)
  kNestedV5,      // text_config + vision_config, no top-level text fields (transformers 5.x)
};
// "transformers-4-flat", "transformers-4.5x-flat+text_config", "transformers-5-nested".
const char* config_form_name(ConfigForm f) noexcept;

// Language-model part (Qwen2 decoder with M-RoPE). Sizes in elements.
struct TextConfig {
  std::int64_t hidden_size = 0;              // H (required)
  std::int64_t intermediate_size = 0;        // I (required)
  std::int64_t num_hidden_layers = 0;        // L (required)
  std::int64_t num_attention_heads = 0;      // query heads (required)
  std::int64_t num_key_value_heads = 0;      // KV heads (required; GQA group = heads / kv heads)
  std::int64_t head_dim = 0;                 // "head_dim" if present, else hidden_size / num_attention_heads
  std::int64_t vocab_size = 0;               // embedding rows, padded (required)
  std::int64_t max_position_embeddings = 0;  // default 32768 (class default)
  double rms_norm_eps = 0;                   // default 1e-5 (class default; released checkpoints say 1e-6)
  double rope_theta = 0;                     // default 1e6
  std::vector<std::int64_t> mrope_section;   // (required) [t, h, w] frequency counts; sum = head_dim / 2
  std::string rope_type;                     // as written ("mrope", "default"); empty if absent
  bool tie_word_embeddings = false;          // lm_head shares the embedding (3B); true if any level says so
  std::string dtype;                         // "bfloat16", ... ("" if absent)
  std::string hidden_act;                    // default "silu"
  // Qwen2 attention: q/k/v projections have a bias, o_proj does not. Not a config key in the released
  // files (hard-wired in the model); an "attention_bias" key, if present, is read into attention_bias.
  bool qkv_bias = true;
  std::optional<bool> attention_bias;
  bool use_sliding_window = false;
  std::optional<std::int64_t> sliding_window;  // null/absent -> nullopt
  std::optional<std::int64_t> max_window_layers;
};

// Vision encoder (ViT with window attention + patch merger). Sizes in elements, patch sizes in pixels.
struct VisionConfig {
  std::int64_t depth = 0;               // number of blocks (required)
  std::int64_t hidden_size = 0;         // ViT width (required)
  std::int64_t intermediate_size = 0;   // ViT MLP width I_v (required)
  std::int64_t num_heads = 0;           // (required; head dim = hidden_size / num_heads)
  std::int64_t out_hidden_size = 0;     // merger output = text hidden_size (required)
  std::int64_t patch_size = 14;         // default 14
  std::int64_t spatial_merge_size = 2;  // default 2
  std::int64_t temporal_patch_size = 2; // default 2
  std::int64_t window_size = 112;       // pixels; default 112
  std::vector<std::int64_t> fullatt_block_indexes;  // default [7, 15, 23, 31]; each < depth
  std::int64_t in_chans = 3;            // "in_chans" or "in_channels"; default 3
  std::int64_t tokens_per_second = 4;   // default 4 (class default; released checkpoints say 2)
  std::string hidden_act;               // default "silu"
};

// Special token ids used by the model. Defaults are the Qwen2.5-VL class defaults (151655, ...).
struct TokenIds {
  std::int64_t image_token_id = 151655;
  std::int64_t video_token_id = 151656;
  std::int64_t vision_start_token_id = 151652;
  std::int64_t vision_end_token_id = 151653;
  std::optional<std::int64_t> vision_token_id;  // <|vision_pad|>, hub configs only
  std::optional<std::int64_t> bos_token_id;
  std::vector<std::int64_t> eos_token_ids;      // int or list in the JSON; empty if absent
  std::optional<std::int64_t> pad_token_id;
};

// Parsed config.json.
struct ModelConfig {
  std::vector<std::string> architectures;  // as written (may be empty if absent)
  std::string model_type;                  // "qwen2_5_vl"
  std::string transformers_version;        // "" if absent
  ConfigForm form = ConfigForm::kFlatV4;
  TextConfig text;
  VisionConfig vision;
  TokenIds tokens;
  // Raw "quantization_config" object (ModelOpt, compressed-tensors, ...); interpreted in vlq::formats.
  std::optional<nlohmann::json> quantization_config;
  std::vector<std::string> defaulted;  // key paths that were absent and took the class default
};

// Parses a config.json document. `file` names the file in error messages.
// Throws:
// - ConfigError (naming file and key, with expected/found) when a required key is missing, a value has
//   the wrong JSON type, or values are inconsistent (heads not dividing hidden_size, kv heads not
//   dividing heads, sum(mrope_section) != head_dim/2, fullatt index >= depth, out_hidden_size !=
//   hidden_size, a token id >= vocab_size, non-positive sizes);
// - UnsupportedError "... not supported yet" naming the architectures / model_type found when the
//   model is not Qwen2.5-VL (model_type must be "qwen2_5_vl" and, when "architectures" is present,
//   it must contain "Qwen2_5_VLForConditionalGeneration").
ModelConfig parse_model_config(const nlohmann::json& config, const std::string& file);
// Reads and parses `path`. Throws IoError (cannot read), FormatError (not JSON / not an object), and
// everything parse_model_config throws.
ModelConfig load_model_config(const std::filesystem::path& path);

// generation_config.json. All fields optional (absent -> nullopt / empty).
struct GenerationConfig {
  std::optional<std::int64_t> bos_token_id;
  std::vector<std::int64_t> eos_token_ids;  // int or list
  std::optional<std::int64_t> pad_token_id;
  std::optional<bool> do_sample;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<std::int64_t> top_k;
  std::optional<double> repetition_penalty;
  std::optional<std::int64_t> max_new_tokens;
  std::optional<std::int64_t> max_length;
  std::string transformers_version;
};
// Throws ConfigError (file + key) on a wrong JSON type (e.g. temperature given as a string).
GenerationConfig parse_generation_config(const nlohmann::json& j, const std::string& file);
GenerationConfig load_generation_config(const std::filesystem::path& path);

// preprocessor_config.json (Qwen2-VL image processor).
struct PreprocessorConfig {
  std::int64_t min_pixels = 0;  // required: "min_pixels" or "size.shortest_edge" (min_pixels wins)
  std::int64_t max_pixels = 0;  // required: "max_pixels" or "size.longest_edge" (max_pixels wins)
  std::string pixels_source;    // "min_pixels/max_pixels" or "size"
  std::int64_t patch_size = 14;
  std::int64_t temporal_patch_size = 2;
  std::int64_t merge_size = 2;
  std::vector<double> image_mean{0.48145466, 0.4578275, 0.40821073};  // OpenAI CLIP (class default)
  std::vector<double> image_std{0.26862954, 0.26130258, 0.27577711};
  double rescale_factor = 1.0 / 255.0;
  std::int64_t resample = 3;  // PIL BICUBIC
  bool do_resize = true, do_rescale = true, do_normalize = true, do_convert_rgb = true;
  std::string image_processor_type;
  std::vector<std::string> defaulted;
};
// Throws ConfigError naming file and key: no pixel bounds (the class default max_pixels 1,003,520 is
// 12.8x below the Qwen2.5-VL value, doc §2.1, so vlq refuses to guess); wrong types; min > max;
// image_mean/std not 3 numbers; non-positive sizes.
PreprocessorConfig parse_preprocessor_config(const nlohmann::json& j, const std::string& file);
PreprocessorConfig load_preprocessor_config(const std::filesystem::path& path);

// Tokenizer and chat-template files present in a folder (paths empty when absent).
struct TokenizerFiles {
  std::filesystem::path tokenizer_json;         // tokenizer.json
  std::filesystem::path tokenizer_config_json;  // tokenizer_config.json
  std::filesystem::path vocab_json;             // vocab.json (slow BPE tokenizer)
  std::filesystem::path merges_txt;             // merges.txt
  std::filesystem::path special_tokens_map_json;
  std::filesystem::path added_tokens_json;
  std::filesystem::path chat_template_jinja;    // chat_template.jinja (transformers 5.x)
  std::filesystem::path chat_template_json;     // chat_template.json {"chat_template": "..."} (hub)
  // Where the chat template that transformers would use comes from, in its order of precedence:
  // "chat_template.jinja", "chat_template.json", "tokenizer_config.json", or "" (none found).
  std::string chat_template_source;
};
// Looks for the files above in `dir`. Reads tokenizer_config.json / chat_template.json only to see
// whether they hold a "chat_template" key. Throws FormatError if one of those two is not valid JSON.
TokenizerFiles find_tokenizer_files(const std::filesystem::path& dir);

// Everything in a checkpoint folder that describes the model (not the tensors).
struct HfModelFiles {
  std::filesystem::path dir;
  std::optional<ModelConfig> config;              // nullopt if config.json is absent
  std::optional<GenerationConfig> generation;     // nullopt if generation_config.json is absent
  std::optional<PreprocessorConfig> preprocessor; // preprocessor_config.json, or the "image_processor"
                                                  // object of processor_config.json; nullopt if neither
  std::string preprocessor_file;                  // which file it came from
  TokenizerFiles tokenizer;
};
// Loads the metadata files of `dir`; each present file is parsed and its errors propagate.
HfModelFiles load_hf_model_files(const std::filesystem::path& dir);

}  // namespace vlq::formats
