// OpenAI request → engine request: media policy, image hashing and decoding, prompt, sampling (see
// vlq/server/request_builder.h).
#include "vlq/server/request_builder.h"

#include <fmt/format.h>

#include <random>
#include <system_error>

#include "vlq/core/error.h"
#include "vlq/engine/image_cache.h"
#include "vlq/engine/messages.h"
#include "vlq/engine/sequence.h"
#include "vlq/image/image.h"

namespace vlq::server {

namespace {

namespace fs = std::filesystem;

// A vlq error while building a request → 400 (413 for a too-large image payload).
ApiError api_error(const Error& e, const std::string& param) {
  const bool too_large = dynamic_cast<const UnsupportedError*>(&e) && e.info().what.find("too large") != std::string::npos;
  return ApiError(too_large ? 413 : 400, e.what(), "invalid_request_error", param, too_large ? "image_too_large" : "");
}

bool within(const fs::path& p, const fs::path& root) {
  auto pi = p.begin();
  for (auto ri = root.begin(); ri != root.end(); ++ri, ++pi) {
    if (ri->empty()) continue;  // trailing separator
    if (pi == p.end() || *pi != *ri) return false;
  }
  return true;
}

std::vector<std::uint8_t> read_local(const engine::ImageSource& src, const MediaPolicy& m) {
  if (!m.allowed_media_dir)
    throw ApiError(400, src.origin + ": local image files are not allowed on this server (send the image as a data: URL, "
                   "or start the server with --allowed-media-dir DIR)", "invalid_request_error", "messages");
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(*m.allowed_media_dir, ec);
  const fs::path real = fs::weakly_canonical(src.path, ec);
  if (ec || !within(real, root))
    throw ApiError(400, src.origin + ": image path is outside the server's --allowed-media-dir", "invalid_request_error",
                   "messages");
  if (!fs::is_regular_file(real, ec))
    throw ApiError(400, src.origin + ": image file not found under --allowed-media-dir", "invalid_request_error",
                   "messages");
  const auto size = fs::file_size(real, ec);
  if (ec || size > m.max_image_bytes)
    throw ApiError(413, fmt::format("{}: image file is larger than {} bytes", src.origin, m.max_image_bytes),
                   "invalid_request_error", "messages", "image_too_large");
  try {
    return image::read_file_bytes(real, static_cast<std::int64_t>(m.max_image_bytes));
  } catch (const Error& e) {
    throw ApiError(400, src.origin + ": cannot read the image file", "invalid_request_error", "messages");
  }
}

// Checks every image, reads local ones into memory, returns the digests in order.
std::vector<engine::ImageDigest> gather_images(engine::ParsedMessages& pm, const MediaPolicy& m) {
  if (static_cast<std::int64_t>(pm.images.size()) > m.max_images)
    throw ApiError(400, fmt::format("at most {} images per request, got {}", m.max_images, pm.images.size()),
                   "invalid_request_error", "messages");
  std::vector<engine::ImageDigest> digests;
  for (auto& src : pm.images) {
    if (src.kind == engine::ImageSource::Kind::kPath) {
      src.bytes = read_local(src, m);
      src.kind = engine::ImageSource::Kind::kBytes;
      src.origin += " (" + src.path.filename().string() + ")";
    }
    image::ImageHeader h;
    try {
      h = image::read_image_header(src.bytes, src.origin);
    } catch (const Error& e) {
      throw api_error(e, "messages");
    }
    if (h.width * h.height > m.max_image_pixels)
      throw ApiError(413, fmt::format("{}: image of {}x{} pixels is larger than the server's limit of {} pixels",
                                      src.origin, h.width, h.height, m.max_image_pixels),
                     "invalid_request_error", "messages", "image_too_large");
    digests.push_back(engine::sha256(src.bytes));
  }
  return digests;
}

engine::SequenceParams sampling_params(const engine::ModelBundle& bundle, const SamplingRequest& s,
                                       std::int64_t prompt_tokens, std::int64_t max_model_len, const char* prompt_param) {
  const std::int64_t remaining = max_model_len - prompt_tokens;
  if (remaining < 1)
    throw ApiError(400, fmt::format("this model's maximum context length is {} tokens; the prompt has {}", max_model_len,
                                    prompt_tokens),
                   "invalid_request_error", prompt_param, "context_length_exceeded");
  if (s.max_tokens && *s.max_tokens > remaining)
    throw ApiError(400, fmt::format("this model's maximum context length is {} tokens; the request asks for {} ({} in "
                                    "the prompt, {} for the completion)",
                                    max_model_len, prompt_tokens + *s.max_tokens, prompt_tokens, *s.max_tokens),
                   "invalid_request_error", "max_tokens", "context_length_exceeded");
  engine::GenerationOverrides o;
  o.temperature = s.temperature;
  o.top_p = s.top_p;
  o.top_k = s.top_k;
  o.repetition_penalty = s.repetition_penalty;
  const engine::GenerateOptions go = bundle.generate_options(o);
  engine::SequenceParams p;
  p.sampling = go.sampling;
  thread_local std::mt19937_64 seeder{std::random_device{}()};
  p.seed = s.seed ? *s.seed : seeder();
  for (auto id : go.eos_ids) p.stop.eos_ids.push_back(static_cast<std::int32_t>(id));
  const std::int64_t vocab = bundle.model().config().text.vocab_size;
  for (std::int32_t id : s.stop_token_ids)
    if (id >= vocab)
      throw ApiError(400, fmt::format("'stop_token_ids' entry {} is outside the vocabulary (0..{})", id, vocab - 1),
                     "invalid_request_error", "stop_token_ids");
  p.stop.stop_token_ids = s.stop_token_ids;
  p.stop.stop_strings = s.stop;
  p.stop.ignore_eos = s.ignore_eos;
  p.stop.max_tokens = s.max_tokens.value_or(remaining);
  return p;
}

}  // namespace

BuiltRequest build_chat_request(const engine::ModelBundle& bundle, const ChatRequest& chat, const MediaPolicy& media,
                                std::int64_t max_model_len) {
  engine::MessageOptions mo;
  mo.check_files_exist = false;  // the policy checks paths (without telling what exists outside it)
  mo.max_image_bytes = media.max_image_bytes;
  if (media.allowed_media_dir) mo.base_dir = *media.allowed_media_dir;
  engine::ParsedMessages pm;
  try {
    pm = engine::parse_messages(chat.messages, mo, "request");
  } catch (const UnsupportedError& e) {
    if (e.info().what == "image URLs are not fetched")
      throw ApiError(400, media.allow_remote_media
                              ? e.info().where + ": remote image URLs are enabled (--allow-remote-media) but this build has "
                                                 "no media client; send the image as a data: URL"
                              : e.info().where + ": remote image URLs are refused (send the image as a data: URL)",
                     "invalid_request_error", "messages", "remote_media_unsupported");
    throw api_error(e, "messages");
  } catch (const Error& e) {
    throw api_error(e, "messages");
  }
  const std::vector<engine::ImageDigest> digests = gather_images(pm, media);
  engine::Prompt prompt;
  try {
    const std::vector<image::RgbImage> imgs = bundle.load_images(pm);
    prompt = bundle.build_prompt(pm.messages, imgs);
  } catch (const Error& e) {
    throw api_error(e, "messages");
  }
  BuiltRequest out;
  out.prompt_tokens = static_cast<std::int64_t>(prompt.ids.size());
  out.request.params = sampling_params(bundle, chat.sampling, out.prompt_tokens, max_model_len, "messages");
  if (!digests.empty())
    out.request.images = engine::make_prompt_images(prompt.images, prompt.ids, bundle.model().config().tokens.image_token_id,
                                                    bundle.prompt_builder().image_params.merge_size, digests);
  out.request.prompt_ids = std::move(prompt.ids);
  return out;
}

BuiltRequest build_completion_request(const engine::ModelBundle& bundle, const CompletionRequest& completion,
                                      std::int64_t max_model_len) {
  BuiltRequest out;
  if (const auto* text = std::get_if<std::string>(&completion.prompt)) {
    try {
      out.request.prompt_ids = bundle.build_raw(*text).ids;
    } catch (const Error& e) {
      throw api_error(e, "prompt");
    }
  } else {
    out.request.prompt_ids = std::get<std::vector<std::int32_t>>(completion.prompt);
    const std::int64_t vocab = bundle.model().config().text.vocab_size;
    for (std::int32_t id : out.request.prompt_ids)
      if (id >= vocab)
        throw ApiError(400, fmt::format("token id {} in 'prompt' is outside the vocabulary (0..{})", id, vocab - 1),
                       "invalid_request_error", "prompt");
  }
  const auto& tokens = bundle.model().config().tokens;
  for (std::int32_t id : out.request.prompt_ids)
    if (id == tokens.image_token_id || id == tokens.video_token_id)
      throw ApiError(400, "'prompt' contains image/video placeholder tokens; send images through /v1/chat/completions",
                     "invalid_request_error", "prompt");
  if (out.request.prompt_ids.empty()) throw ApiError(400, "'prompt' encodes to no tokens", "invalid_request_error", "prompt");
  out.prompt_tokens = static_cast<std::int64_t>(out.request.prompt_ids.size());
  out.request.params = sampling_params(bundle, completion.sampling, out.prompt_tokens, max_model_len, "prompt");
  return out;
}

}  // namespace vlq::server
