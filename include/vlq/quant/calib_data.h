// Calibration data sets for `vlq quantize` (--calib-text, --calib-images, --samples, --seed):
// reading text and image+caption samples, the deterministic selection of N of them, and how each is fed to
// the model.
//
// Formats (all UTF-8; a leading UTF-8 BOM is ignored; invalid UTF-8 is a FormatError naming file:line):
// - Text, plain: ONE SAMPLE PER NON-EMPTY LINE. Each line is trimmed of leading/trailing whitespace (and its
//   "\r"); blank lines are skipped. (Multi-line documents: use JSONL.) Long samples are cut to the sequence
//   length later, by the tokenizing step.
// - Text, JSONL: one JSON object per line with a string "text" (other keys ignored); blank lines are skipped;
//   records whose text is empty after trimming are skipped. Chosen when the file name ends in ".jsonl"
//   (any case) or its first non-whitespace character is '{'.
// - Images, folder: every *.png, *.jpg, *.jpeg, *.webp (extension in any case, not recursive, hidden files
//   skipped) with a caption file of the same stem and extension ".txt" next to it. The caption is the first
//   non-empty line of that file, trimmed (so Tux Paint stamp .txt files, which carry translations on later
//   lines, work as they are). Images are taken in byte order of their file names. Images without a caption
//   file (or with an empty one) are an error listing all of them. Caption files without an image are ignored.
// - Images, JSONL: one object per line with strings "image" (path relative to the JSONL file's folder, or
//   absolute) and "text" (the caption). The image file must exist.
//
// How samples are fed (calib_sample_messages):
// - text: as raw text, tokenized WITHOUT the chat template (what ModelOpt's hf_ptq does with its text
//   calibration sets: tokenizer(text) over raw documents). calib_sample_messages throws for it.
// - image + caption: a chat with the image, rendered with the chat template (add_generation_prompt=false):
//     user:      [{"type":"image"}, {"type":"text","text": kCalibImageInstruction}]
//     assistant: <caption>
//   kCalibImageInstruction is "Describe this image." -- the stamp_caption question of the held-out set and
//   of the bundled model's training, so calibration activations look like real captioning requests.
//
// Selection (select_calib_samples), documented so that a run can be repeated anywhere:
// 1. Each pool keeps its load order (file order; folder: file-name order).
// 2. Each pool is shuffled with Fisher-Yates (for i = n-1 down to 1: j = uniform(0..i); swap(a[i], a[j])) driven by
//    std::mt19937_64 (fully specified by the C++ standard): the text pool with seed `seed`, the image pool with
//    seed `seed + 0x9E3779B97F4A7C15` (mod 2^64), so each pool's order does not depend on the other's size.
//    uniform(0..i) draws x = rng() until x >= (2^64 mod (i+1)) and returns x mod (i+1) (unbiased; not
//    std::uniform_int_distribution, whose algorithm differs between standard libraries).
// 3. The result alternates image, text, image, text, ... from the two shuffled pools; when one pool runs out
//    the other continues; it stops after N samples. With only one pool it is that pool's first N.
// N larger than the pools together gives all samples (the caller can compare the size with N).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"

namespace vlq::quant {

enum class CalibKind { kText, kImageCaption };
// "text", "image_caption".
const char* calib_kind_name(CalibKind k) noexcept;

struct CalibSample {
  CalibKind kind = CalibKind::kText;
  std::string text;                   // the text, or the image's caption
  std::filesystem::path image_path;   // kImageCaption: the image file (resolved, exists at load time)
  std::string source;                 // where it came from: "file:line" (text, JSONL) or the caption file path
};

// The instruction of the user turn of an image+caption sample.
inline constexpr std::string_view kCalibImageInstruction = "Describe this image.";

// Reads a --calib-text file (plain or JSONL, see the file comment). Throws IoError (missing, a folder,
// unreadable), FormatError (invalid UTF-8, a JSONL line that is not a JSON object, "text" missing or not a
// string: each naming "file:line" and what was found), ConfigError (no sample left after skipping blank lines
// and empty texts).
std::vector<CalibSample> load_calib_text(const std::filesystem::path& file);

// Reads --calib-images: a folder or a JSONL file (see the file comment). Throws IoError (missing path,
// unreadable file, a JSONL line's image missing -- naming file:line and the resolved path), FormatError
// (corrupt JSONL line, "image"/"text" missing or not strings, invalid UTF-8), ConfigError (images without
// captions, listing them all; no image in the folder; no sample left).
std::vector<CalibSample> load_calib_images(const std::filesystem::path& dir_or_jsonl);

// Chooses `samples` samples from the two pools as described in the file comment; deterministic in
// (pools, samples, seed). Throws UsageError when samples == 0, ConfigError when both pools are empty.
std::vector<CalibSample> select_calib_samples(const std::vector<CalibSample>& text_pool,
                                              const std::vector<CalibSample>& image_pool, std::size_t samples,
                                              std::uint64_t seed);

// The permutation of 0..n-1 that step 2 of the selection applies to a pool of size n with `seed` (exposed
// for tests and for tools that must reproduce it).
std::vector<std::size_t> calib_shuffle_order(std::size_t n, std::uint64_t seed);

// The chat of an image+caption sample (see the file comment), in the HF chat format of engine/messages.h;
// its one image is sample.image_path. Throws UsageError for a text sample (fed as raw text, not as a chat).
nlohmann::ordered_json calib_sample_messages(const CalibSample& sample);

}  // namespace vlq::quant
