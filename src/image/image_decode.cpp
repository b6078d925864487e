// Image decoding (JPEG via libturbojpeg, PNG via libpng, WebP via libwebp) to Pillow-identical 8-bit RGB.
// See include/vlq/model/image.h for the conversion rules and errors.
#include "vlq/image/image.h"

#include <png.h>
#include <turbojpeg.h>
#include <webp/decode.h>

#include <algorithm>
#include <array>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "vlq/core/error.h"

namespace vlq::image {
namespace {

using Bytes = std::span<const std::uint8_t>;

[[noreturn]] void fail_format(const std::string& src, std::string what, std::string expected = {},
                              std::string found = {}, std::string hint = {}) {
  throw FormatError({src, std::move(what), std::move(expected), std::move(found), std::move(hint)});
}

[[noreturn]] void fail_unsupported(const std::string& src, std::string what, std::string expected = {},
                                   std::string found = {}, std::string hint = {}) {
  throw UnsupportedError({src, std::move(what), std::move(expected), std::move(found), std::move(hint)});
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
std::uint32_t be16(const std::uint8_t* p) { return (std::uint32_t{p[0]} << 8) | p[1]; }

void check_size(const std::string& src, ImageFormat fmt, std::int64_t w, std::int64_t h,
                const ImageDecodeOptions& opt) {
  if (w <= 0 || h <= 0)
    fail_format(src, fmt::format("zero-sized {} image", image_format_name(fmt)), "width and height >= 1",
                fmt::format("{}x{}", w, h), "the file is corrupt or not a real image");
  if (w > opt.max_pixels / h)
    fail_unsupported(src, fmt::format("{} image is too large to decode", image_format_name(fmt)),
                     fmt::format("at most {} pixels", opt.max_pixels),
                     fmt::format("{}x{} = {} pixels", w, h, w * h),
                     "downscale the image");
}

// Pillow's alpha_composite(white opaque background, src).convert("RGB") for one channel. With an opaque
// white destination, Pillow's coef1 = a*255*255*128 / (255*255) is exactly a*128 (verified exhaustively
// against Pillow 9.4 and 13.0 by tools/make_image_golden.py).
inline std::uint8_t composite_on_white(std::uint32_t c, std::uint32_t a) {
  if (a == 0) return 255;
  const std::uint32_t coef1 = a * 128u;
  const std::uint32_t coef2 = 255u * 128u - coef1;
  const std::uint32_t tmp = c * coef1 + 255u * coef2 + (0x80u << 7);
  return static_cast<std::uint8_t>((((tmp >> 8) + tmp) >> 8) >> 7);
}

inline void put_rgba(std::uint8_t* out, std::uint8_t r, std::uint8_t g, std::uint8_t b, std::uint8_t a,
                     bool composite) {
  if (composite && a != 255) {
    out[0] = composite_on_white(r, a);
    out[1] = composite_on_white(g, a);
    out[2] = composite_on_white(b, a);
  } else {
    out[0] = r;
    out[1] = g;
    out[2] = b;
  }
}

// Converts interleaved RGBA (4 bytes/pixel) to RGB in place (the RGB data ends up in the first 3/4).
void rgba_to_rgb_in_place(std::vector<std::uint8_t>& buf, std::size_t n_pixels, bool composite) {
  std::uint8_t* p = buf.data();
  for (std::size_t i = 0; i < n_pixels; ++i) {
    const std::uint8_t r = p[4 * i], g = p[4 * i + 1], b = p[4 * i + 2], a = p[4 * i + 3];
    put_rgba(p + 3 * i, r, g, b, a, composite);
  }
  buf.resize(n_pixels * 3);
}

// ------------------------------------------------------------------------------------------------ JPEG

struct JpegScan {
  std::int64_t width = 0, height = 0;
  int components = 0;
  bool have_sof = false;
};

// Walks the JPEG markers up to the first SOS to read the frame header (SOFn). Throws FormatError on a
// malformed or truncated header.
JpegScan scan_jpeg(Bytes b, const std::string& src) {
  JpegScan s;
  std::size_t pos = 2;  // after SOI
  while (true) {
    if (pos >= b.size())
      fail_format(src, "truncated JPEG data", "a complete JPEG header", "end of data before the scan",
                  "the file is cut short; re-download or re-export it");
    if (b[pos] != 0xFF) {  // junk between markers: skip like libjpeg (which warns)
      ++pos;
      continue;
    }
    while (pos < b.size() && b[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= b.size()) continue;
    const std::uint8_t m = b[pos++];
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // standalone markers
    if (m == 0xD9) fail_format(src, "JPEG has no image data", "a frame and a scan", "end-of-image marker");
    if (pos + 2 > b.size()) continue;  // reported as truncated at the loop top
    const std::size_t len = be16(&b[pos]);
    if (len < 2) fail_format(src, "corrupt JPEG marker segment", "length >= 2", fmt::format("{}", len));
    if (pos + len > b.size()) {
      pos = b.size();
      continue;
    }
    const std::uint8_t* seg = &b[pos + 2];
    const std::size_t seg_len = len - 2;
    const bool is_sof = (m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (is_sof && !s.have_sof) {
      if (seg_len < 6) fail_format(src, "corrupt JPEG frame header", "at least 6 bytes", fmt::format("{}", seg_len));
      s.height = be16(seg + 1);
      s.width = be16(seg + 3);
      s.components = seg[5];
      s.have_sof = true;
    }
    if (m == 0xDA) {
      if (!s.have_sof) fail_format(src, "corrupt JPEG: scan before frame header", "SOFn before SOS");
      return s;
    }
    pos += len;
  }
}

struct TjHandle {
  tjhandle h = nullptr;
  ~TjHandle() {
    if (h) tjDestroy(h);
  }
};

bool is_truncation_message(const char* msg) {
  return std::strstr(msg, "Premature end of JPEG file") != nullptr ||
         std::strstr(msg, "premature end of data segment") != nullptr;
}

RgbImage decode_jpeg(Bytes b, const ImageDecodeOptions& opt, const std::string& src) {
  const JpegScan scan = scan_jpeg(b, src);
  check_size(src, ImageFormat::kJpeg, scan.width, scan.height, opt);
  TjHandle tj;
  tj.h = tjInitDecompress();
  if (!tj.h) throw Error({src, "cannot initialise libturbojpeg", "", tjGetErrorStr2(nullptr), ""});
  int w = 0, h = 0, subsamp = 0, cs = 0;
  if (tjDecompressHeader3(tj.h, b.data(), static_cast<unsigned long>(b.size()), &w, &h, &subsamp, &cs) != 0)
    fail_format(src, "corrupt JPEG header", "", tjGetErrorStr2(tj.h));
  check_size(src, ImageFormat::kJpeg, w, h, opt);
  const bool cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
  const int pf = cmyk ? TJPF_CMYK : TJPF_RGB;
  const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
  RgbImage img;
  img.width = w;
  img.height = h;
  img.pixels.resize(n * (cmyk ? 4 : 3));
  auto run = [&](int flags) {
    return tjDecompress2(tj.h, b.data(), static_cast<unsigned long>(b.size()), img.pixels.data(), w, 0, h, pf,
                         flags);
  };
  // Pillow fails on a truncated JPEG ("image file is truncated") and ignores libjpeg's other warnings.
  // TurboJPEG keeps only the last message, so decode once stopping at the first warning: a truncation
  // fails, any other warning is decoded again without stopping (as Pillow would).
  if (run(TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0) {
    std::string msg = tjGetErrorStr2(tj.h);
    const bool fatal = tjGetErrorCode(tj.h) == TJERR_FATAL;
    if (is_truncation_message(msg.c_str()))
      fail_format(src, "truncated JPEG data", "a complete JPEG file", msg,
                  "the file is cut short; re-download or re-export it");
    if (fatal) {
      if (msg.find("Unsupported") != std::string::npos || msg.find("not supported") != std::string::npos)
        fail_unsupported(src, "unsupported JPEG variant", "", msg, "re-encode the image as baseline JPEG or PNG");
      fail_format(src, "corrupt JPEG data", "", msg, "the file is damaged; re-export it");
    }
    if (run(TJFLAG_LIMITSCANS) != 0) {
      msg = tjGetErrorStr2(tj.h);
      if (tjGetErrorCode(tj.h) == TJERR_FATAL) fail_format(src, "corrupt JPEG data", "", msg);
      if (is_truncation_message(msg.c_str()))
        fail_format(src, "truncated JPEG data", "a complete JPEG file", msg,
                    "the file is cut short; re-download or re-export it");
    }
  }
  if (cmyk) {
    // Pillow opens 4-component JPEG as "CMYK;I" (inverted, "assume adobe conventions"), then cmyk2rgb:
    // nk = 255 - K; out = clip(nk - MULDIV255(C, nk)). With the inversion, nk is the raw K sample.
    std::uint8_t* p = img.pixels.data();
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t nk = p[4 * i + 3];
      for (int c = 0; c < 3; ++c) {
        const std::uint32_t v = 255u - p[4 * i + c];
        const std::uint32_t t = v * nk + 128u;
        const std::uint32_t m = ((t >> 8) + t) >> 8;
        p[3 * i + c] = static_cast<std::uint8_t>(nk >= m ? nk - m : 0);
      }
    }
    img.pixels.resize(n * 3);
  }
  return img;
}

// ------------------------------------------------------------------------------------------------- PNG

struct PngIhdr {
  std::int64_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
};

PngIhdr parse_png_ihdr(Bytes b, const std::string& src) {
  if (b.size() < 33)
    fail_format(src, "truncated PNG data", "a complete IHDR chunk (33 bytes)", fmt::format("{} bytes", b.size()),
                "the file is cut short; re-download or re-export it");
  if (be32(&b[8]) != 13 || std::memcmp(&b[12], "IHDR", 4) != 0)
    fail_format(src, "corrupt PNG: first chunk is not IHDR", "IHDR of length 13",
                fmt::format("'{}' of length {}", std::string(reinterpret_cast<const char*>(&b[12]), 4), be32(&b[8])));
  PngIhdr h;
  h.width = be32(&b[16]);
  h.height = be32(&b[20]);
  h.bit_depth = b[24];
  h.color_type = b[25];
  h.interlace = b[28];
  return h;
}

std::string png_pil_mode(int color_type, int bit_depth) {
  switch (color_type) {
    case 0: return bit_depth == 1 ? "1" : bit_depth == 16 ? "I;16" : "L";
    case 2: return "RGB";
    case 3: return "P";
    case 4: return bit_depth == 16 ? "RGBA" : "LA";  // Pillow 13 opens 16-bit gray+alpha as RGBA
    case 6: return "RGBA";
    default: return "?";
  }
}

struct PngCtx {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  std::size_t pos = 0;
  bool truncated = false;
  char error[512] = {0};
};

void png_error_cb(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngCtx*>(png_get_error_ptr(png));
  std::snprintf(ctx->error, sizeof(ctx->error), "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}
void png_warning_cb(png_structp, png_const_charp) {}  // Pillow ignores ancillary problems too

void png_read_cb(png_structp png, png_bytep out, size_t n) {
  auto* ctx = static_cast<PngCtx*>(png_get_io_ptr(png));
  if (n > ctx->size - ctx->pos) {
    ctx->truncated = true;
    png_error(png, "unexpected end of PNG data");
  }
  std::memcpy(out, ctx->data + ctx->pos, n);
  ctx->pos += n;
}

struct PngStructs {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngStructs() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

// How one PNG row (after png_set_packing: >= 1 byte per sample) becomes RGB. All fields are plain data
// so the converter can run between libpng calls inside the setjmp-protected region.
struct PngRowConverter {
  int color_type = 0, bit_depth = 0;
  bool composite = false;
  std::uint8_t palette[256][4] = {};  // RGBA; entries beyond PLTE are black, alpha from tRNS or 255
  bool has_key = false;               // tRNS colour key for gray / RGB
  std::uint32_t key[3] = {0, 0, 0};   // raw tRNS values, compared with the 8-bit converted samples
  std::int64_t width = 0;

  void convert(const std::uint8_t* in, std::uint8_t* out) const {
    const bool c = composite;
    switch (color_type) {
      case 0: {  // gray
        const int scale = bit_depth == 1 ? 255 : bit_depth == 2 ? 85 : bit_depth == 4 ? 17 : 1;
        for (std::int64_t x = 0; x < width; ++x) {
          std::uint32_t v;
          if (bit_depth == 16) {
            const std::uint32_t v16 = be16(in + 2 * x);
            v = std::min<std::uint32_t>(v16, 255);  // Pillow "I;16" -> "RGB" clamps
          } else {
            v = static_cast<std::uint32_t>(in[x]) * scale;
          }
          const std::uint8_t a = (has_key && v == key[0]) ? 0 : 255;
          put_rgba(out + 3 * x, v, v, v, a, c);
        }
        break;
      }
      case 2: {  // RGB
        for (std::int64_t x = 0; x < width; ++x) {
          std::uint8_t r, g, b;
          if (bit_depth == 16) {
            r = in[6 * x], g = in[6 * x + 2], b = in[6 * x + 4];
          } else {
            r = in[3 * x], g = in[3 * x + 1], b = in[3 * x + 2];
          }
          const std::uint8_t a = (has_key && r == key[0] && g == key[1] && b == key[2]) ? 0 : 255;
          put_rgba(out + 3 * x, r, g, b, a, c);
        }
        break;
      }
      case 3: {  // palette
        for (std::int64_t x = 0; x < width; ++x) {
          const std::uint8_t* e = palette[in[x]];
          put_rgba(out + 3 * x, e[0], e[1], e[2], e[3], c);
        }
        break;
      }
      case 4: {  // gray + alpha
        const int step = bit_depth == 16 ? 4 : 2;
        const int aoff = bit_depth == 16 ? 2 : 1;
        for (std::int64_t x = 0; x < width; ++x) {
          const std::uint8_t v = in[step * x], a = in[step * x + aoff];
          put_rgba(out + 3 * x, v, v, v, a, c);
        }
        break;
      }
      case 6: {  // RGBA
        const int step = bit_depth == 16 ? 8 : 4;
        const int s = bit_depth == 16 ? 2 : 1;
        for (std::int64_t x = 0; x < width; ++x) {
          const std::uint8_t* p = in + step * x;
          put_rgba(out + 3 * x, p[0], p[s], p[2 * s], p[3 * s], c);
        }
        break;
      }
      default: break;
    }
  }
};

[[noreturn]] void fail_png(const PngCtx& ctx, const std::string& src) {
  if (ctx.truncated)
    fail_format(src, "truncated PNG data", "a complete PNG file", "end of data inside the image",
                "the file is cut short; re-download or re-export it");
  fail_format(src, "corrupt PNG data", "", ctx.error, "the file is damaged; re-export it");
}

RgbImage decode_png(Bytes b, const ImageDecodeOptions& opt, const std::string& src) {
  const PngIhdr ihdr = parse_png_ihdr(b, src);
  check_size(src, ImageFormat::kPng, ihdr.width, ihdr.height, opt);

  // Heap state: longjmp returns into this frame, and locals changed after setjmp would be indeterminate.
  auto ctx = std::make_unique<PngCtx>();
  ctx->data = b.data();
  ctx->size = b.size();
  auto conv = std::make_unique<PngRowConverter>();
  RgbImage img;
  PngStructs ps;
  ps.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx.get(), png_error_cb, png_warning_cb);
  if (!ps.png) throw Error({src, "cannot initialise libpng", "", "", ""});
  ps.info = png_create_info_struct(ps.png);
  if (!ps.info) throw Error({src, "cannot initialise libpng", "", "", ""});
  png_set_read_fn(ps.png, ctx.get(), png_read_cb);
  png_set_user_limits(ps.png, 0x7fffffffU, 0x7fffffffU);  // vlq checks max_pixels itself
  png_set_benign_errors(ps.png, 1);

  if (setjmp(png_jmpbuf(ps.png))) fail_png(*ctx, src);
  png_read_info(ps.png, ps.info);
  // Everything below until the next setjmp runs without libpng calls that can longjmp, except the
  // getters (which do not fail).
  png_uint_32 w = 0, h = 0;
  int bd = 0, ct = 0, il = 0;
  png_get_IHDR(ps.png, ps.info, &w, &h, &bd, &ct, &il, nullptr, nullptr);
  conv->color_type = ct;
  conv->bit_depth = bd;
  conv->width = w;
  conv->composite = opt.alpha == AlphaMode::kCompositeOnWhite;
  if (ct == PNG_COLOR_TYPE_PALETTE) {
    png_colorp plte = nullptr;
    int n_plte = 0;
    if (!(png_get_PLTE(ps.png, ps.info, &plte, &n_plte) & PNG_INFO_PLTE)) n_plte = 0;
    if (n_plte > 0) {
      for (int i = 0; i < n_plte && i < 256; ++i) {
        conv->palette[i][0] = plte[i].red;
        conv->palette[i][1] = plte[i].green;
        conv->palette[i][2] = plte[i].blue;
      }
    }
    for (int i = 0; i < 256; ++i) {
      if (i >= n_plte && opt.pillow == PillowCompat::kPillow9)  // Pillow 9 pads with a gray ramp
        conv->palette[i][0] = conv->palette[i][1] = conv->palette[i][2] = static_cast<std::uint8_t>(i);
      conv->palette[i][3] = 255;
    }
  }
  {
    png_bytep trans_alpha = nullptr;
    int n_trans = 0;
    png_color_16p trans_color = nullptr;
    if (png_get_tRNS(ps.png, ps.info, &trans_alpha, &n_trans, &trans_color) & PNG_INFO_tRNS) {
      if (ct == PNG_COLOR_TYPE_PALETTE && trans_alpha) {
        for (int i = 0; i < n_trans && i < 256; ++i) conv->palette[i][3] = trans_alpha[i];
      } else if (ct == PNG_COLOR_TYPE_GRAY && trans_color) {
        conv->has_key = true;
        conv->key[0] = trans_color->gray * (bd == 1 ? 255u : 1u);  // Pillow stores 1-bit keys as 0/255
      } else if (ct == PNG_COLOR_TYPE_RGB && trans_color) {
        conv->has_key = true;
        conv->key[0] = trans_color->red;
        conv->key[1] = trans_color->green;
        conv->key[2] = trans_color->blue;
      }
    }
  }
  if (ct != 0 && ct != 2 && ct != 3 && ct != 4 && ct != 6)
    fail_format(src, "corrupt PNG: invalid colour type", "0, 2, 3, 4 or 6", fmt::format("{}", ct));
  check_size(src, ImageFormat::kPng, w, h, opt);

  if (bd < 8) png_set_packing(ps.png);
  const int passes = png_set_interlace_handling(ps.png);
  png_read_update_info(ps.png, ps.info);
  const std::size_t rowbytes = png_get_rowbytes(ps.png, ps.info);
  const std::size_t height = h;
  img.width = w;
  img.height = h;
  img.pixels.resize(static_cast<std::size_t>(w) * height * 3);
  // Interlaced images need every row in memory until the last pass; progressive rows otherwise.
  std::vector<std::uint8_t> raw(passes > 1 ? rowbytes * height : rowbytes);
  std::vector<png_bytep> rows;
  if (passes > 1) {
    rows.resize(height);
    for (std::size_t y = 0; y < height; ++y) rows[y] = raw.data() + y * rowbytes;
  }
  // volatile: these locals must keep their values across setjmp (-Wclobbered).
  std::uint8_t* volatile const raw_ptr = raw.data();
  png_bytep* volatile const rows_ptr = rows.data();
  std::uint8_t* volatile const out_ptr = img.pixels.data();
  volatile const std::size_t out_stride = static_cast<std::size_t>(w) * 3;
  const PngRowConverter* volatile const cv = conv.get();

  if (setjmp(png_jmpbuf(ps.png))) fail_png(*ctx, src);
  if (passes > 1) {
    png_read_image(ps.png, rows_ptr);
    for (std::size_t y = 0; y < height; ++y) cv->convert(rows_ptr[y], out_ptr + y * out_stride);
  } else {
    for (std::size_t y = 0; y < height; ++y) {
      png_read_row(ps.png, raw_ptr, nullptr);
      cv->convert(raw_ptr, out_ptr + y * out_stride);
    }
  }
  // No png_read_end: like Pillow, data after the image (a missing IEND, trailing chunks) is not checked.
  return img;
}

// ------------------------------------------------------------------------------------------------ WebP

const char* vp8_status_name(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OK: return "OK";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "user abort";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data";
  }
  return "unknown status";
}

[[noreturn]] void fail_webp(VP8StatusCode st, const std::string& src) {
  if (st == VP8_STATUS_NOT_ENOUGH_DATA)
    fail_format(src, "truncated WebP data", "a complete WebP file", "libwebp: not enough data",
                "the file is cut short; re-download or re-export it");
  if (st == VP8_STATUS_UNSUPPORTED_FEATURE)
    fail_unsupported(src, "unsupported WebP feature", "", "libwebp: unsupported feature",
                     "re-encode the image as PNG or JPEG");
  fail_format(src, "corrupt WebP data", "", fmt::format("libwebp: {}", vp8_status_name(st)),
              "the file is damaged; re-export it");
}

WebPBitstreamFeatures webp_features(Bytes b, const std::string& src) {
  WebPBitstreamFeatures f;
  const VP8StatusCode st = WebPGetFeatures(b.data(), b.size(), &f);
  if (st != VP8_STATUS_OK) fail_webp(st, src);
  if (f.has_animation)
    fail_unsupported(src, "animated WebP is not supported", "a still WebP image", "an animation",
                     "extract one frame (e.g. with webpmux or anim_dump) and pass that");
  return f;
}

RgbImage decode_webp(Bytes b, const ImageDecodeOptions& opt, const std::string& src) {
  const WebPBitstreamFeatures f = webp_features(b, src);
  check_size(src, ImageFormat::kWebp, f.width, f.height, opt);
  const std::size_t n = static_cast<std::size_t>(f.width) * static_cast<std::size_t>(f.height);
  const int ch = f.has_alpha ? 4 : 3;
  RgbImage img;
  img.width = f.width;
  img.height = f.height;
  img.pixels.resize(n * ch);
  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) throw Error({src, "cannot initialise libwebp", "", "", ""});
  config.output.colorspace = f.has_alpha ? MODE_RGBA : MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = img.pixels.data();
  config.output.u.RGBA.stride = f.width * ch;
  config.output.u.RGBA.size = img.pixels.size();
  const VP8StatusCode st = WebPDecode(b.data(), b.size(), &config);
  WebPFreeDecBuffer(&config.output);
  if (st != VP8_STATUS_OK) fail_webp(st, src);
  if (f.has_alpha) rgba_to_rgb_in_place(img.pixels, n, opt.alpha == AlphaMode::kCompositeOnWhite);
  return img;
}

[[noreturn]] void fail_not_image(Bytes b, const std::string& src) {
  if (b.empty()) fail_format(src, "empty image data", "JPEG, PNG or WebP bytes", "0 bytes");
  fail_unsupported(src, "unsupported image format", "JPEG, PNG or WebP", describe_image_signature(b),
                   "convert the image to PNG or JPEG");
}

}  // namespace

const char* image_format_name(ImageFormat f) noexcept {
  switch (f) {
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kWebp: return "WebP";
  }
  return "?";
}

std::optional<ImageFormat> sniff_image_format(std::span<const std::uint8_t> b) noexcept {
  static constexpr std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::kJpeg;
  if (b.size() >= 8 && std::memcmp(b.data(), kPng, 8) == 0) return ImageFormat::kPng;
  if (b.size() >= 12 && std::memcmp(b.data(), "RIFF", 4) == 0 && std::memcmp(b.data() + 8, "WEBP", 4) == 0)
    return ImageFormat::kWebp;
  return std::nullopt;
}

std::string describe_image_signature(std::span<const std::uint8_t> b) {
  if (b.empty()) return "empty";
  if (auto f = sniff_image_format(b)) return image_format_name(*f);
  auto starts = [&](std::string_view s, std::size_t off = 0) {
    return b.size() >= off + s.size() && std::memcmp(b.data() + off, s.data(), s.size()) == 0;
  };
  if (starts("GIF87a") || starts("GIF89a")) return "GIF";
  if (starts("BM")) return "BMP";
  if (starts(std::string_view("II*\0", 4)) || starts(std::string_view("MM\0*", 4))) return "TIFF";
  if (starts(std::string_view("\0\0\1\0", 4))) return "ICO";
  if (starts(std::string_view("\0\0\0\x0cjP  ", 8)) || starts("\xFF\x4F\xFF\x51")) return "JPEG 2000";
  if (starts(std::string_view("\0\0\0\x0cJXL ", 8)) || starts("\xFF\x0A")) return "JPEG XL";
  if (starts("ftyp", 4)) {
    if (starts("avif", 8) || starts("avis", 8)) return "AVIF";
    if (starts("heic", 8) || starts("heix", 8) || starts("mif1", 8) || starts("msf1", 8)) return "HEIF";
  }
  if (starts("8BPS")) return "PSD";
  if (starts("%PDF")) return "PDF";
  if (starts("qoif")) return "QOI";
  if (starts("RIFF")) return "RIFF (not WebP)";
  if (starts("<?xml") || starts("<svg")) return "SVG/XML";
  if (b.size() >= 2 && b[0] == 0xFF && b[1] == 0xD8) return "truncated JPEG signature";
  std::string hex;
  for (std::size_t i = 0; i < b.size() && i < 8; ++i) hex += fmt::format("{}{:02X}", i ? " " : "", b[i]);
  return fmt::format("unknown (first bytes: {})", hex);
}

ImageHeader read_image_header(std::span<const std::uint8_t> b, const std::string& source) {
  const auto fmt_opt = sniff_image_format(b);
  if (!fmt_opt) fail_not_image(b, source);
  ImageHeader h;
  h.format = *fmt_opt;
  switch (*fmt_opt) {
    case ImageFormat::kJpeg: {
      const JpegScan s = scan_jpeg(b, source);
      h.width = s.width;
      h.height = s.height;
      h.pil_mode = s.components == 1 ? "L" : s.components == 4 ? "CMYK" : "RGB";
      break;
    }
    case ImageFormat::kPng: {
      const PngIhdr ihdr = parse_png_ihdr(b, source);
      h.width = ihdr.width;
      h.height = ihdr.height;
      h.pil_mode = png_pil_mode(ihdr.color_type, ihdr.bit_depth);
      h.has_transparency = ihdr.color_type == 4 || ihdr.color_type == 6;
      // Look for tRNS among the chunks before the first IDAT.
      std::size_t pos = 8;
      while (pos + 8 <= b.size()) {
        const std::uint32_t len = be32(&b[pos]);
        if (std::memcmp(&b[pos + 4], "IDAT", 4) == 0) break;
        if (std::memcmp(&b[pos + 4], "tRNS", 4) == 0) h.has_transparency = true;
        if (len > b.size() - pos - 8) break;
        pos += std::size_t{len} + 12;
      }
      break;
    }
    case ImageFormat::kWebp: {
      const WebPBitstreamFeatures f = webp_features(b, source);
      h.width = f.width;
      h.height = f.height;
      h.pil_mode = f.has_alpha ? "RGBA" : "RGB";
      h.has_transparency = f.has_alpha;
      break;
    }
  }
  if (h.width <= 0 || h.height <= 0)
    fail_format(source, fmt::format("zero-sized {} image", image_format_name(h.format)), "width and height >= 1",
                fmt::format("{}x{}", h.width, h.height), "the file is corrupt or not a real image");
  return h;
}

RgbImage decode_image(std::span<const std::uint8_t> bytes, const ImageDecodeOptions& options,
                      const std::string& source) {
  const auto f = sniff_image_format(bytes);
  if (!f) fail_not_image(bytes, source);
  switch (*f) {
    case ImageFormat::kJpeg: return decode_jpeg(bytes, options, source);
    case ImageFormat::kPng: return decode_png(bytes, options, source);
    case ImageFormat::kWebp: return decode_webp(bytes, options, source);
  }
  fail_not_image(bytes, source);
}

std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path, std::int64_t max_bytes) {
  const std::string src = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))
    throw IoError({src, "image file not found", "", "", "check the path"});
  if (std::filesystem::is_directory(status))
    throw IoError({src, "cannot read image: path is a directory", "a file", "a directory", "check the path"});
  if (!std::filesystem::is_regular_file(status))  // a FIFO would block, /dev/zero never ends
    throw IoError({src, "cannot read image: not a regular file", "a regular file", "a device, pipe or socket",
                   "save the image to a file first"});
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError({src, "cannot open image file", "", std::strerror(errno), "check the permissions"});
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw IoError({src, "cannot determine the file size", "", "", ""});
  if (size > max_bytes)
    throw UnsupportedError({src, "image file is too large", fmt::format("at most {} bytes", max_bytes),
                            fmt::format("{} bytes", size), "downscale or recompress the image"});
  in.seekg(0, std::ios::beg);
  std::vector<std::uint8_t> data(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size))
    throw IoError({src, "cannot read image file", fmt::format("{} bytes", size),
                   fmt::format("{} bytes", in.gcount()), ""});
  return data;
}

RgbImage load_image(const std::filesystem::path& path, const ImageDecodeOptions& options) {
  const std::vector<std::uint8_t> data = read_file_bytes(path, options.max_file_bytes);
  return decode_image(data, options, path.string());
}

}  // namespace vlq::image
