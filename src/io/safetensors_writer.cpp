// Streaming, atomic safetensors / sharded-checkpoint writer (layout rules of safetensors `prepare`,
// shard naming and index of transformers/huggingface_hub).
#include "vlq/io/safetensors_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <system_error>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"

namespace vlq::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxOpenFds = 16;

// Position of a dtype in the reference's `Dtype` enum (increasing alignment); layout sorts descending.
int layout_rank(DType t) {
  switch (t) {
    case DType::BOOL: return 0;
    case DType::U8: return 1;
    case DType::I8: return 2;
    case DType::F8_E5M2: return 3;
    case DType::F8_E4M3: return 4;
    case DType::F8_E8M0: return 5;
    case DType::I16: return 6;
    case DType::U16: return 7;
    case DType::F16: return 8;
    case DType::BF16: return 9;
    case DType::I32: return 10;
    case DType::U32: return 11;
    case DType::F32: return 12;
    case DType::F64: return 13;
    case DType::I64: return 14;
    case DType::U64: return 15;
  }
  return 0;
}

std::string json_string(std::string_view s, const std::string& what) {
  try {
    return json(std::string(s)).dump();
  } catch (const json::exception&) {
    throw UsageError({what, "not valid UTF-8", "a UTF-8 string", "invalid bytes",
                      "safetensors headers are UTF-8 JSON; rename the tensor or metadata key"});
  }
}

[[noreturn]] void throw_io(const fs::path& file, std::string_view what, int err, std::string expected = "") {
  std::string hint;
  if (err == ENOSPC || err == EDQUOT) hint = "free disk space or write the output elsewhere";
  else if (err == EACCES || err == EPERM || err == EROFS) hint = "check permissions of the output folder";
  else if (err == EFBIG) hint = "the file exceeds a file-size limit (ulimit -f or file system)";
  throw IoError({file.string(), std::string(what), std::move(expected), std::strerror(err), std::move(hint)});
}

void write_all_at(int fd, const std::byte* p, std::size_t n, std::uint64_t off, const fs::path& file) {
  const std::size_t total = n;
  const std::uint64_t off0 = off;
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30), static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_io(file, "write failed", errno, fmt::format("{} bytes at offset {}", total, off0));
    }
    if (w == 0) throw_io(file, "write made no progress", ENOSPC, fmt::format("{} bytes at offset {}", total, off0));
    p += w;
    n -= static_cast<std::size_t>(w);
    off += static_cast<std::uint64_t>(w);
  }
}

void fsync_path(const fs::path& p, bool dir) {
  int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw_io(p, "cannot open for fsync", errno);
  if (::fsync(fd) != 0 && errno != EINVAL) {
    int e = errno;
    ::close(fd);
    throw_io(p, "fsync failed", e);
  }
  ::close(fd);
}

std::string random_suffix() {
  static std::mt19937_64 rng{std::random_device{}() ^
                             static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                             static_cast<std::uint64_t>(::getpid())};
  static std::mutex mu;
  std::lock_guard lock(mu);
  return fmt::format("{:06x}", rng() & 0xffffff);
}

// A fresh sibling name "<base><tag><random>" that does not exist yet (creation is the caller's).
fs::path sibling_name(const fs::path& target, std::string_view tag) {
  for (int i = 0; i < 100; ++i) {
    fs::path p = target.parent_path() / (target.filename().string() + std::string(tag) + random_suffix());
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(p, ec))) return p;
  }
  throw IoError({target.string(), "cannot find a free temporary name", "", "", "remove old *.tmp-* folders"});
}

fs::path make_temp_dir(const fs::path& out) {
  for (int i = 0; i < 100; ++i) {
    fs::path p = sibling_name(out, ".tmp-");
    if (::mkdir(p.c_str(), 0777) == 0) return p;
    if (errno != EEXIST) throw_io(p, "cannot create temporary output folder", errno);
  }
  throw IoError({out.string(), "cannot create a temporary output folder", "", "", ""});
}

