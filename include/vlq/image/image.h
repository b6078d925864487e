// Image decoding for the runtime: JPEG (libturbojpeg), PNG (libpng) and WebP (libwebp) from a file or a
// memory buffer to 8-bit RGB, converted exactly the way Pillow / the Hugging Face image processor do it.
//
// Spec: /work/shared/docs/qwen2_5_vl.md §2.2 step 1 (RGB conversion) and dependencies.md §1 (JPEG/PNG/WebP).
// Behaviour follows Pillow 9.4 and 13.0 (both checked by tools/make_image_golden.py):
// - The format is sniffed from the magic bytes, never from the file name.
// - JPEG: libjpeg-turbo with its defaults (ISLOW IDCT, fancy upsampling), as Pillow. Grayscale JPEG is
//   replicated to R=G=B. CMYK/YCCK JPEG: inverted when the file has an Adobe APP14 marker (Pillow's
//   "CMYK;I"), then Pillow's cmyk2rgb: nk = 255-K, channel = clip(nk - MULDIV255(c, nk)). EXIF orientation
//   is NOT applied (neither Image.open nor transformers applies it).
// - PNG: 1/2/4-bit gray is scaled to 0..255 (x255, x85, x17); 16-bit gray is CLAMPED to 255 (Pillow's
//   "I;16" -> "RGB" conversion: min(v, 255), so most 16-bit gray images come out nearly white, exactly like
//   Pillow); 16-bit RGB/RGBA/gray+alpha keep the most significant byte; palette indices beyond the
//   palette give black (Pillow 13) or gray (i,i,i) (Pillow 9), see PillowCompat. Gamma, sBIT, iCCP, cHRM are ignored (Pillow ignores them too).
// - WebP: still images only (animated WebP: UnsupportedError); libwebp's default (fancy) upsampling.
// - Alpha (RGBA, gray+alpha, palette with tRNS, gray/RGB with a tRNS colour key) is handled per
//   AlphaMode: kCompositeOnWhite reproduces transformers' convert_to_rgb (what Qwen2VLImageProcessor does
//   with do_convert_rgb=True: Pillow's integer alpha_composite over opaque white), kDrop reproduces
//   Pillow's Image.convert("RGB") (alpha ignored). For tRNS colour keys Pillow compares the 8-bit
//   converted sample with the raw tRNS value (1-bit gray: value*255); vlq does the same.
//
// Errors (vlq/core/error.h), each naming the source (path or "<memory>"):
// - IoError: file missing or unreadable.
// - FormatError: empty, truncated or corrupt data; zero width or height; the decoder's message is kept.
// - UnsupportedError: not JPEG/PNG/WebP (the message names what was found, e.g. "GIF", "BMP", or the
//   first bytes in hex); animated WebP; width*height above ImageDecodeOptions::max_pixels or file above
//   max_file_bytes (checked from the header / file size before any pixel buffer is allocated).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vlq::image {

enum class ImageFormat { kJpeg, kPng, kWebp };
// "JPEG", "PNG", "WebP".
const char* image_format_name(ImageFormat f) noexcept;

// Format from the magic bytes: FF D8 FF (JPEG), 89 'PNG' 0D 0A 1A 0A (PNG), 'RIFF' ???? 'WEBP' (WebP).
// nullopt for anything else (including buffers too short to tell).
std::optional<ImageFormat> sniff_image_format(std::span<const std::uint8_t> bytes) noexcept;

// Human-readable name of what the bytes look like, for error messages: "JPEG", "PNG", "WebP", "GIF",
// "BMP", "TIFF", "ICO", "JPEG 2000", "HEIF/AVIF", "PSD", "PDF", "SVG/XML", "QOI", "JPEG XL", "empty", or
// "unknown (first bytes: 47 49 46 ...)" with up to 8 bytes in hex.
std::string describe_image_signature(std::span<const std::uint8_t> bytes);

// Which Pillow release's behaviour is reproduced where releases differ. Differences found so far (by
// tools/make_image_golden.py, Pillow 13.0 vs Debian's 9.4):
// - palette indices beyond the PLTE entries: black in Pillow 13, gray (i, i, i) in Pillow 9;
// - bicubic resize pass order: see resize_bicubic() in image_processor.h.
// kPillow13 matches the reference environment (transformers 5.x + Pillow 13) and is the default.
enum class PillowCompat { kPillow13, kPillow9 };

// How transparency is turned into RGB (see the file comment).
enum class AlphaMode {
  kCompositeOnWhite,  // transformers convert_to_rgb: alpha-composite over opaque white (Qwen2-VL processor)
  kDrop,              // Pillow Image.convert("RGB"): alpha ignored
};

struct ImageDecodeOptions {
  AlphaMode alpha = AlphaMode::kCompositeOnWhite;
  // Largest accepted width*height, checked from the header before allocating. 2^28 = 268,435,456
  // pixels (a 768 MiB RGB buffer); Pillow's own decompression-bomb limit is 178,956,970.
  std::int64_t max_pixels = std::int64_t{1} << 28;
  // Largest accepted file for load_image (bytes); the whole file is read into memory.
  std::int64_t max_file_bytes = std::int64_t{1} << 30;
  PillowCompat pillow = PillowCompat::kPillow13;
};

// What the header says, without decoding pixels.
struct ImageHeader {
  ImageFormat format = ImageFormat::kJpeg;
  std::int64_t width = 0;
  std::int64_t height = 0;
  // The mode Pillow's Image.open reports: "RGB", "RGBA", "L", "LA", "P", "1", "I;16", "CMYK".
  std::string pil_mode;
  // True when the image carries transparency Pillow would see: an alpha channel, or a tRNS chunk.
  bool has_transparency = false;
};

// 8-bit RGB image. pixels: [height, width, 3] uint8, row-major, interleaved R,G,B.
struct RgbImage {
  std::int64_t width = 0;
  std::int64_t height = 0;
  std::vector<std::uint8_t> pixels;
};

// Parses the header of an in-memory image. `source` names the data in error messages. Throws
// FormatError (empty/corrupt/truncated header, zero size) or UnsupportedError (other formats, animated
// WebP). Does not apply max_pixels.
ImageHeader read_image_header(std::span<const std::uint8_t> bytes, const std::string& source = "<memory>");

// Decodes an in-memory JPEG/PNG/WebP (e.g. the payload of a data: URL) to RGB. Throws FormatError,
// UnsupportedError as described in the file comment.
RgbImage decode_image(std::span<const std::uint8_t> bytes, const ImageDecodeOptions& options = {},
                      const std::string& source = "<memory>");

// Reads `path` and decodes it. Throws IoError (missing/unreadable), UnsupportedError (file larger than
// max_file_bytes) and everything decode_image throws; messages name the path.
RgbImage load_image(const std::filesystem::path& path, const ImageDecodeOptions& options = {});

// Reads a whole file into memory (at most max_bytes). Throws IoError / UnsupportedError (too large).
std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path, std::int64_t max_bytes);

}  // namespace vlq::image
