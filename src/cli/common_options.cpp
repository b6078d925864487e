// The options that several subcommands share (--device, --image-backend): declaration and parsing.
#include "cli/common_options.h"

namespace vlq::cli {

namespace {
constexpr const char* kDeviceFlag = "--device";
constexpr const char* kImageBackendFlag = "--image-backend";
}  // namespace

CLI::Option* add_device_option(CLI::App& app, std::string& value, const std::string& help) {
  return app.add_option(kDeviceFlag, value, help);
}

engine::Device parse_device_option(const std::string& value) { return engine::parse_device(value, kDeviceFlag); }

CLI::Option* add_image_backend_option(CLI::App& app, std::string& value, const std::string& help) {
  return app.add_option(kImageBackendFlag, value, help);
}

image::ResizeBackend parse_image_backend_option(const std::string& value) {
  return image::parse_resize_backend(value, kImageBackendFlag);
}

}  // namespace vlq::cli