bool exists_nofollow(const fs::path& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec));
}

// rename() that fails with EEXIST instead of replacing an existing target (also an empty folder).
int rename_noreplace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) return -1;
  if (exists_nofollow(to)) {
    errno = EEXIST;
    return -1;
  }
  return ::rename(from.c_str(), to.c_str());
}

// Validates specs (names, dims, sizes); returns the byte size of each.
std::vector<std::uint64_t> validate_specs(const std::vector<TensorSpec>& specs, std::uint64_t* total) {
  std::unordered_set<std::string_view> seen;
  std::vector<std::uint64_t> sizes;
  sizes.reserve(specs.size());
  std::uint64_t sum = 0;
  for (const auto& s : specs) {
    if (s.name.empty())
      throw UsageError({"tensor declarations", "empty tensor name", "a non-empty name", "\"\"", ""});
    if (s.name == "__metadata__")
      throw UsageError({s.name, "reserved tensor name", "any name but __metadata__", s.name, ""});
    if (!seen.insert(s.name).second)
      throw UsageError({s.name, "tensor declared twice", "unique names", "a duplicate", ""});
    json_string(s.name, "tensor name " + s.name);
    const std::uint64_t n = s.nbytes();
    if (__builtin_add_overflow(sum, n, &sum))
      throw UsageError({s.name, "total size of the checkpoint overflows 64 bits", "", "", ""});
    sizes.push_back(n);
  }
  if (total) *total = sum;
  return sizes;
}

std::string build_header(const std::vector<const TensorSpec*>& ordered, const std::map<std::string, std::string>& md) {
  std::string h = "{";
  bool first = true;
  if (!md.empty()) {
    for (const auto& [k, v] : md) {
      json_string(k, "metadata key " + k);
      json_string(v, "metadata value of " + k);
    }
    h += "\"__metadata__\":" + json(md).dump();
    first = false;
  }
  std::uint64_t off = 0;
  for (const TensorSpec* s : ordered) {
    if (!first) h += ',';
    first = false;
    const std::uint64_t n = s->nbytes();
    h += json_string(s->name, s->name);
    h += fmt::format(":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", dtype_name(s->dtype),
                     fmt::join(s->shape, ","), off, off + n);
    off += n;
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

std::vector<const TensorSpec*> layout(const std::vector<TensorSpec>& specs, const std::vector<std::size_t>& idx) {
  std::vector<const TensorSpec*> v;
  v.reserve(idx.size());
  for (auto i : idx) v.push_back(&specs[i]);
  std::sort(v.begin(), v.end(), [](const TensorSpec* a, const TensorSpec* b) { return safetensors_layout_before(*a, *b); });
  return v;
}

std::vector<std::vector<std::size_t>> group_shards(const std::vector<std::uint64_t>& sizes, std::uint64_t max) {
  std::vector<std::vector<std::size_t>> groups(1);
  std::uint64_t cur = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (max > 0 && !groups.back().empty() && (cur + sizes[i] > max || cur + sizes[i] < cur)) {
      groups.emplace_back();
      cur = 0;
    }
    groups.back().push_back(i);
    cur += sizes[i];
  }
  return groups;
}

std::string shard_file_name(std::size_t i, std::size_t n) {
  if (n == 1) return kSingleCheckpointFile;
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n);
}

void write_new_file(const fs::path& p, std::string_view contents, bool do_fsync) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) throw_io(p, errno == EEXIST ? "file already exists" : "cannot create file", errno);
  try {
    write_all_at(fd, reinterpret_cast<const std::byte*>(contents.data()), contents.size(), 0, p);
    if (do_fsync && ::fsync(fd) != 0) throw_io(p, "fsync failed", errno);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) throw_io(p, "close failed", errno);
}

// Checks a destination name for copy_file/write_file: relative, no "." / ".." / empty components.
void validate_dest(const fs::path& dest) {
  bool bad = dest.empty() || dest.is_absolute() || dest.has_root_path();
  for (const auto& c : dest) {
    const auto s = c.string();
    if (s.empty() || s == "." || s == "..") bad = true;
  }
  if (bad)
    throw UsageError({dest.string(), "bad destination name in the output folder",
                      "a relative path without '.' or '..' components", dest.string(), ""});
}

}  // namespace

