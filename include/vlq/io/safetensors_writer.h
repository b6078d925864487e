// Writing safetensors files and sharded Hugging Face checkpoints, streaming (the model is never held in
// memory) and atomic (everything goes to a temporary folder renamed into place by commit()).
// Format authority: huggingface/safetensors README "Format" and safetensors/src/tensor.rs `prepare`:
// tensors laid out sorted by dtype alignment (descending, in the reference's Dtype order), then by name;
// header entries in the same order, "__metadata__" first; header JSON compact and space-padded to a
// multiple of 8, so every tensor starts at a multiple of its element size. With at most one metadata key
// the files are byte-identical to Python `safetensors.torch.save_file` for the same tensors.
// Sharding follows transformers/huggingface_hub: model-00001-of-0000N.safetensors plus
// model.safetensors.index.json = {"metadata": {"total_size": <sum of tensor bytes>}, "weight_map": {...}}
// (indent 2, sorted keys); a single shard is model.safetensors with no index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vlq/core/dtype.h"

namespace vlq::io {

// A tensor to be written: name, dtype and shape (named dims are the model's; [] = scalar).
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  // numel x dtype size. Throws UsageError if a dim is negative or the size overflows 64 bits.
  std::uint64_t nbytes() const;
};

// One planned output file.
struct ShardPlan {
  std::string file_name;              // "model.safetensors" or "model-00001-of-00003.safetensors"
  std::vector<std::string> tensors;   // in data (= header) order
  std::uint64_t data_bytes = 0;       // sum of tensor bytes
  std::uint64_t header_bytes = 0;     // N (padded JSON length), without the 8-byte prefix
  std::uint64_t file_bytes() const { return 8 + header_bytes + data_bytes; }
};

struct WriterOptions {
  // Maximum tensor bytes per shard; 0 = no limit (one model.safetensors). Shards are filled greedily in
  // the declared tensor order; a tensor larger than the limit gets a shard of its own.
  std::uint64_t max_shard_bytes = 0;
  // "__metadata__" written into every shard (strings only), e.g. {{"format", "pt"}}.
  std::map<std::string, std::string> metadata;
  // Replace an existing output folder at commit (atomic exchange where the file system supports it,
  // else rename old away, rename new in, delete old). Without it an existing output is a UsageError.
  bool overwrite = false;
  // fsync every file and the folders at commit (durable against power loss). Tests may turn it off.
  bool fsync = true;
  // Reserve the disk space of every shard at construction (fallocate), so a full disk fails before any
  // tensor is computed.
  bool preallocate = true;
  // Paths the caller reads from (input checkpoint folder/files): the writer refuses an output folder that
  // is, or contains, one of them (overwrite would delete the input).
  std::vector<std::filesystem::path> inputs;
};

// Plans the shards for `tensors` (declared order) under `opts` (max_shard_bytes, metadata).
// Throws UsageError: empty or duplicate name, name "__metadata__", negative dim, size overflow, name or
// metadata not valid UTF-8.
std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& tensors, const WriterOptions& opts);

// The order in which a safetensors writer lays out tensors: dtype alignment descending (reference Dtype
// order: U64, I64, F64, F32, U32, I32, BF16, F16, U16, I16, F8_E8M0, F8_E4M3, F8_E5M2, I8, U8, BOOL), then
// name (byte-wise). Returns true if a goes before b.
bool safetensors_layout_before(const TensorSpec& a, const TensorSpec& b);

