// Tests for vlq::model image decoding (JPEG/PNG/WebP -> RGB) against Pillow goldens made by
// tools/make_image_golden.py (Pillow 13.0 and Debian's Pillow 9.4), and for every bad-input error class.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "image/image_test_util.h"
#include "vlq/core/error.h"
#include "vlq/image/image.h"

namespace fs = std::filesystem;
using namespace vlq::image;
using namespace vlq_test_image;

namespace {

ImageDecodeOptions opts(AlphaMode a, PillowCompat p = PillowCompat::kPillow13) {
  ImageDecodeOptions o;
  o.alpha = a;
  o.pillow = p;
  return o;
}

void check_golden_decode(AlphaMode alpha, PillowCompat pillow) {
  const bool drop = alpha == AlphaMode::kDrop;
  const std::string key = std::string(drop ? "drop" : "composite") + "_crc32" +
                          (pillow == PillowCompat::kPillow9 ? "_pillow9" : "");
  int n = 0;
  for (const auto& e : golden()["decode"]) {
    const std::string file = e["file"];
    SCOPED_TRACE(file + " " + key);
    const RgbImage img = load_image(kImages / file, opts(alpha, pillow));
    ASSERT_EQ(img.width, e["width"].get<std::int64_t>());
    ASSERT_EQ(img.height, e["height"].get<std::int64_t>());
    ASSERT_EQ(img.pixels.size(), static_cast<std::size_t>(img.width * img.height * 3));
    const char* raw_key = drop ? "drop_raw" : "composite_raw";
    if (pillow == PillowCompat::kPillow13 && e.contains(raw_key)) {
      const auto want = read_bytes(kImages / e[raw_key].get<std::string>());
      EXPECT_EQ(img.pixels, want) << first_diff(img.pixels, want, img.width);
    }
    EXPECT_EQ(crc32(img.pixels), e[key].get<std::uint32_t>());
    ++n;
  }
  EXPECT_GE(n, 30);
}

template <typename E>
std::string expect_throw(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no exception";
  return {};
}

}  // namespace

TEST(ImageDecode, DropAlphaMatchesPillowConvertRGB) { check_golden_decode(AlphaMode::kDrop, PillowCompat::kPillow13); }

TEST(ImageDecode, CompositeMatchesTransformersConvertToRgb) {
  check_golden_decode(AlphaMode::kCompositeOnWhite, PillowCompat::kPillow13);
}

TEST(ImageDecode, Pillow9CompatMatchesDebianPillow) {
  check_golden_decode(AlphaMode::kDrop, PillowCompat::kPillow9);
  check_golden_decode(AlphaMode::kCompositeOnWhite, PillowCompat::kPillow9);
}

TEST(ImageDecode, HeaderMatchesPillowModeAndSize) {
  for (const auto& e : golden()["decode"]) {
    const std::string file = e["file"];
    SCOPED_TRACE(file);
    const auto bytes = read_bytes(kImages / file);
    const ImageHeader h = read_image_header(bytes, file);
    EXPECT_EQ(h.width, e["width"].get<std::int64_t>());
    EXPECT_EQ(h.height, e["height"].get<std::int64_t>());
    EXPECT_EQ(h.pil_mode, e["pil_mode"].get<std::string>());
    EXPECT_EQ(h.has_transparency, e["has_transparency"].get<bool>());
  }
}

TEST(ImageDecode, SniffsFormatFromBytesNotExtension) {
  EXPECT_EQ(sniff_image_format(read_bytes(kImages / "rocket.jpg")), ImageFormat::kJpeg);
  EXPECT_EQ(sniff_image_format(read_bytes(kImages / "chelsea.png")), ImageFormat::kPng);
  EXPECT_EQ(sniff_image_format(read_bytes(kImages / "chelsea_lossy.webp")), ImageFormat::kWebp);
  EXPECT_FALSE(sniff_image_format(read_bytes(kImages / "bad_format.gif")).has_value());
  // A PNG saved under a .jpg name decodes as PNG.
  const fs::path tmp = fs::temp_directory_path() / ("vlq_image_test_" + std::to_string(::getpid()) + ".jpg");
  fs::copy_file(kImages / "tiny_28x28.png", tmp, fs::copy_options::overwrite_existing);
  const RgbImage a = load_image(tmp);
  fs::remove(tmp);
  const RgbImage b = load_image(kImages / "tiny_28x28.png");
  EXPECT_EQ(a.pixels, b.pixels);
}

TEST(ImageDecode, MemoryBufferEqualsFile) {
  for (const char* f : {"rocket.jpg", "astronaut_rgba.png", "rgba_lossy.webp"}) {
    const auto bytes = read_bytes(kImages / f);
    EXPECT_EQ(decode_image(bytes).pixels, load_image(kImages / f).pixels) << f;
  }
}

TEST(ImageDecode, CompositeOnWhiteFormula) {
  // Fully transparent pixels become white, opaque ones keep their colour (astronaut_rgba corners are
  // transparent, its centre opaque).
  const RgbImage c = load_image(kImages / "astronaut_rgba.png", opts(AlphaMode::kCompositeOnWhite));
  const RgbImage d = load_image(kImages / "astronaut_rgba.png", opts(AlphaMode::kDrop));
  for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(c.pixels[ch], 255);
  const std::size_t centre = (96 * 192 + 96) * 3;
  for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(c.pixels[centre + ch], d.pixels[centre + ch]);
}

