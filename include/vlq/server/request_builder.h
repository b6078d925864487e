// From a validated OpenAI request to what the engine runs: messages converted (engine::parse_messages), the
// media policy applied to every image reference, images read, hashed (SHA-256, the image-cache key),
// decoded and checked, the prompt built with the model's chat template, and sampling / stop parameters
// resolved against the model's generation defaults. Runs on the HTTP worker thread (never the engine
// thread). Every problem is an ApiError: 400 naming the field, 413 for an image over the size limits.
//
// Media policy: data: URLs are always accepted (size-limited); local files (paths, file: URLs) only when
// `allowed_media_dir` is set, relative paths resolved against it, and only when the resolved real path
// (symlinks followed) lies inside it — otherwise 400 without saying whether the file exists; http(s) URLs
// are refused with 400 (with allow_remote_media the answer says that this build has no media client).
// Spec: OpenAI Chat Completions (messages, image_url parts); vLLM's --allowed-local-media-path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include "vlq/engine/llm_engine.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/server/openai_protocol.h"

namespace vlq::server {

struct MediaPolicy {
  std::optional<std::filesystem::path> allowed_media_dir;  // absolute; none = local files refused
  bool allow_remote_media = false;
  std::size_t max_image_bytes = std::size_t{20} << 20;     // encoded bytes of one image
  std::int64_t max_image_pixels = std::int64_t{1} << 26;   // width·height of one image (decode guard)
  std::int64_t max_images = 16;                            // per request
};

struct BuiltRequest {
  engine::EngineRequest request;
  std::int64_t prompt_tokens = 0;
};

// Chat: messages + sampling → engine request. max_model_len bounds the default max_tokens
// (max_model_len − prompt tokens, as vLLM). Throws ApiError.
BuiltRequest build_chat_request(const engine::ModelBundle& bundle, const ChatRequest& chat, const MediaPolicy& media,
                                std::int64_t max_model_len);
// Completions: raw prompt text (no template) or token ids (each < vocab_size). Throws ApiError.
BuiltRequest build_completion_request(const engine::ModelBundle& bundle, const CompletionRequest& completion,
                                      std::int64_t max_model_len);

}  // namespace vlq::server