std::uint64_t TensorSpec::nbytes() const {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0)
      throw UsageError({name, "negative dimension", "dims >= 0", fmt::format("[{}]", fmt::join(shape, ", ")), ""});
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n))
      throw UsageError({name, "number of elements overflows 64 bits", "", fmt::format("[{}]", fmt::join(shape, ", ")), ""});
  }
  std::uint64_t b = 0;
  if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(dtype_size(dtype)), &b))
    throw UsageError({name, "byte size overflows 64 bits", "", fmt::format("[{}]", fmt::join(shape, ", ")), ""});
  return b;
}

bool safetensors_layout_before(const TensorSpec& a, const TensorSpec& b) {
  const int ra = layout_rank(a.dtype), rb = layout_rank(b.dtype);
  if (ra != rb) return ra > rb;
  return a.name < b.name;
}

std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& tensors, const WriterOptions& opts) {
  auto sizes = validate_specs(tensors, nullptr);
  auto groups = group_shards(sizes, opts.max_shard_bytes);
  std::vector<ShardPlan> plans;
  plans.reserve(groups.size());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    ShardPlan p;
    p.file_name = shard_file_name(g, groups.size());
    auto ordered = layout(tensors, groups[g]);
    for (const TensorSpec* s : ordered) {
      p.tensors.push_back(s->name);
      p.data_bytes += s->nbytes();
    }
    p.header_bytes = build_header(ordered, opts.metadata).size();
    plans.push_back(std::move(p));
  }
  return plans;
}

// ---- CheckpointWriter ---------------------------------------------------------------------------

struct CheckpointWriter::Impl {
  struct Slot {
    std::size_t shard = 0;
    std::uint64_t offset = 0;  // absolute file offset of the tensor's first byte
    std::uint64_t nbytes = 0;
    std::uint64_t written = 0;
  };

  fs::path out, tmp;
  std::vector<TensorSpec> specs;
  WriterOptions opts;
  std::vector<ShardPlan> plans;
  std::map<std::string, Slot, std::less<>> slots;
  std::vector<int> fds;
  std::deque<std::size_t> lru;
  std::set<std::string> added;  // files added with copy_file/write_file (generic paths)
  std::uint64_t total = 0;
  bool committed = false;
  mutable std::mutex mu;