// ---- bad inputs: every class gets its typed error ---------------------------------------------------

TEST(ImageDecodeErrors, MissingFileIsIoError) {
  const auto msg = expect_throw<vlq::IoError>([] { load_image(kImages / "does_not_exist.png"); });
  EXPECT_NE(msg.find("does_not_exist.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
  expect_throw<vlq::IoError>([] { load_image(kImages); });  // a directory
}

TEST(ImageDecodeErrors, TruncatedAndCorruptAreFormatErrors) {
  struct Case {
    const char* file;
    const char* needle;
  } cases[] = {
      {"truncated.jpg", "truncated JPEG"},           // skimage's file: cut inside the header
      {"bad_truncated_scan.jpg", "truncated JPEG"},  // rocket.jpg cut at 60 %, inside the scan
      {"bad_truncated.png", "truncated PNG"},
      {"bad_crc.png", "corrupt PNG"},
      {"bad_zlib.png", "corrupt PNG"},
      {"bad_empty.png", "empty image data"},
      {"bad_zero_height.png", "zero-sized PNG"},
      {"bad_zero_width.jpg", "zero-sized JPEG"},
  };
  for (const auto& c : cases) {
    const auto msg = expect_throw<vlq::FormatError>([&] { load_image(kImages / c.file); });
    EXPECT_NE(msg.find(c.needle), std::string::npos) << c.file << ": " << msg;
    EXPECT_NE(msg.find(c.file), std::string::npos) << c.file << ": " << msg;
  }
  // Truncated WebP.
  auto webp = read_bytes(kImages / "chelsea_lossy.webp");
  webp.resize(webp.size() / 2);
  const auto msg = expect_throw<vlq::FormatError>([&] { decode_image(webp); });
  EXPECT_NE(msg.find("WebP"), std::string::npos) << msg;
}

TEST(ImageDecodeErrors, UnsupportedFormatNamesWhatWasFound) {
  struct Case {
    const char* file;
    const char* found;
  } cases[] = {{"bad_format.gif", "found GIF"},
               {"bad_format.bmp", "found BMP"},
               {"bad_format.tiff", "found TIFF"},
               {"bad_random.bin", "found unknown (first bytes: "},
               {"bad_animated.webp", "animated WebP"}};
  for (const auto& c : cases) {
    const auto msg = expect_throw<vlq::UnsupportedError>([&] { load_image(kImages / c.file); });
    EXPECT_NE(msg.find(c.found), std::string::npos) << c.file << ": " << msg;
  }
}

TEST(ImageDecodeErrors, HugeDimensionsRefusedFromHeaderBeforeAllocating) {
  for (const char* f : {"bad_huge_dims.png", "bad_huge_dims.jpg"}) {
    // 100000x100000 / 60000x60000: decoding would need 30 GB / 10.8 GB; the header check must refuse it
    // at once.
    const auto t0 = std::chrono::steady_clock::now();
    const auto msg = expect_throw<vlq::UnsupportedError>([&] { load_image(kImages / f); });
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
    EXPECT_NE(msg.find("too large"), std::string::npos) << msg;
  }
  ImageDecodeOptions small;
  small.max_pixels = 1000;
  for (const char* f : {"rocket.jpg", "chelsea.png", "chelsea_lossy.webp"})
    expect_throw<vlq::UnsupportedError>([&] { load_image(kImages / f, small); });
  ImageDecodeOptions tiny_file;
  tiny_file.max_file_bytes = 100;
  expect_throw<vlq::UnsupportedError>([&] { load_image(kImages / "rocket.jpg", tiny_file); });
  // The header of a huge image is still readable.
  const ImageHeader h = read_image_header(read_bytes(kImages / "bad_huge_dims.png"));
  EXPECT_EQ(h.width, 100000);
}

TEST(ImageDecodeErrors, DamagedBytesNeverCrash) {
  // Truncations and random byte flips of valid files: decode must succeed or throw a vlq::Error.
  std::mt19937 rng(1234);
  int errors = 0, ok = 0;
  for (const char* f : {"tiny_28x28.png", "rgb_interlaced.png", "palette_trns.png", "gray16.png", "cmyk.jpg",
                        "camera_gray.jpg", "rgba_lossy.webp", "rgba_lossless.webp"}) {
    const auto orig = read_bytes(kImages / f);
    for (int trial = 0; trial < 40; ++trial) {
      auto b = orig;
      if (trial % 2 == 0) {
        b.resize(std::uniform_int_distribution<std::size_t>(0, b.size())(rng));
      } else {
        for (int k = 0; k < 3; ++k) b[std::uniform_int_distribution<std::size_t>(0, b.size() - 1)(rng)] ^= 0x5A;
      }
      try {
        (void)decode_image(b);
        ++ok;
      } catch (const vlq::Error&) {
        ++errors;
      }
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(ok, 0);
}

TEST(ImageDecode, DescribeSignature) {
  EXPECT_EQ(describe_image_signature({}), "empty");
  const std::uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 0, 0};
  EXPECT_EQ(describe_image_signature(gif), "GIF");
  const std::uint8_t x[] = {1, 2, 0xAB};
  EXPECT_EQ(describe_image_signature(x), "unknown (first bytes: 01 02 AB)");
  EXPECT_STREQ(image_format_name(ImageFormat::kWebp), "WebP");
}
