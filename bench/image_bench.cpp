// Benchmark: image decode + Qwen2.5-VL preprocessing (smart_resize, Pillow bicubic, normalize, patchify)
// on the CPU, single thread. Cases: rocket.jpg (640x427 real JPEG) and JPEGs of 2000x1500 and 4032x3024
// made in memory (rocket upscaled with vlq's resize, re-encoded by TurboJPEG at quality 90, 4:2:0), with
// the released min/max pixels (3136 / 12845056) and with transformers' class-default max (1003520).
// Prints the median thread-CPU time of N runs per stage (1 thread), and the wall time of
// preprocess_image with the default thread count. Results: docs/performance.md.
//   build-*/image_bench [--repeat N] [--rocket tests/data/images/rocket.jpg]   (run from the repo root)
#include <time.h>
#include <turbojpeg.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "vlq/core/error.h"
#include "vlq/image/image.h"
#include "vlq/image/image_processor.h"

using namespace vlq::image;

namespace {

// Thread CPU time: the development machine is shared, so wall time is noisy; CPU time is not (much).
double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

std::vector<std::uint8_t> encode_jpeg(const RgbImage& img) {
  tjhandle h = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  if (tjCompress2(h, img.pixels.data(), static_cast<int>(img.width), 0, static_cast<int>(img.height), TJPF_RGB, &buf,
                  &size, TJSAMP_420, 90, 0) != 0) {
    std::fprintf(stderr, "tjCompress2: %s\n", tjGetErrorStr2(h));
    std::exit(1);
  }
  std::vector<std::uint8_t> out(buf, buf + size);
  tjFree(buf);
  tjDestroy(h);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void run_case(const char* name, const std::vector<std::uint8_t>& jpeg, const ImageProcessorParams& p, int repeat) {
  std::vector<double> t_dec, t_res, t_pre;
  ProcessedImages last;
  RgbImage img;
  for (int i = 0; i < repeat; ++i) {
    const double t0 = now_ms();
    img = decode_image(jpeg);
    const double t1 = now_ms();
    const ResizeTarget t = smart_resize(img.height, img.width, p.patch_size * p.merge_size, p.min_pixels,
                                        p.max_pixels, p.reject_smaller_than_factor);
    const RgbImage resized = resize_bicubic(img, t.width, t.height, p.pillow);
    const double t2 = now_ms();
    last = preprocess_image(img, p);  // resize again + normalize + patchify
    const double t3 = now_ms();
    t_dec.push_back(t1 - t0);
    t_res.push_back(t2 - t1);
    t_pre.push_back(t3 - t2);
    if (resized.width < 0) std::puts("");  // keep the resize alive
  }
  // Wall time of preprocess_image with the default thread count (0 = hardware concurrency, <= 8).
  ImageProcessorParams pt = p;
  pt.threads = 0;
  std::vector<double> t_wall;
  for (int i = 0; i < repeat; ++i) {
    const auto w0 = std::chrono::steady_clock::now();
    last = preprocess_image(img, pt);
    t_wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count());
  }
  const double dec = median(t_dec), res = median(t_res), pre = median(t_pre);
  std::printf("%-34s %5lldx%-5lld -> %5lldx%-5lld %6lld patches | decode %7.1f ms | resize %7.1f ms | "
              "normalize+patchify %6.1f ms | total %7.1f ms | preprocess wall, %u threads: %6.1f ms\n",
              name, static_cast<long long>(img.width), static_cast<long long>(img.height),
              static_cast<long long>(last.resized[0].width), static_cast<long long>(last.resized[0].height),
              static_cast<long long>(last.n_patches), dec, res, pre - res, dec + pre,
              std::min(8u, std::max(1u, std::thread::hardware_concurrency())), median(t_wall));
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 7;
  std::filesystem::path rocket_path = "tests/data/images/rocket.jpg";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--repeat") == 0) repeat = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--rocket") == 0) rocket_path = argv[i + 1];
  }
  try {
    const std::vector<std::uint8_t> rocket = read_file_bytes(rocket_path, std::int64_t{1} << 30);
    const RgbImage base = decode_image(rocket);
    const auto jpeg_2000 = encode_jpeg(resize_bicubic(base, 2000, 1500));
    const auto jpeg_4032 = encode_jpeg(resize_bicubic(base, 4032, 3024));
    ImageProcessorParams released;  // min 3136, max 12845056 (preprocessor_config.json of Qwen2.5-VL)
    ImageProcessorParams class_default;
    class_default.max_pixels = 1003520;  // transformers' class default
    released.threads = class_default.threads = 1;
    std::printf("image_bench: median thread-CPU time of %d runs, 1 thread\n", repeat);
    run_case("rocket.jpg (released min/max)", rocket, released, repeat);
    run_case("2000x1500 JPEG (released min/max)", jpeg_2000, released, repeat);
    run_case("2000x1500 JPEG (max 1003520)", jpeg_2000, class_default, repeat);
    run_case("4032x3024 JPEG (released min/max)", jpeg_4032, released, std::max(1, repeat / 2));
    run_case("4032x3024 JPEG (max 1003520)", jpeg_4032, class_default, std::max(1, repeat / 2));
  } catch (const vlq::Error& e) {
    std::fprintf(stderr, "image_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