  ~Impl() {
    for (int& fd : fds)
      if (fd >= 0) ::close(std::exchange(fd, -1));
    if (!committed && !tmp.empty()) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
    }
  }

  fs::path shard_path(std::size_t i) const { return tmp / plans[i].file_name; }

  int fd(std::size_t i) {
    if (fds[i] >= 0) {
      auto it = std::find(lru.begin(), lru.end(), i);
      if (it != lru.end()) lru.erase(it);
      lru.push_back(i);
      return fds[i];
    }
    if (lru.size() >= kMaxOpenFds) {
      std::size_t old = lru.front();
      lru.pop_front();
      if (::close(std::exchange(fds[old], -1)) != 0) throw_io(shard_path(old), "close failed", errno);
    }
    int f = ::open(shard_path(i).c_str(), O_WRONLY | O_CLOEXEC);
    if (f < 0) throw_io(shard_path(i), "cannot open shard for writing", errno);
    fds[i] = f;
    lru.push_back(i);
    return f;
  }

  void check_open() const {
    if (committed)
      throw UsageError({out.string(), "checkpoint writer already committed", "no calls after commit()", "a call", ""});
  }

  Slot& slot(std::string_view name) {
    auto it = slots.find(name);
    if (it == slots.end())
      throw UsageError({std::string(name), "tensor was not declared to the checkpoint writer",
                        "one of the declared tensors", "an undeclared name", "declare every tensor up front"});
    return it->second;
  }

  void init(const fs::path& out_dir, std::vector<TensorSpec> tensors, WriterOptions o) {
    opts = std::move(o);
    specs = std::move(tensors);
    out = fs::absolute(out_dir).lexically_normal();
    if (out.filename().empty()) out = out.parent_path();
    if (out.filename().empty() || out == out.root_path())
      throw UsageError({out_dir.string(), "bad output folder", "a folder path", out_dir.string(), ""});
    std::error_code ec;
    require_separate_output(out, opts.inputs);
    if (exists_nofollow(out) && !opts.overwrite)
      throw UsageError({out.string(), "output already exists", "a path that does not exist", "an existing path",
                        "choose another output folder or pass --overwrite"});

    auto sizes = validate_specs(specs, &total);
    auto groups = group_shards(sizes, opts.max_shard_bytes);

    fs::create_directories(out.parent_path(), ec);
    if (ec) throw IoError({out.parent_path().string(), "cannot create output parent folder", "", ec.message(), ""});
    tmp = make_temp_dir(out);

    fds.assign(groups.size(), -1);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      ShardPlan p;
      p.file_name = shard_file_name(g, groups.size());
      auto ordered = layout(specs, groups[g]);
      const std::string header = build_header(ordered, opts.metadata);
      p.header_bytes = header.size();
      std::uint64_t off = 8 + p.header_bytes;
      for (const TensorSpec* s : ordered) {
        p.tensors.push_back(s->name);
        const std::uint64_t n = s->nbytes();
        slots.emplace(s->name, Slot{g, off, n, 0});
        p.data_bytes += n;
        off += n;
      }
      plans.push_back(p);

      const fs::path path = shard_path(g);
      int f = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (f < 0) throw_io(path, "cannot create shard", errno);
      try {
        std::byte prefix[8];
        for (int i = 0; i < 8; ++i) prefix[i] = static_cast<std::byte>((p.header_bytes >> (8 * i)) & 0xff);
        write_all_at(f, prefix, 8, 0, path);
        write_all_at(f, reinterpret_cast<const std::byte*>(header.data()), header.size(), 8, path);
        bool sized = false;
        if (opts.preallocate && p.file_bytes() > 0) {
          if (::fallocate(f, 0, 0, static_cast<off_t>(p.file_bytes())) == 0) sized = true;
          else if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
            throw_io(path, "cannot reserve disk space for shard", errno, fmt::format("{} bytes", p.file_bytes()));
        }
        if (!sized && ::ftruncate(f, static_cast<off_t>(p.file_bytes())) != 0)
          throw_io(path, "cannot size shard", errno, fmt::format("{} bytes", p.file_bytes()));
      } catch (...) {
        ::close(f);
        throw;
      }
      // Shards are reopened on demand (at most kMaxOpenFds open at a time).
      if (::close(f) != 0) throw_io(path, "close failed", errno);
    }
  }

  void append(std::string_view name, std::span<const std::byte> chunk) {
    check_open();
    Slot& s = slot(name);
    if (chunk.size() > s.nbytes - s.written)
      throw UsageError({std::string(name), "more bytes than declared for this tensor",
                        fmt::format("{} bytes in total", s.nbytes),
                        fmt::format("{} bytes ({} already written + {})", s.written + chunk.size(), s.written, chunk.size()),
                        "check dtype and shape of the declaration"});
    if (chunk.empty()) return;
    write_all_at(fd(s.shard), chunk.data(), chunk.size(), s.offset + s.written, shard_path(s.shard));
    s.written += chunk.size();
  }

  void commit() {
    check_open();
    std::vector<std::string> missing;
    for (const auto& [name, s] : slots)
      if (s.written != s.nbytes) missing.push_back(fmt::format("{} ({} of {} bytes)", name, s.written, s.nbytes));
    if (!missing.empty()) {
      std::string list;
      for (std::size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
      if (missing.size() > 8) list += fmt::format(", ... and {} more", missing.size() - 8);
      throw UsageError({out.string(), fmt::format("{} tensors were not completely written", missing.size()),
                        "all declared bytes", list, "write every declared tensor before commit()"});
    }
    for (std::size_t i = 0; i < plans.size(); ++i) {
      const int f = fd(i);
      struct stat st {};
      if (::fstat(f, &st) != 0) throw_io(shard_path(i), "cannot stat shard", errno);
      if (static_cast<std::uint64_t>(st.st_size) != plans[i].file_bytes())
        throw IoError({shard_path(i).string(), "shard has the wrong size", fmt::format("{} bytes", plans[i].file_bytes()),
                       fmt::format("{} bytes", st.st_size), "the file was modified by another process"});
      if (opts.fsync && ::fsync(f) != 0) throw_io(shard_path(i), "fsync failed", errno);
      lru.erase(std::remove(lru.begin(), lru.end(), i), lru.end());
      if (::close(std::exchange(fds[i], -1)) != 0) throw_io(shard_path(i), "close failed", errno);
    }
    if (plans.size() > 1) {
      json idx;
      idx["metadata"]["total_size"] = total;
      json& wm = idx["weight_map"];
      wm = json::object();
      for (const auto& p : plans)
        for (const auto& t : p.tensors) wm[t] = p.file_name;
      write_new_file(tmp / kCheckpointIndexFile, idx.dump(2) + "\n", opts.fsync);
    }
    if (opts.fsync) fsync_path(tmp, true);

    if (exists_nofollow(out)) {
      if (!opts.overwrite)
        throw UsageError({out.string(), "output appeared while writing", "a path that does not exist",
                          "an existing path", "choose another output folder or pass --overwrite"});
      fs::path old;
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) == 0) {
        old = tmp;  // now holds the previous output
      } else {
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
          throw_io(out, "cannot replace the output folder", errno);
        old = sibling_name(out, ".old-");
        if (::rename(out.c_str(), old.c_str()) != 0) throw_io(out, "cannot move the old output aside", errno);
        if (::rename(tmp.c_str(), out.c_str()) != 0) {
          int e = errno;
          ::rename(old.c_str(), out.c_str());
          throw_io(out, "cannot move the new output into place", e);
        }
      }
      committed = true;
      std::error_code ec;
      fs::remove_all(old, ec);  // best effort: the new output is already in place
    } else {
      if (rename_noreplace(tmp, out) != 0) throw_io(out, "cannot move the output into place", errno);
      committed = true;
    }
    tmp.clear();
    if (opts.fsync) fsync_path(out.parent_path(), true);
  }

  void add_file_check(const fs::path& dest) {
    check_open();
    validate_dest(dest);
    const std::string g = dest.lexically_normal().generic_string();
    bool reserved = g == kCheckpointIndexFile;
    for (const auto& p : plans) reserved = reserved || g == p.file_name;
    if (reserved)
      throw UsageError({dest.string(), "name is reserved for the checkpoint's weight files", "another name", g, ""});
    if (!added.insert(g).second)
      throw UsageError({dest.string(), "file already added to the output", "each file once", g, ""});
    std::error_code ec;
    fs::create_directories((tmp / dest).parent_path(), ec);
    if (ec) {
      added.erase(g);
      throw IoError({(tmp / dest).parent_path().string(), "cannot create folder", "", ec.message(), ""});
    }
  }
};

