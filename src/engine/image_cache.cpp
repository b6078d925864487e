// SHA-256 (OpenSSL) and the LRU image-encoder cache (see vlq/engine/image_cache.h).
#include "vlq/engine/image_cache.h"

#include <openssl/evp.h>

#include <string>

#include "vlq/core/error.h"

namespace vlq::engine {

// OpenSSL's libcrypto (SHA-NI / AVX2 where the CPU has them): one call, no streaming needed.
ImageDigest sha256(std::span<const std::uint8_t> bytes) {
  ImageDigest d;
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size())
    throw Error({"sha256", "OpenSSL EVP_Digest failed", "a 32-byte digest", std::to_string(len), "check the OpenSSL install"});
  return d;
}

std::string digest_hex(const ImageDigest& d) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (std::uint8_t b : d) {
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

std::size_t ImageCache::DigestHash::operator()(const ImageDigest& d) const noexcept {
  std::size_t v;
  std::memcpy(&v, d.data(), sizeof v);
  return v;
}

std::shared_ptr<const ops::Matrix> ImageCache::get(const ImageDigest& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = map_.find(digest);
  if (it == map_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.features;
}

void ImageCache::put(const ImageDigest& digest, std::shared_ptr<const ops::Matrix> features) {
  if (!features) return;
  const std::size_t size = features->data.size() * sizeof(float);
  std::lock_guard<std::mutex> lock(mu_);
  if (size > max_bytes_ || map_.count(digest)) return;
  while (bytes_ + size > max_bytes_ && !lru_.empty()) {
    const auto victim = map_.find(lru_.back());
    bytes_ -= victim->second.features->data.size() * sizeof(float);
    map_.erase(victim);
    lru_.pop_back();
  }
  lru_.push_front(digest);
  map_.emplace(digest, Entry{std::move(features), lru_.begin()});
  bytes_ += size;
}

ImageCacheStats ImageCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {hits_, misses_, static_cast<std::int64_t>(map_.size()), static_cast<std::int64_t>(bytes_),
          static_cast<std::int64_t>(max_bytes_)};
}

}  // namespace vlq::engine
