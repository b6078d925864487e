// Reading safetensors files and sharded Hugging Face checkpoints: memory-mapped, zero-copy views.
// Format authority: huggingface/safetensors README "Format" and safetensors/src/tensor.rs:
//   [u64 little-endian N][N bytes UTF-8 JSON header][data]; header = object of
//   name -> {"dtype": str, "shape": [u64...], "data_offsets": [begin, end]} plus optional
//   "__metadata__": {str: str}; offsets are relative to the start of data, contiguous from 0, no gaps.
// Sharded checkpoints: model.safetensors.index.json = {"metadata": {...}, "weight_map": {name: shard}}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vlq/core/dtype.h"

namespace vlq::io {

// Hard limit on the JSON header size (same as the reference implementation): 100 MB.
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

// One tensor entry of a safetensors header. Offsets are relative to the start of the data section.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;  // named dims are the model's; [] = 0-dim scalar
  std::uint64_t data_begin = 0;     // byte offset into the data section
  std::uint64_t data_end = 0;       // one past the last byte
  std::uint64_t numel() const;      // product of shape (1 for a scalar); throws FormatError on overflow
  std::uint64_t nbytes() const { return data_end - data_begin; }
  bool operator==(const TensorInfo&) const = default;
};

// Parsed and validated header. `tensors` is sorted by data_begin (file order).
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__", strings only
  bool operator==(const SafetensorsHeader&) const = default;
};

// Validates a header JSON to the letter of the format against a data section of `data_size` bytes.
// `file` is only used in error messages. Throws FormatError naming file and tensor, with expected and
// found values: not a JSON object; entry not an object; missing/extra-typed dtype/shape/data_offsets;
// unknown dtype string (named); negative or non-integer dims; numel x dtype size overflow or !=
// data_offsets span; offsets not contiguous from 0 / overlapping / past the end of data; data after
// the last tensor; duplicate names; __metadata__ not a string->string object.
//
// Letter of the format (huggingface/safetensors README "Format"): the header must begin with '{' and may
// only be followed by space (0x20) padding; duplicate keys are rejected at every level. Where the
// reference implementation is more lenient than the README we follow the reference: unknown extra
// fields inside an entry are ignored, "__metadata__": null is read as no metadata, an empty tensor name
// is allowed. Dims above 2^63-1 are rejected (TensorInfo::shape is int64). The product of the dims is
// overflow-checked left to right like the reference (so [2^62, 8, 0] is an overflow error).
// Dtypes known to safetensors but not to vlq (F4, F6_E2M3, F6_E3M2, F8_E4M3FNUZ, F8_E5M2FNUZ, C64)
// throw UnsupportedError naming the dtype; any other unknown dtype string is a FormatError naming it.
SafetensorsHeader parse_safetensors_header(std::string_view header_json, std::uint64_t data_size,
                                           const std::string& file);

// Validates a whole safetensors file held in memory ([8-byte N][N header bytes][data]): the 8-byte
// prefix (file >= 8 bytes, N <= kMaxHeaderBytes, N <= size - 8), then the header as above with
// data_size = size - 8 - N. `header_len` (optional) receives N. Throws FormatError.
SafetensorsHeader parse_safetensors_bytes(std::span<const std::byte> file_bytes, const std::string& file,
                                          std::uint64_t* header_len = nullptr);

// A read-only, memory-mapped safetensors file. Movable, not copyable. Views stay valid while the
// SafetensorsFile lives.
class SafetensorsFile {
 public:
  // Opens and validates the file (header length sane and <= kMaxHeaderBytes and <= file size - 8,
  // header valid as above). Throws IoError (cannot open/map) or FormatError.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  // nullptr if absent.
  const TensorInfo* find(std::string_view name) const;
  // The raw little-endian bytes of a tensor of this file (zero-copy view into the mapping). `t` must be
  // an entry of this file's header (FormatError if its offsets lie outside the data section).
  // Note: like any mmap reader, truncating the file while it is mapped makes later accesses SIGBUS.
  std::span<const std::byte> data(const TensorInfo& t) const;
  std::span<const std::byte> data(std::string_view name) const;  // throws FormatError if absent
  std::uint64_t file_size() const { return file_size_; }
  std::uint64_t header_size() const { return header_len_; }  // N, without the 8-byte prefix
  // Hints the kernel about the access pattern (madvise). No-ops on failure.
  void advise_sequential() const;
  void advise_willneed() const;
  // Same for one tensor's bytes: prefetch before use / drop the pages after use (streaming a large model
  // through limited RAM). The mapping stays valid; dropped pages are re-read on the next access.
  void advise_willneed(const TensorInfo& t) const;
  void advise_dontneed(const TensorInfo& t) const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  SafetensorsHeader header_;
  std::map<std::string, std::size_t, std::less<>> index_;
  const std::byte* map_ = nullptr;
  std::uint64_t map_len_ = 0;
  std::uint64_t file_size_ = 0;
  std::uint64_t header_len_ = 0;
};

