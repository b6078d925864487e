// KV-cache block accounting of the serving engine: a fixed pool of blocks of block_size token positions,
// per-sequence block tables, reference counts, and prefix caching — a full block whose K/V are computed is
// registered under a key made of its parent's identity, its token ids and the digests of the images it
// overlaps, so a later sequence with the same prefix (same system prompt, same image) reuses it.
// Spec: nano-vllm nanovllm/engine/block_manager.py (hash of the previous block + the block's tokens,
// ref counts, free list) and vLLM's automatic prefix caching (blocks are hashed only once computed; freed
// blocks keep their hash until reused, least recently freed first).
//
// Exactness: the 64-bit hash only finds a candidate; a hit also compares the parent block's uid, the tokens
// and the image digests, so two different prefixes never share a block even when their hashes collide.
// At least the last prompt token is always left to compute (its logits give the first output token).
// Not thread-safe: the engine thread owns it.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "vlq/engine/sequence.h"

namespace vlq::engine {

struct BlockManagerStats {
  std::int64_t num_blocks = 0, block_size = 0;
  std::int64_t used_blocks = 0;      // referenced by at least one sequence
  std::int64_t cached_blocks = 0;    // registered for prefix reuse (used or free)
  std::int64_t prefix_queries_tokens = 0, prefix_hit_tokens = 0;  // totals over admissions
};

class BlockManager {
 public:
  // num_blocks >= 1, block_size >= 1; throws UsageError otherwise.
  BlockManager(std::int64_t num_blocks, std::int64_t block_size, bool enable_prefix_caching = true);

  std::int64_t block_size() const { return block_size_; }
  std::int64_t num_blocks() const { return static_cast<std::int64_t>(blocks_.size()); }
  std::int64_t num_free_blocks() const { return static_cast<std::int64_t>(free_.size()); }
  std::int64_t blocks_for(std::int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }

  // Admission of a waiting sequence (empty block_table): blocks for all of its current tokens, prefix hits
  // counted as free. can_allocate is allocate's dry run.
  bool can_allocate(const Sequence& seq) const;
  // Fills seq.block_table, sets num_computed_tokens = num_cached_tokens = hit blocks · block_size and the
  // hashed-chain state. Throws UsageError (internal misuse) when the blocks are not there.
  void allocate(Sequence& seq);

  // Room for `n` more tokens after num_computed_tokens (a decode step, the next prefill chunk).
  bool can_grow(const Sequence& seq, std::int64_t n) const;
  void grow(Sequence& seq, std::int64_t n);

  // After seq.num_computed_tokens advanced: registers the full, computed blocks not yet registered
  // (no-op without prefix caching). Returns how many blocks became hashed.
  std::int64_t commit(Sequence& seq);

  // Releases the sequence's blocks (reverse order, so the tail of a prefix is evicted first) and clears
  // its block table and chain state.
  void free(Sequence& seq);

  BlockManagerStats stats() const;

 private:
  struct Block {
    std::int32_t ref = 0;
    std::uint64_t uid = 0;         // != 0 while registered
    std::uint64_t parent_uid = 0;  // uid of the previous block in the chain (0 for the first)
    std::uint64_t hash = 0;
    std::vector<std::int32_t> tokens;
    std::vector<ImageDigest> digests;
    std::list<std::int32_t>::iterator free_pos;
    bool in_free = false;
  };
  struct Key {
    std::uint64_t hash = 0;
    std::vector<std::int32_t> tokens;
    std::vector<ImageDigest> digests;
  };
  Key block_key(const Sequence& seq, std::int64_t block_index, std::uint64_t parent_uid) const;
  // Registered block equal to key under parent, or -1.
  std::int32_t find(const Key& key, std::uint64_t parent_uid) const;
  // Prefix hits of a waiting sequence: block ids in order.
  std::vector<std::int32_t> match_prefix(const Sequence& seq) const;
  std::int32_t take_free_block();
  void unregister(std::int32_t b);

  std::int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::list<std::int32_t> free_;  // front = least recently freed = next to reuse
  std::unordered_map<std::uint64_t, std::int32_t> by_hash_;
  std::uint64_t next_uid_ = 1;
  std::int64_t cached_blocks_ = 0, query_tokens_ = 0, hit_tokens_ = 0;
};

}  // namespace vlq::engine
