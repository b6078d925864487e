// Tests for vlq/quant/calib_data.h: text/JSONL and image-folder/JSONL calibration readers, their errors,
// the deterministic seeded selection, the chat form of image samples, and the committed data/calib set.
#include "vlq/quant/calib_data.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "io/io_test_util.h"

namespace {

using vlq::quant::CalibKind;
using vlq::quant::CalibSample;
using vlq::testing::write_bytes;
namespace fs = std::filesystem;

const fs::path kTinyPng = fs::path(VLQ_SOURCE_DIR) / "tests/data/images/foo3x5x4indexed.png";

std::vector<std::string> texts(const std::vector<CalibSample>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) out.push_back(s.text);
  return out;
}

TEST(CalibData, PlainTextOneSamplePerNonEmptyLine) {
  vlq::testing::TempDir dir;
  write_bytes(dir / "t.txt", "\xEF\xBB\xBF  First line. \r\n\n   \nSecond line\n\tThird {not json}\n");
  const auto v = vlq::quant::load_calib_text(dir / "t.txt");
  EXPECT_EQ(texts(v), (std::vector<std::string>{"First line.", "Second line", "Third {not json}"}));
  EXPECT_EQ(v[0].kind, CalibKind::kText);
  EXPECT_EQ(v[1].source, (dir / "t.txt").string() + ":4");
  EXPECT_EQ(v[2].source, (dir / "t.txt").string() + ":5");
}

TEST(CalibData, JsonlTextByExtensionOrFirstChar) {
  vlq::testing::TempDir dir;
  const std::string body = "{\"text\": \"a b\", \"id\": 1}\n\n{\"text\": \"  \"}\n{\"text\": \"c\\nd\"}\n";
  write_bytes(dir / "t.jsonl", body);
  write_bytes(dir / "t.data", body);
  for (const char* f : {"t.jsonl", "t.data"}) {
    const auto v = vlq::quant::load_calib_text(dir / f);
    EXPECT_EQ(texts(v), (std::vector<std::string>{"a b", "c\nd"})) << f;
    EXPECT_EQ(v.at(1).source, (dir / f).string() + ":4");
  }
}

TEST(CalibData, TextErrors) {
  vlq::testing::TempDir dir;
  const std::string f = (dir / "t.jsonl").string();
  // (locals: VLQ_EXPECT_ERROR keeps string_views, so the expected parts must outlive the macro's loop)
  const std::string f1 = f + ":1", f2 = f + ":2", f3 = f + ":3";
  write_bytes(dir / "t.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"broken\"\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "t.jsonl"), vlq::FormatError, f2);
  write_bytes(dir / "t.jsonl", "{\"text\": \"ok\"}\n\n{\"txt\": \"x\", \"id\": 2}\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "t.jsonl"), vlq::FormatError, f3, "no \"text\"",
                   "keys id, txt");
  write_bytes(dir / "t.jsonl", "{\"text\": 3}\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "t.jsonl"), vlq::FormatError, f1, "must be a string",
                   "integer");
  write_bytes(dir / "t.jsonl", "{\"text\": \"a\"}\n[1, 2]\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "t.jsonl"), vlq::FormatError, f2, "not an object");
  write_bytes(dir / "t.jsonl", "{\"text\": \"\"}\n\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "t.jsonl"), vlq::ConfigError, "no calibration text samples");
  write_bytes(dir / "t.txt", "\n  \n\t\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "t.txt"), vlq::ConfigError, "no calibration text samples");
  write_bytes(dir / "t.txt", "good\nbad \xff byte\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "t.txt"), vlq::FormatError, ":2", "invalid UTF-8", "0xff",
                   "column 5");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir / "missing.txt"), vlq::IoError, "not found");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_text(dir.path()), vlq::IoError, "is a folder");
}

TEST(CalibData, ImageFolderWithCaptions) {
  vlq::testing::TempDir dir;
  for (const char* n : {"b.png", "a.JPG", "c.webp"}) fs::copy_file(kTinyPng, dir / n);
  write_bytes(dir / "a.txt", "\n  An apple. \nUne pomme.\n");
  write_bytes(dir / "b.txt", "A bee.");
  write_bytes(dir / "c.txt", "A cat.\n");
  write_bytes(dir / "notes.md", "ignored");
  write_bytes(dir / ".hidden.png", "ignored");
  const auto v = vlq::quant::load_calib_images(dir.path());
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(texts(v), (std::vector<std::string>{"An apple.", "A bee.", "A cat."}));
  EXPECT_EQ(v[0].image_path, dir / "a.JPG");
  EXPECT_EQ(v[0].kind, CalibKind::kImageCaption);
  EXPECT_EQ(v[0].source, (dir / "a.txt").string());
}

TEST(CalibData, ImageFolderErrorsListAllUncaptioned) {
  vlq::testing::TempDir dir;
  for (const char* n : {"x.png", "y.png", "z.jpeg", "w.png"}) fs::copy_file(kTinyPng, dir / n);
  write_bytes(dir / "x.txt", "X.");
  write_bytes(dir / "w.txt", "  \n\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(dir.path()), vlq::ConfigError, "without a caption file",
                   "2 image(s) without a caption file: y.png, z.jpeg", "1 empty caption file(s): w.txt", "NAME.txt");
  vlq::testing::TempDir empty;
  write_bytes(empty / "a.txt", "x");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(empty.path()), vlq::ConfigError, "no calibration images");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(empty / "nope"), vlq::IoError, "not found");
}