CheckpointWriter::CheckpointWriter(const fs::path& out_dir, std::vector<TensorSpec> tensors, WriterOptions opts)
    : impl_(std::make_unique<Impl>()) {
  impl_->init(out_dir, std::move(tensors), std::move(opts));
}
CheckpointWriter::~CheckpointWriter() = default;
CheckpointWriter::CheckpointWriter(CheckpointWriter&&) noexcept = default;
CheckpointWriter& CheckpointWriter::operator=(CheckpointWriter&&) noexcept = default;

const fs::path& CheckpointWriter::output_dir() const { return impl_->out; }
const fs::path& CheckpointWriter::pending_dir() const { return impl_->tmp; }
const std::vector<ShardPlan>& CheckpointWriter::shards() const { return impl_->plans; }
const std::vector<TensorSpec>& CheckpointWriter::tensors() const { return impl_->specs; }
std::uint64_t CheckpointWriter::total_size() const { return impl_->total; }

void CheckpointWriter::write(std::string_view name, std::span<const std::byte> data) {
  std::lock_guard lock(impl_->mu);
  impl_->check_open();
  auto& s = impl_->slot(name);
  if (s.written != 0 || data.size() != s.nbytes)
    throw UsageError({std::string(name), "write() needs the whole tensor at once",
                      fmt::format("{} bytes, nothing written before", s.nbytes),
                      fmt::format("{} bytes, {} written before", data.size(), s.written),
                      "use append() for chunks; check dtype and shape"});
  impl_->append(name, data);
}