// Reads only the header of a safetensors file (pread, no mapping of the data); validates it like
// SafetensorsFile::open. This is what `vlq inspect` uses: cost independent of the tensor bytes.
SafetensorsHeader read_safetensors_header(const std::filesystem::path& path);

// The file names of a checkpoint folder (Hugging Face's): one file, or the index of the shards.
inline constexpr const char* kSingleCheckpointFile = "model.safetensors";
inline constexpr const char* kCheckpointIndexFile = "model.safetensors.index.json";

// Parsed model.safetensors.index.json. Shard names are validated: plain file names (no '/', '\\',
// "." or "..", absolute paths, empty names, NUL), and the resolved file must be inside the checkpoint
// folder (symlinks leading outside are rejected when the checkpoint is opened).
// parse_checkpoint_index throws FormatError{where = file (: tensor)}: not a JSON object, duplicate keys,
// "weight_map" missing / not an object / a value not a string, a bad shard name (named, with the
// tensor), "metadata" not an object. Nested values of "metadata" are kept as their JSON text.
struct CheckpointIndex {
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
  std::map<std::string, std::string> metadata;    // scalars of "metadata" as strings (total_size, ...)
  std::vector<std::string> shards() const;        // unique shard names, sorted
};
CheckpointIndex parse_checkpoint_index(std::string_view json, const std::string& file);

// A tensor located in a checkpoint: which shard, and its header entry.
struct TensorRef {
  std::size_t shard = 0;        // index into Checkpoint::shard_paths()
  const TensorInfo* info = nullptr;
};

// A whole checkpoint: a folder with model.safetensors, or with model.safetensors.index.json + shards,
// or a single .safetensors file path. Headers are read eagerly; data is mapped lazily per shard.
class Checkpoint {
 public:
  // Which layout is used: `dir_or_file` may be a .safetensors file (single file), an *.index.json file,
  // or a folder holding model.safetensors.index.json (preferred), else exactly one *.safetensors.index.json,
  // else model.safetensors, else exactly one *.safetensors file.
  // Throws IoError (path missing, unreadable, index names a missing shard) / FormatError (bad index or
  // shard header; shard name not a plain file name or resolving outside the folder; index and shards
  // disagree: a weight_map tensor missing from its shard, a shard tensor not in weight_map, a tensor in
  // two shards; all disagreements are listed in one error) / UsageError (folder with several
  // .safetensors files and no index). Symlinked shards are followed if they stay inside the folder, or,
  // for a Hugging Face cache snapshot (.../models--X/snapshots/REV), inside .../models--X/blobs.
  static Checkpoint open(const std::filesystem::path& dir_or_file);

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<std::filesystem::path>& shard_paths() const { return shard_paths_; }
  const std::vector<SafetensorsHeader>& shard_headers() const { return headers_; }
  bool sharded() const { return sharded_; }
  // All tensors of all shards, sorted by name.
  const std::vector<std::string>& names() const { return names_; }
  // nullptr info if absent.
  TensorRef find(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const;  // throws FormatError if absent
  // Zero-copy bytes; maps the shard on first use. Throws FormatError if absent, or if the shard file
  // changed since open() read its header. Thread-safe (mapping is done under a lock).
  std::span<const std::byte> data(std::string_view name) const;
  // The mapped shard file (opened on first use; thread-safe).
  const SafetensorsFile& shard(std::size_t i) const;
  // Shard file that holds `name` (throws FormatError if absent).
  const std::filesystem::path& shard_path_of(std::string_view name) const;
  // Path of the index file (sharded checkpoints), empty otherwise.
  const std::filesystem::path& index_path() const { return index_path_; }
  // The parsed index (sharded checkpoints; empty otherwise).
  const CheckpointIndex& index() const { return index_; }

 private:
  Checkpoint() = default;
  std::filesystem::path dir_;
  std::vector<std::filesystem::path> shard_paths_;
  std::vector<SafetensorsHeader> headers_;
  mutable std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unique_ptr<std::mutex> files_mu_ = std::make_unique<std::mutex>();
  std::filesystem::path index_path_;
  CheckpointIndex index_;
  std::map<std::string, TensorRef, std::less<>> by_name_;
  std::vector<std::string> names_;
  bool sharded_ = false;
};

}  // namespace vlq::io
