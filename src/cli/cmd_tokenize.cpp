// `vlq tokenize`: encodes text with a model folder's tokenizer.json and prints the token ids and tokens.
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "vlq/core/error.h"
#include "vlq/text/tokenizer.h"

namespace {

struct TokenizeArgs {
  std::string model;
  std::string text;
  std::string file;
  bool json = false;
  bool no_special = false;
};

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw vlq::IoError({path, "cannot open input text file", "", "no such file or not readable", ""});
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_tokenize(const TokenizeArgs& a) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(a.model, ec))  // as the other commands say it
    throw vlq::IoError({a.model, "model folder not found", "a Hugging Face checkpoint folder (or a tokenizer.json)",
                        "no such file or directory", ""});
  const vlq::text::Tokenizer tok = fs::is_regular_file(a.model, ec) ? vlq::text::Tokenizer::load(a.model)
                                                                      : vlq::text::Tokenizer::from_model_dir(a.model);
  const std::string text = a.file.empty() ? a.text : read_text_file(a.file);
  std::vector<std::int32_t> ids;
  try {
    ids = tok.encode(text, !a.no_special);
  } catch (const vlq::FormatError& e) {
    auto info = e.info();
    info.where = a.file.empty() ? "--text" : a.file;
    throw vlq::FormatError(info);
  }
  nlohmann::json tokens = nlohmann::json::array();
  for (std::int32_t id : ids) tokens.push_back(std::string(tok.id_to_token(id).value_or("")));
  if (a.json) {
    nlohmann::json out{{"ids", ids}, {"tokens", tokens}};
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::cout << "ids (" << ids.size() << "):";
  for (std::int32_t id : ids) std::cout << ' ' << id;
  std::cout << "\ntokens:";
  for (const auto& t : tokens) std::cout << ' ' << t.dump();
  std::cout << "\n";
  return 0;
}

std::function<int()> setup_tokenize(CLI::App& app) {
  app.description("Encode text with the tokenizer.json of a model folder; print token ids and tokens");
  auto args = std::make_shared<TokenizeArgs>();
  app.add_option("--model", args->model, "Model folder containing tokenizer.json (or the tokenizer.json file)")
      ->required();
  auto* text = app.add_option("--text", args->text, "Text to encode (UTF-8)");
  auto* file = app.add_option("--file", args->file, "File whose bytes (UTF-8) are encoded");
  text->excludes(file);
  file->excludes(text);
  app.add_flag("--json", args->json, "Print {\"ids\": [...], \"tokens\": [...]} on one line");
  app.add_flag("--no-special", args->no_special,
               "Do not recognise special tokens written in the text (split_special_tokens=True)");
  return [args, text, file]() {
    if (text->count() == 0 && file->count() == 0)
      throw vlq::UsageError({"vlq tokenize", "no input", "--text T or --file F", "neither", ""});
    return run_tokenize(*args);
  };
}

}  // namespace

VLQ_COMMAND("tokenize", setup_tokenize);