TEST(CalibData, ImageJsonl) {
  vlq::testing::TempDir dir;
  fs::create_directories(dir / "set/img");
  fs::copy_file(kTinyPng, dir / "set/img/one.png");
  const std::string f = (dir / "set/list.jsonl").string();
  const std::string f1 = f + ":1", f2 = f + ":2", f3 = f + ":3";
  write_bytes(dir / "set/list.jsonl", "{\"image\": \"img/one.png\", \"text\": \" One. \"}\n\n"
                                      "{\"image\": \"" + (dir / "set/img/one.png").string() + "\", \"text\": \"Abs\"}\n");
  const auto v = vlq::quant::load_calib_images(dir / "set/list.jsonl");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].image_path, dir / "set/img/one.png");
  EXPECT_EQ(v[0].text, "One.");
  EXPECT_EQ(v[1].source, f3);
  write_bytes(dir / "set/list.jsonl", "{\"image\": \"img/one.png\", \"text\": \"a\"}\n{\"image\": \"img/two.png\", \"text\": \"b\"}\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(dir / "set/list.jsonl"), vlq::IoError, f2, "not found",
                   "img/two.png", "relative to the JSONL");
  write_bytes(dir / "set/list.jsonl", "{\"text\": \"a\"}\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(dir / "set/list.jsonl"), vlq::FormatError, f1, "no \"image\"");
  write_bytes(dir / "set/list.jsonl", "{\"image\": \"img/one.png\"}\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(dir / "set/list.jsonl"), vlq::FormatError, f1, "no \"text\"");
  write_bytes(dir / "set/list.jsonl", "{\"image\": \"img/one.png\", \"text\": \"a\"}\nnot json\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(dir / "set/list.jsonl"), vlq::FormatError, f2);
  write_bytes(dir / "set/list.jsonl", "\n\n");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(dir / "set/list.jsonl"), vlq::ConfigError, "no calibration images");
}

TEST(CalibData, Mt19937_64IsTheStandardEngine) {
  // C++ standard [rand.predef]: the 10000th output of a default-constructed mt19937_64.
  std::mt19937_64 rng;
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ULL);
}

TEST(CalibData, ShuffleOrderIsAPinnedPermutation) {
  const auto o = vlq::quant::calib_shuffle_order(10, 0);
  std::set<std::size_t> s(o.begin(), o.end());
  EXPECT_EQ(s.size(), 10u);
  EXPECT_EQ(*s.rbegin(), 9u);
  // Pinned: changing the algorithm changes which samples a seed selects; update data/calib docs if so.
  EXPECT_EQ(o, (std::vector<std::size_t>{7, 2, 0, 8, 3, 9, 6, 1, 5, 4}));
  EXPECT_EQ(vlq::quant::calib_shuffle_order(10, 0), o);
  EXPECT_NE(vlq::quant::calib_shuffle_order(10, 1), o);
  EXPECT_TRUE(vlq::quant::calib_shuffle_order(0, 5).empty());
  EXPECT_EQ(vlq::quant::calib_shuffle_order(1, 5), std::vector<std::size_t>{0});
}

std::vector<CalibSample> pool(CalibKind k, const std::string& prefix, int n) {
  std::vector<CalibSample> v;
  for (int i = 0; i < n; ++i) v.push_back({k, prefix + std::to_string(i), {}, ""});
  return v;
}

