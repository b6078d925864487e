// KV block accounting with exact prefix caching (see vlq/engine/block_manager.h).
#include "vlq/engine/block_manager.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "vlq/core/error.h"

namespace vlq::engine {

namespace {

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  // splitmix64 finaliser over (h ^ v): fast, well spread; exactness comes from the comparison on lookup.
  std::uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

BlockManager::BlockManager(std::int64_t num_blocks, std::int64_t block_size, bool enable_prefix_caching)
    : block_size_(block_size), prefix_caching_(enable_prefix_caching) {
  if (num_blocks < 1 || block_size < 1)
    throw UsageError({"BlockManager", "the KV cache needs at least one block of at least one token",
                      "num_blocks >= 1, block_size >= 1",
                      std::to_string(num_blocks) + " blocks of " + std::to_string(block_size), ""});
  blocks_.resize(static_cast<std::size_t>(num_blocks));
  for (std::int32_t b = 0; b < static_cast<std::int32_t>(num_blocks); ++b) {
    blocks_[b].free_pos = free_.insert(free_.end(), b);
    blocks_[b].in_free = true;
  }
}

BlockManager::Key BlockManager::block_key(const Sequence& seq, std::int64_t i, std::uint64_t parent_uid) const {
  Key k;
  const auto& t = seq.tokens();
  const std::int64_t lo = i * block_size_, hi = lo + block_size_;
  k.tokens.assign(t.begin() + lo, t.begin() + hi);
  std::uint64_t h = mix(0x51ed270b27a5c3d1ull, parent_uid);
  for (std::int32_t id : k.tokens) h = mix(h, static_cast<std::uint32_t>(id));
  if (seq.images()) {
    for (const ImageSpan& s : seq.images()->spans) {
      if (s.token_offset >= hi || s.token_offset + s.token_count <= lo) continue;
      k.digests.push_back(s.digest);
      std::uint64_t w[4];
      std::memcpy(w, s.digest.data(), sizeof w);
      for (std::uint64_t x : w) h = mix(h, x);
    }
  }
  k.hash = h;
  return k;
}

std::int32_t BlockManager::find(const Key& key, std::uint64_t parent_uid) const {
  const auto it = by_hash_.find(key.hash);
  if (it == by_hash_.end()) return -1;
  const Block& b = blocks_[it->second];
  if (b.uid == 0 || b.parent_uid != parent_uid || b.tokens != key.tokens || b.digests != key.digests) return -1;
  return it->second;
}

std::vector<std::int32_t> BlockManager::match_prefix(const Sequence& seq) const {
  std::vector<std::int32_t> hits;
  if (!prefix_caching_) return hits;
  const std::int64_t cacheable = (seq.num_tokens() - 1) / block_size_;  // leave >= 1 token to compute
  std::uint64_t parent = 0;
  for (std::int64_t i = 0; i < cacheable; ++i) {
    const std::int32_t b = find(block_key(seq, i, parent), parent);
    if (b < 0) break;
    hits.push_back(b);
    parent = blocks_[b].uid;
  }
  return hits;
}

bool BlockManager::can_allocate(const Sequence& seq) const {
  const std::vector<std::int32_t> hits = match_prefix(seq);
  std::int64_t hits_free = 0;
  for (std::int32_t b : hits) hits_free += blocks_[b].in_free ? 1 : 0;
  const std::int64_t need = blocks_for(seq.num_tokens()) - static_cast<std::int64_t>(hits.size());
  return need <= num_free_blocks() - hits_free;
}

std::int32_t BlockManager::take_free_block() {
  if (free_.empty())
    throw UsageError({"BlockManager", "no free KV block", "a free block", "none", "check can_allocate/can_grow first"});
  const std::int32_t b = free_.front();
  free_.pop_front();
  blocks_[b].in_free = false;
  unregister(b);
  blocks_[b].ref = 1;
  return b;
}

void BlockManager::unregister(std::int32_t b) {
  Block& blk = blocks_[b];
  if (blk.uid == 0) return;
  const auto it = by_hash_.find(blk.hash);
  if (it != by_hash_.end() && it->second == b) by_hash_.erase(it);
  blk.uid = 0;
  blk.tokens.clear();
  blk.digests.clear();
  --cached_blocks_;
}

void BlockManager::allocate(Sequence& seq) {
  if (!seq.block_table.empty())
    throw UsageError({"BlockManager::allocate", "sequence already has blocks", "an empty block table",
                      std::to_string(seq.block_table.size()) + " blocks", ""});
  if (!can_allocate(seq))
    throw UsageError({"BlockManager::allocate", "not enough free KV blocks", "call can_allocate first", "", ""});
  const std::vector<std::int32_t> hits = match_prefix(seq);
  for (std::int32_t b : hits) {
    Block& blk = blocks_[b];
    if (blk.in_free) {
      free_.erase(blk.free_pos);
      blk.in_free = false;
    }
    ++blk.ref;
    seq.block_table.push_back(b);
  }
  seq.num_hashed_blocks = static_cast<std::int64_t>(hits.size());
  seq.last_block_uid = hits.empty() ? 0 : blocks_[hits.back()].uid;
  seq.num_cached_tokens = static_cast<std::int64_t>(hits.size()) * block_size_;
  seq.num_computed_tokens = seq.num_cached_tokens;
  query_tokens_ += seq.num_tokens();
  hit_tokens_ += seq.num_cached_tokens;
  while (static_cast<std::int64_t>(seq.block_table.size()) < blocks_for(seq.num_tokens()))
    seq.block_table.push_back(take_free_block());
}

bool BlockManager::can_grow(const Sequence& seq, std::int64_t n) const {
  const std::int64_t need = blocks_for(seq.num_computed_tokens + n) - static_cast<std::int64_t>(seq.block_table.size());
  return need <= num_free_blocks();
}

void BlockManager::grow(Sequence& seq, std::int64_t n) {
  if (!can_grow(seq, n))
    throw UsageError({"BlockManager::grow", "not enough free KV blocks", "call can_grow first", "", ""});
  while (static_cast<std::int64_t>(seq.block_table.size()) < blocks_for(seq.num_computed_tokens + n))
    seq.block_table.push_back(take_free_block());
}

std::int64_t BlockManager::commit(Sequence& seq) {
  if (!prefix_caching_) return 0;
  std::int64_t added = 0;
  while ((seq.num_hashed_blocks + 1) * block_size_ <= seq.num_computed_tokens &&
         seq.num_hashed_blocks < static_cast<std::int64_t>(seq.block_table.size())) {
    const std::int64_t i = seq.num_hashed_blocks;
    Key k = block_key(seq, i, seq.last_block_uid);
    const std::int32_t existing = find(k, seq.last_block_uid);
    if (existing >= 0) {
      seq.last_block_uid = blocks_[existing].uid;  // same content already registered: continue its chain
    } else {
      const std::int32_t b = seq.block_table[static_cast<std::size_t>(i)];
      Block& blk = blocks_[b];
      unregister(b);
      blk.uid = next_uid_++;
      blk.parent_uid = seq.last_block_uid;
      blk.hash = k.hash;
      blk.tokens = std::move(k.tokens);
      blk.digests = std::move(k.digests);
      const auto old = by_hash_.find(blk.hash);
      if (old != by_hash_.end() && old->second != b) unregister(old->second);  // a colliding other prefix
      by_hash_[blk.hash] = b;
      ++cached_blocks_;
      seq.last_block_uid = blk.uid;
    }
    ++seq.num_hashed_blocks;
    ++added;
  }
  return added;
}

void BlockManager::free(Sequence& seq) {
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend(); ++it) {
    Block& blk = blocks_[*it];
    if (--blk.ref == 0) {
      blk.free_pos = free_.insert(free_.end(), *it);
      blk.in_free = true;
    }
  }
  seq.block_table.clear();
  seq.num_hashed_blocks = 0;
  seq.last_block_uid = 0;
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats s;
  s.num_blocks = num_blocks();
  s.block_size = block_size_;
  s.used_blocks = num_blocks() - num_free_blocks();
  s.cached_blocks = cached_blocks_;
  s.prefix_queries_tokens = query_tokens_;
  s.prefix_hit_tokens = hit_tokens_;
  return s;
}

}  // namespace vlq::engine
