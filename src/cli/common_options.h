// The options that several subcommands share (--device, --image-backend): one name, help text and parser each.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "vlq/engine/device_model.h"
#include "vlq/image/image_processor.h"

namespace vlq::cli {

// --device: where the model runs (cpu | cuda | auto). The help text is kDeviceHelp unless a command says
// more (what runs there); the value is parsed by parse_device_option.
inline constexpr const char* kDeviceHelp = "cpu, cuda, or auto (cuda when a GPU is present; default)";
CLI::Option* add_device_option(CLI::App& app, std::string& value, const std::string& help = kDeviceHelp);
// engine::parse_device of the --device value (UsageError naming --device for another value).
engine::Device parse_device_option(const std::string& value);

// --image-backend: the image processor whose resize pixel_values reproduce (torchvision | pil); help text
// kImageBackendHelp unless a command says more; parsed by parse_image_backend_option.
inline constexpr const char* kImageBackendHelp = "torchvision (default, transformers' AutoProcessor) or pil";
CLI::Option* add_image_backend_option(CLI::App& app, std::string& value, const std::string& help = kImageBackendHelp);
// image::parse_resize_backend of the --image-backend value (UsageError naming --image-backend otherwise).
image::ResizeBackend parse_image_backend_option(const std::string& value);

}  // namespace vlq::cli