TEST(CalibData, SelectionIsDeterministicAndInterleaved) {
  const auto t = pool(CalibKind::kText, "t", 5);
  const auto im = pool(CalibKind::kImageCaption, "i", 3);
  const auto a = vlq::quant::select_calib_samples(t, im, 6, 42);
  const auto b = vlq::quant::select_calib_samples(t, im, 6, 42);
  EXPECT_EQ(texts(a), texts(b));
  ASSERT_EQ(a.size(), 6u);
  // image, text, image, text, image, text
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i].kind, i % 2 == 0 ? CalibKind::kImageCaption : CalibKind::kText) << i;
  // The shuffles follow calib_shuffle_order with the documented seeds.
  const auto to = vlq::quant::calib_shuffle_order(5, 42);
  const auto io = vlq::quant::calib_shuffle_order(3, 42 + 0x9E3779B97F4A7C15ULL);
  EXPECT_EQ(a[0].text, "i" + std::to_string(io[0]));
  EXPECT_EQ(a[1].text, "t" + std::to_string(to[0]));
  EXPECT_EQ(a[5].text, "t" + std::to_string(to[2]));
  // Images run out: texts continue; N beyond the pools gives everything.
  const auto all = vlq::quant::select_calib_samples(t, im, 100, 42);
  ASSERT_EQ(all.size(), 8u);
  EXPECT_EQ(all[6].kind, CalibKind::kText);
  EXPECT_EQ(all[7].kind, CalibKind::kText);
  std::set<std::string> uniq;
  for (const auto& s : all) uniq.insert(s.text);
  EXPECT_EQ(uniq.size(), 8u);
  // Image order does not depend on the text pool's size.
  const auto c = vlq::quant::select_calib_samples(pool(CalibKind::kText, "t", 50), im, 5, 42);
  EXPECT_EQ(c[0].text, a[0].text);
  EXPECT_EQ(c[2].text, a[2].text);
  // Another seed, another choice (for this pool size).
  EXPECT_NE(texts(vlq::quant::select_calib_samples(t, {}, 5, 43)), texts(vlq::quant::select_calib_samples(t, {}, 5, 42)));
  // Single pool: its first N after shuffling.
  const auto only = vlq::quant::select_calib_samples({}, im, 2, 7);
  ASSERT_EQ(only.size(), 2u);
  EXPECT_EQ(only[0].text, "i" + std::to_string(vlq::quant::calib_shuffle_order(3, 7 + 0x9E3779B97F4A7C15ULL)[0]));
  VLQ_EXPECT_ERROR(vlq::quant::select_calib_samples(t, im, 0, 1), vlq::UsageError, "at least 1");
  VLQ_EXPECT_ERROR(vlq::quant::select_calib_samples({}, {}, 4, 1), vlq::ConfigError, "no calibration samples");
}

TEST(CalibData, SampleMessages) {
  const CalibSample img{CalibKind::kImageCaption, "A red apple.", "/x/a.png", "a.txt"};
  const auto m = vlq::quant::calib_sample_messages(img);
  EXPECT_EQ(m, nlohmann::ordered_json::parse(R"([
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]},
    {"role": "assistant", "content": "A red apple."}])"));
  const CalibSample txt{CalibKind::kText, "hello", {}, "t.txt:1"};
  VLQ_EXPECT_ERROR(vlq::quant::calib_sample_messages(txt), vlq::UsageError, "t.txt:1", "raw text");
}

TEST(CalibData, CommittedDataSetLoads) {
  const fs::path calib = fs::path(VLQ_SOURCE_DIR) / "data/calib";
  const auto images = vlq::quant::load_calib_images(calib / "images");
  const auto text = vlq::quant::load_calib_text(calib / "text.jsonl");
  EXPECT_GE(images.size(), 60u);
  EXPECT_GE(text.size(), 60u);
  const auto sel = vlq::quant::select_calib_samples(text, images, 32, 0);
  EXPECT_EQ(sel.size(), 32u);
}

}  // namespace

// A caption whose image is missing (misnamed or deleted) is reported, not silently skipped.
TEST(CalibData, CaptionWithoutImageIsAnError) {
  vlq::testing::TempDir dir;
  fs::copy_file(kTinyPng, dir / "a.png");
  write_bytes(dir / "a.txt", "An apple.");
  write_bytes(dir / "orphan.txt", "no image");
  VLQ_EXPECT_ERROR(vlq::quant::load_calib_images(dir.path()), vlq::ConfigError, "caption file(s) without an image: orphan.txt");
}
