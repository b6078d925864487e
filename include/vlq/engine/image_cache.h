// The image-encoder cache of the serving engine: vision-tower outputs keyed by the SHA-256 of the image's
// encoded bytes, so a second request with the same image (a re-sent conversation, a popular picture) skips
// the vision tower. Least recently used entries are evicted beyond a byte budget. Thread-safe.
// Spec: FIPS 180-4 (SHA-256); the cache follows vLLM's multimodal encoder cache (keyed by a content hash
// of the item, one model's processor, so equal bytes give equal pixels and equal features).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>

#include "vlq/engine/sequence.h"
#include "vlq/ops/tensor.h"

namespace vlq::engine {

// SHA-256 of `bytes` (FIPS 180-4; OpenSSL libcrypto). Throws vlq::Error only if OpenSSL fails.
ImageDigest sha256(std::span<const std::uint8_t> bytes);
// Lower-case hex of a digest (64 characters).
std::string digest_hex(const ImageDigest& d);

struct ImageCacheStats {
  std::int64_t hits = 0, misses = 0, entries = 0, bytes = 0, max_bytes = 0;
};

class ImageCache {
 public:
  // max_bytes = 0 disables caching (get always misses, put stores nothing).
  explicit ImageCache(std::size_t max_bytes) : max_bytes_(max_bytes) {}

  // Features [image tokens, out_hidden] f32 of the image with this digest, or null (a miss).
  std::shared_ptr<const ops::Matrix> get(const ImageDigest& digest);
  // Stores features (an entry larger than the budget is not stored) and evicts LRU entries.
  void put(const ImageDigest& digest, std::shared_ptr<const ops::Matrix> features);
  ImageCacheStats stats() const;

 private:
  struct DigestHash {
    std::size_t operator()(const ImageDigest& d) const noexcept;
  };
  struct Entry {
    std::shared_ptr<const ops::Matrix> features;
    std::list<ImageDigest>::iterator lru;
  };
  mutable std::mutex mu_;
  std::size_t max_bytes_, bytes_ = 0;
  std::list<ImageDigest> lru_;  // front = most recently used
  std::unordered_map<ImageDigest, Entry, DigestHash> map_;
  std::int64_t hits_ = 0, misses_ = 0;
};

}  // namespace vlq::engine