void CheckpointWriter::append(std::string_view name, std::span<const std::byte> chunk) {
  std::lock_guard lock(impl_->mu);
  impl_->append(name, chunk);
}

std::uint64_t CheckpointWriter::remaining(std::string_view name) const {
  std::lock_guard lock(impl_->mu);
  auto& s = impl_->slot(name);
  return s.nbytes - s.written;
}

void CheckpointWriter::copy_file(const fs::path& src, const fs::path& dest_in) {
  std::lock_guard lock(impl_->mu);
  const fs::path dest = dest_in.empty() ? src.filename() : dest_in;
  impl_->add_file_check(dest);
  const fs::path target = impl_->tmp / dest;
  std::error_code ec;
  if (!fs::copy_file(src, target, fs::copy_options::none, ec) || ec) {
    impl_->added.erase(dest.lexically_normal().generic_string());
    throw IoError({src.string(), "cannot copy file into the output", "a readable file copied to " + target.string(),
                   ec.message(), "check that the source exists and the disk has space"});
  }
  if (impl_->opts.fsync) fsync_path(target, false);
}

void CheckpointWriter::write_file(const fs::path& dest, std::string_view contents) {
  std::lock_guard lock(impl_->mu);
  impl_->add_file_check(dest);
  try {
    write_new_file(impl_->tmp / dest, contents, impl_->opts.fsync);
  } catch (...) {
    impl_->added.erase(dest.lexically_normal().generic_string());
    throw;
  }
}

void CheckpointWriter::commit() {
  std::lock_guard lock(impl_->mu);
  impl_->commit();
}

bool CheckpointWriter::committed() const {
  std::lock_guard lock(impl_->mu);
  return impl_->committed;
}

// ---- single file --------------------------------------------------------------------------------