// Streaming writer of a checkpoint folder `out_dir`.
//   CheckpointWriter w(out, specs, opts);      // plans shards, creates OUT.tmp-XXXXXX, writes headers
//   w.write(name, bytes) / w.append(name, chunk) ...  // any tensor order; chunks of one tensor in order
//   w.copy_file("in/config.json");            // other files of the output folder
//   w.commit();                                // checks completeness, fsyncs, renames into place
// The temporary folder is created next to `out_dir` (missing parent folders are created) and named
// "<out_dir>.tmp-XXXXXX". Destroying the writer without commit() (e.g. during an exception) removes it
// and leaves `out_dir` untouched. Input files are only read (copy_file). All methods are thread-safe (calls are serialized).
// Errors: UsageError (bad declarations, unknown tensor, wrong byte count, output exists without
// overwrite, output contains an input, commit with tensors missing, use after commit), IoError (any
// file-system failure, naming the file: mkdir, open, write, disk full, fsync, rename).
class CheckpointWriter {
 public:
  CheckpointWriter(const std::filesystem::path& out_dir, std::vector<TensorSpec> tensors, WriterOptions opts = {});
  ~CheckpointWriter();
  CheckpointWriter(CheckpointWriter&&) noexcept;
  CheckpointWriter& operator=(CheckpointWriter&&) noexcept;
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  const std::filesystem::path& output_dir() const;   // final location
  const std::filesystem::path& pending_dir() const;  // temporary folder (valid until commit)
  const std::vector<ShardPlan>& shards() const;
  const std::vector<TensorSpec>& tensors() const;     // as declared
  std::uint64_t total_size() const;                   // sum of tensor bytes (index metadata.total_size)

  // Writes the whole tensor at once: data.size() must equal its declared nbytes and nothing may have been
  // written for it yet.
  void write(std::string_view name, std::span<const std::byte> data);
  // Appends the next chunk of a tensor's bytes (little-endian, row-major); the total may not exceed the
  // declared nbytes. Tensors may be interleaved.
  void append(std::string_view name, std::span<const std::byte> chunk);
  // Bytes still expected for `name`.
  std::uint64_t remaining(std::string_view name) const;

  // Copies a file (following symlinks) into the pending folder as `dest` (relative path, no "..";
  // default: src's file name). Refuses names of the planned weight files/index or already added files.
  void copy_file(const std::filesystem::path& src, const std::filesystem::path& dest = {});
  // Writes a file with the given contents into the pending folder (same naming rules).
  void write_file(const std::filesystem::path& dest, std::string_view contents);

  // Verifies every tensor is complete, writes the index (sharded), fsyncs, and renames the pending folder
  // to output_dir(). After commit the writer accepts no more calls except the accessors.
  void commit();
  bool committed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A tensor and its bytes for write_safetensors_file.
struct TensorData {
  TensorSpec spec;
  std::span<const std::byte> data;
};

// Writes one safetensors file (small outputs: golden files, traces) atomically: a temporary file in the
// same folder, fsynced and renamed over `file`. Layout as above. Throws UsageError (bad specs, data size
// != nbytes, file exists and !overwrite) / IoError.
void write_safetensors_file(const std::filesystem::path& file, const std::vector<TensorData>& tensors,
                            const std::map<std::string, std::string>& metadata = {}, bool overwrite = false);

// Writes a small text file (JSON reports, calibration statistics) atomically: a temporary sibling file,
// fsynced, renamed over `file` (an existing file is replaced). Throws IoError naming `file` when the folder
// is missing or not writable, the disk is full, or the rename fails; the temporary file is removed.
void write_text_file(const std::filesystem::path& file, std::string_view text);

// Throws UsageError when `out` is one of `inputs`, contains one, or lies inside one (writing or replacing it
// would touch an input): the guard of CheckpointWriter, for callers that stage outputs under other names first.
void require_separate_output(const std::filesystem::path& out, const std::vector<std::filesystem::path>& inputs);

// The pre-flight check of a command that writes the folder `out` from `inputs`, run before any work:
// require_separate_output, then UsageError "output folder already exists" when `out` exists and not
// `overwrite` (hint: choose another output folder or pass --force); with `overwrite`, UsageError when `out`
// exists and is not a folder (--force replaces an output folder, never a file).
void require_new_output(const std::filesystem::path& out, const std::vector<std::filesystem::path>& inputs,
                        bool overwrite);

// Checks that the file `file` can be created later (its folder exists and is writable), so a long run does
// not fail at its end: IoError{where = file, what = "cannot write the <flag> file"} naming the folder, with
// a hint that says the check ran before `before` (e.g. "generating"). `flag` names the option, e.g. "--dump".
void require_writable_file(const std::filesystem::path& file, const std::string& flag, const std::string& before);

}  // namespace vlq::io