void write_safetensors_file(const fs::path& file, const std::vector<TensorData>& tensors,
                            const std::map<std::string, std::string>& metadata, bool overwrite) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) specs.push_back(t.spec);
  validate_specs(specs, nullptr);
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return safetensors_layout_before(specs[a], specs[b]); });
  std::vector<const TensorSpec*> ordered;
  for (auto i : order) {
    ordered.push_back(&specs[i]);
    if (tensors[i].data.size() != specs[i].nbytes())
      throw UsageError({specs[i].name, "tensor data size does not match shape and dtype",
                        fmt::format("{} bytes", specs[i].nbytes()), fmt::format("{} bytes", tensors[i].data.size()), ""});
  }
  const fs::path target = fs::absolute(file);
  if (exists_nofollow(target) && !overwrite)
    throw UsageError({target.string(), "output file already exists", "a path that does not exist", "an existing file",
                      "choose another name or allow overwriting"});
  const std::string header = build_header(ordered, metadata);
  fs::path tmp;
  int fd = -1;
  for (int i = 0; i < 100 && fd < 0; ++i) {
    tmp = sibling_name(target, ".tmp-");
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) throw_io(tmp, "cannot create temporary file", errno);
  }
  if (fd < 0) throw IoError({target.string(), "cannot create a temporary file", "", "", ""});
  try {
    std::byte prefix[8];
    for (int i = 0; i < 8; ++i) prefix[i] = static_cast<std::byte>((std::uint64_t{header.size()} >> (8 * i)) & 0xff);
    std::uint64_t off = 0;
    write_all_at(fd, prefix, 8, off, tmp);
    off += 8;
    write_all_at(fd, reinterpret_cast<const std::byte*>(header.data()), header.size(), off, tmp);
    off += header.size();
    for (auto i : order) {
      write_all_at(fd, tensors[i].data.data(), tensors[i].data.size(), off, tmp);
      off += tensors[i].data.size();
    }
    if (::fsync(fd) != 0) throw_io(tmp, "fsync failed", errno);
    int fd2 = std::exchange(fd, -1);
    if (::close(fd2) != 0) throw_io(tmp, "close failed", errno);
    if ((overwrite ? ::rename(tmp.c_str(), target.c_str()) : rename_noreplace(tmp, target)) != 0)
      throw_io(target, errno == EEXIST ? "output file appeared while writing" : "cannot move the file into place", errno);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

void require_separate_output(const fs::path& out, const std::vector<fs::path>& inputs) {
  std::error_code ec;
  const fs::path out_canon = fs::weakly_canonical(fs::absolute(out), ec);
  for (const auto& in : inputs) {
    const fs::path ic = fs::weakly_canonical(fs::absolute(in), ec);
    auto rel = ic.lexically_relative(out_canon);
    if (ic == out_canon || (!rel.empty() && *rel.begin() != ".."))
      throw UsageError({out.string(), "output folder is or contains an input", "an output separate from the inputs",
                        "input " + in.string(), "choose another output folder"});
    const auto back = out_canon.lexically_relative(ic);
    if (!back.empty() && *back.begin() != ".." && *back.begin() != ".")
      throw UsageError({out.string(), "output folder is inside the input folder", "an output separate from the inputs",
                        "input " + in.string(), "choose an output folder outside the input"});
  }
}

void require_new_output(const fs::path& out, const std::vector<fs::path>& inputs, bool overwrite) {
  require_separate_output(out, inputs);
  if (exists_nofollow(out) && !overwrite)
    throw UsageError({out.string(), "output folder already exists", "a path that does not exist", "an existing path",
                      "choose another output folder or pass --force to replace it"});
  std::error_code ec;
  if (exists_nofollow(out) && !fs::is_directory(out, ec))  // --force replaces a checkpoint folder, never a file
    throw UsageError({out.string(), "the output path exists and is not a folder", "a new path, or a folder to replace with --force",
                      fs::is_symlink(fs::symlink_status(out, ec)) ? "a symbolic link to a non-folder" : "a file",
                      "--force only replaces an output folder: remove the file yourself or choose another output path"});
}

void require_writable_file(const fs::path& file, const std::string& flag, const std::string& before) {
  std::error_code ec;
  const fs::path parent = fs::absolute(file).parent_path();
  if (!fs::is_directory(parent, ec) || ::access(parent.c_str(), W_OK) != 0)
    throw IoError({file.string(), "cannot write the " + flag + " file", "a writable folder", parent.string(),
                   "create the folder or choose another path (checked before " + before + ")"});
  if (fs::is_directory(file, ec))
    throw IoError({file.string(), "the " + flag + " path is a folder", "a file path", "an existing folder",
                   "name a file, e.g. " + (file / "report.html").string() + " (checked before " + before + ")"});
}

void write_text_file(const fs::path& file, std::string_view text) {
  const fs::path target = fs::absolute(file);
  fs::path tmp;
  try {
    tmp = sibling_name(target, ".tmp-");
    write_new_file(tmp, text, true);
    if (::rename(tmp.c_str(), target.c_str()) != 0) throw_io(target, "cannot move the file into place", errno);
  } catch (const Error& e) {
    if (!tmp.empty()) ::unlink(tmp.c_str());
    auto info = e.info();
    info.where = file.string();
    if (info.hint.empty()) info.hint = "check that the folder exists, is writable and the disk is not full";
    throw IoError(info);
  }
}

}  // namespace vlq::io
