// safetensors reader: strict header validation (huggingface/safetensors README "Format" and
// safetensors/src/tensor.rs `read_metadata`/`validate`), mmap'ed files and pread-only header reads.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "vlq/io/json.h"
#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"

namespace vlq::io {

using nlohmann::json;

namespace {

constexpr std::string_view kSupportedDtypes =
    "F64, F32, F16, BF16, F8_E4M3, F8_E5M2, F8_E8M0, I64, I32, I16, I8, U64, U32, U16, U8, BOOL";
// Dtype strings the reference implementation accepts but vlq does not read.
constexpr std::array<std::string_view, 6> kKnownUnsupported{"F4",          "F6_E2M3",     "F6_E3M2",
                                                             "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64"};

std::string at(const std::string& file, std::string_view tensor) { return file + ": " + std::string(tensor); }

std::string shape_str(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// A non-negative JSON integer (what the reference deserialises as usize), or nullopt.
std::optional<std::uint64_t> as_u64(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  return std::nullopt;
}

const json& field(const json& entry, const char* key, const std::string& where, std::string_view expected) {
  auto it = entry.find(key);
  if (it == entry.end())
    throw FormatError({where, fmt::format("header entry has no \"{}\" field", key), std::string(expected),
                       "no such field", "every tensor entry needs dtype, shape and data_offsets"});
  return *it;
}

TensorInfo parse_entry(const std::string& name, const json& entry, const std::string& file) {
  const std::string where = at(file, name);
  if (!entry.is_object())
    throw FormatError({where, "header entry is not an object",
                       "{\"dtype\": ..., \"shape\": [...], \"data_offsets\": [begin, end]}", json_kind(entry),
                       "the file is corrupt or not a safetensors file"});
  TensorInfo t;
  t.name = name;

  const json& dt = field(entry, "dtype", where, "a dtype string such as \"BF16\"");
  if (!dt.is_string())
    throw FormatError({where, "\"dtype\" is not a string", "a dtype string such as \"BF16\"", json_kind(dt), ""});
  const auto& dts = dt.get_ref<const std::string&>();
  auto parsed = parse_dtype(dts);
  if (!parsed) {
    if (std::find(kKnownUnsupported.begin(), kKnownUnsupported.end(), dts) != kKnownUnsupported.end())
      throw UnsupportedError({where, fmt::format("dtype \"{}\" is not supported by vlq", dts),
                              std::string(kSupportedDtypes), fmt::format("\"{}\"", dts),
                              "convert this tensor to a supported dtype"});
    throw FormatError({where, fmt::format("unknown dtype \"{}\"", dts), std::string(kSupportedDtypes),
                       fmt::format("\"{}\"", dts), "dtype strings are case-sensitive safetensors names"});
  }
  t.dtype = *parsed;

  const json& sh = field(entry, "shape", where, "an array of non-negative integers");
  if (!sh.is_array())
    throw FormatError({where, "\"shape\" is not an array", "an array of non-negative integers", json_kind(sh), ""});
  t.shape.reserve(sh.size());
  for (std::size_t i = 0; i < sh.size(); ++i) {
    auto d = as_u64(sh[i]);
    if (!d)
      throw FormatError({where, fmt::format("shape dim {} is not a non-negative integer", i),
                         "a non-negative integer", json_kind(sh[i]), ""});
    if (*d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw FormatError({where, fmt::format("shape dim {} is too large", i), "at most 2^63-1",
                         std::to_string(*d), ""});
    t.shape.push_back(static_cast<std::int64_t>(*d));
  }

  const json& off = field(entry, "data_offsets", where, "[begin, end]");
  if (!off.is_array() || off.size() != 2)
    throw FormatError({where, "\"data_offsets\" is not a pair [begin, end]", "an array of 2 non-negative integers",
                       off.is_array() ? fmt::format("an array of {} elements", off.size()) : json_kind(off), ""});
  auto b = as_u64(off[0]);
  auto e = as_u64(off[1]);
  if (!b || !e)
    throw FormatError({where, "\"data_offsets\" element is not a non-negative integer", "non-negative integers",
                       json_kind(!b ? off[0] : off[1]), ""});
  if (*e < *b)
    throw FormatError({where, "data_offsets end is before begin", fmt::format("end >= {}", *b),
                       fmt::format("[{}, {}]", *b, *e), "the file is corrupt"});
  t.data_begin = *b;
  t.data_end = *e;

  // numel x element size with overflow checks, in the reference's order.
  std::uint64_t numel = 1;
  for (auto d : t.shape) {
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(d), &numel))
      throw FormatError({where, "number of elements overflows 64 bits", "a product of dims < 2^64",
                         fmt::format("shape {}", shape_str(t.shape)), "the file is corrupt"});
  }
  std::uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(t.dtype)), &nbytes))
    throw FormatError({where, "byte size overflows 64 bits", "numel x dtype size < 2^64",
                       fmt::format("shape {} x {} bytes ({})", shape_str(t.shape), dtype_size(t.dtype), dts),
                       "the file is corrupt"});
  if (nbytes != t.nbytes())
    throw FormatError({where, "data_offsets span does not match shape and dtype",
                       fmt::format("{} bytes ({} {}, {} bytes per element)", nbytes, dts, shape_str(t.shape),
                                   dtype_size(t.dtype)),
                       fmt::format("{} bytes (data_offsets [{}, {}])", t.nbytes(), t.data_begin, t.data_end),
                       "the file is corrupt or was written by a buggy exporter"});
  return t;
}

[[noreturn]] void throw_io(const std::string& file, std::string_view what, int err, std::string hint = "") {
  throw IoError({file, std::string(what), "", std::strerror(err), std::move(hint)});
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Opens a regular file read-only; returns its size.
std::uint64_t open_regular(const std::filesystem::path& path, Fd& f) {
  const std::string file = path.string();
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f.fd < 0) throw_io(file, "cannot open file", errno, errno == ENOENT ? "check the path" : "");
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw_io(file, "cannot stat file", errno);
  if (!S_ISREG(st.st_mode))
    throw IoError({file, "not a regular file", "a .safetensors file",
                   S_ISDIR(st.st_mode) ? "a directory" : "a special file", ""});
  return static_cast<std::uint64_t>(st.st_size);
}

void pread_all(int fd, std::byte* dst, std::size_t n, std::uint64_t offset, const std::string& file) {
  while (n > 0) {
    ssize_t r = ::pread(fd, dst, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_io(file, "read failed", errno);
    }
    if (r == 0)
      throw IoError({file, "file shrank while being read", fmt::format("{} more bytes at offset {}", n, offset),
                     "end of file", "another process is writing this file"});
    dst += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
}

// Checks the 8-byte prefix value N against the file size (reference order: too small, too large, too long).
void check_prefix(std::uint64_t file_size, std::uint64_t n, const std::string& file) {
  if (n > kMaxHeaderBytes)
    throw FormatError({file, "header length is larger than the 100 MB limit",
                       fmt::format("at most {} bytes", kMaxHeaderBytes), fmt::format("{} bytes", n),
                       "the file is corrupt or not a safetensors file"});
  if (n > file_size - 8)
    throw FormatError({file, "header length runs past the end of the file",
                       fmt::format("at most {} bytes (file size {} - 8)", file_size - 8, file_size),
                       fmt::format("{} bytes", n), "the file is truncated; re-download it"});
}

void check_min_size(std::uint64_t file_size, const std::string& file) {
  if (file_size < 8)
    throw FormatError({file, "file is too small to be a safetensors file", "at least 8 bytes (header length)",
                       fmt::format("{} bytes", file_size), "the file is truncated or empty; re-download it"});
}

std::uint64_t read_le64(const std::byte* p) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint64_t>(p[i]);
  return n;
}

}  // namespace

std::uint64_t TensorInfo::numel() const {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n))
      throw FormatError({name, "number of elements overflows 64 bits or a dim is negative", "dims >= 0, product < 2^64",
                         shape_str(shape), ""});
  }
  return n;
}

SafetensorsHeader parse_safetensors_header(std::string_view header_json, std::uint64_t data_size,
                                           const std::string& file) {
  // README: the header MUST begin with '{' and MAY be trailing padded with spaces (0x20).
  if (header_json.empty() || header_json.front() != '{')
    throw FormatError({file, "header does not begin with '{'", "a JSON object starting with '{'",
                       header_json.empty() ? std::string("an empty header")
                                           : io::show_byte(static_cast<unsigned char>(header_json.front())),
                       "the file is corrupt or not a safetensors file"});
  std::string_view body = header_json;
  while (!body.empty() && body.back() == ' ') body.remove_suffix(1);
  if (body.back() != '}')
    throw FormatError({file, "header does not end with '}' followed only by space padding",
                       "'}' then spaces (0x20)", "last non-space byte " + io::show_byte(static_cast<unsigned char>(body.back())),
                       "the header is truncated or corrupt"});
  // Depth 3: {name: {"shape": [dims]}}.
  json j = io::parse_json_strict(body, file, 3, "safetensors header", 1);
  if (!j.is_object())
    throw FormatError({file, "header is not a JSON object", "an object", json_kind(j), ""});

  SafetensorsHeader h;
  h.tensors.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      const json& m = it.value();
      if (m.is_null()) continue;  // the reference reads null as "no metadata"
      if (!m.is_object())
        throw FormatError({at(file, "__metadata__"), "__metadata__ is not an object", "an object of strings",
                           json_kind(m), "the format allows only a string -> string map here"});
      for (auto mit = m.begin(); mit != m.end(); ++mit) {
        if (!mit.value().is_string())
          throw FormatError({at(file, "__metadata__"), fmt::format("metadata value of {} is not a string", quote_name(mit.key())),
                             "a string", json_kind(mit.value()),
                             "the format allows only string values; store numbers as strings"});
        h.metadata.emplace(mit.key(), mit.value().get<std::string>());
      }
      continue;
    }
    h.tensors.push_back(parse_entry(key, it.value(), file));
  }

  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.data_begin != b.data_begin) return a.data_begin < b.data_begin;
    if (a.data_end != b.data_end) return a.data_end < b.data_end;
    return a.name < b.name;
  });
  std::uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : h.tensors) {
    if (t.data_begin != pos) {
      if (!prev)
        throw FormatError({at(file, t.name), "the first tensor's data does not start at offset 0", "data_offsets begin 0",
                           fmt::format("{}", t.data_begin), "the data section must have no holes"});
      if (t.data_begin > pos)
        throw FormatError({at(file, t.name),
                           fmt::format("gap of {} bytes in the data section before this tensor (after {})",
                                       t.data_begin - pos, quote_name(prev->name)),
                           fmt::format("data_offsets begin {}", pos), fmt::format("{}", t.data_begin),
                           "the data section must be contiguous"});
      throw FormatError({at(file, t.name), fmt::format("data overlaps tensor {}", quote_name(prev->name)),
                         fmt::format("data_offsets begin {}", pos), fmt::format("{}", t.data_begin),
                         "each byte of data belongs to exactly one tensor"});
    }
    if (t.data_end > data_size)
      throw FormatError({at(file, t.name), "data_offsets end is past the end of the file",
                         fmt::format("at most {} (data section size)", data_size),
                         fmt::format("{}", t.data_end), "the file is truncated; re-download it"});
    pos = t.data_end;
    prev = &t;
  }
  if (pos != data_size)
    throw FormatError({file, fmt::format("{} bytes after the last tensor are not covered by the header", data_size - pos),
                       fmt::format("data section of {} bytes", pos), fmt::format("{} bytes", data_size),
                       "the data section must be fully covered; the file may have trailing garbage"});
  return h;
}

SafetensorsHeader parse_safetensors_bytes(std::span<const std::byte> bytes, const std::string& file,
                                          std::uint64_t* header_len) {
  check_min_size(bytes.size(), file);
  const std::uint64_t n = read_le64(bytes.data());
  check_prefix(bytes.size(), n, file);
  std::string_view header(reinterpret_cast<const char*>(bytes.data() + 8), static_cast<std::size_t>(n));
  auto h = parse_safetensors_header(header, bytes.size() - 8 - n, file);
  if (header_len) *header_len = n;
  return h;
}

SafetensorsHeader read_safetensors_header(const std::filesystem::path& path) {
  const std::string file = path.string();
  Fd f;
  const std::uint64_t size = open_regular(path, f);
  check_min_size(size, file);
  std::array<std::byte, 8> prefix{};
  pread_all(f.fd, prefix.data(), 8, 0, file);
  const std::uint64_t n = read_le64(prefix.data());
  check_prefix(size, n, file);
  std::string header(static_cast<std::size_t>(n), '\0');
  pread_all(f.fd, reinterpret_cast<std::byte*>(header.data()), header.size(), 8, file);
  return parse_safetensors_header(header, size - 8 - n, file);
}

// ---- SafetensorsFile ----------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string file = path.string();
  SafetensorsFile sf;
  sf.path_ = path;
  Fd f;
  const std::uint64_t size = open_regular(path, f);
  check_min_size(size, file);
  if (size > std::numeric_limits<std::size_t>::max())
    throw IoError({file, "file too large to map", "", fmt::format("{} bytes", size), ""});
  void* p = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) throw_io(file, "cannot memory-map file", errno);
  sf.map_ = static_cast<const std::byte*>(p);
  sf.map_len_ = size;
  sf.file_size_ = size;
  // From here on `sf` owns the mapping (its destructor unmaps on exceptions).
  sf.header_ = parse_safetensors_bytes({sf.map_, static_cast<std::size_t>(size)}, file, &sf.header_len_);
  for (std::size_t i = 0; i < sf.header_.tensors.size(); ++i) sf.index_.emplace(sf.header_.tensors[i].name, i);
  return sf;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      header_(std::move(o.header_)),
      index_(std::move(o.index_)),
      map_(std::exchange(o.map_, nullptr)),
      map_len_(std::exchange(o.map_len_, 0)),
      file_size_(o.file_size_),
      header_len_(o.header_len_) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(const_cast<std::byte*>(map_), static_cast<std::size_t>(map_len_));
    path_ = std::move(o.path_);
    header_ = std::move(o.header_);
    index_ = std::move(o.index_);
    map_ = std::exchange(o.map_, nullptr);
    map_len_ = std::exchange(o.map_len_, 0);
    file_size_ = o.file_size_;
    header_len_ = o.header_len_;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), static_cast<std::size_t>(map_len_));
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const std::byte> SafetensorsFile::data(const TensorInfo& t) const {
  const std::uint64_t data_size = file_size_ - 8 - header_len_;
  if (t.data_end < t.data_begin || t.data_end > data_size)
    throw FormatError({at(path_.string(), t.name), "tensor offsets lie outside this file's data section",
                       fmt::format("end <= {}", data_size), fmt::format("[{}, {}]", t.data_begin, t.data_end),
                       "pass a TensorInfo from this file's header"});
  return {map_ + 8 + header_len_ + t.data_begin, static_cast<std::size_t>(t.nbytes())};
}

std::span<const std::byte> SafetensorsFile::data(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (!t)
    throw FormatError({at(path_.string(), name), "no such tensor in this file", "", "", "list the tensors with `vlq inspect`"});
  return data(*t);
}

namespace {
void advise(const std::byte* base, std::uint64_t off, std::uint64_t len, int advice) {
  if (!base || len == 0) return;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = off / page * page;
  ::madvise(const_cast<std::byte*>(base) + start, static_cast<std::size_t>(off + len - start), advice);
}
}  // namespace

void SafetensorsFile::advise_sequential() const { advise(map_, 0, map_len_, MADV_SEQUENTIAL); }
void SafetensorsFile::advise_willneed() const { advise(map_, 0, map_len_, MADV_WILLNEED); }
void SafetensorsFile::advise_willneed(const TensorInfo& t) const {
  if (t.data_end <= file_size_ - 8 - header_len_) advise(map_, 8 + header_len_ + t.data_begin, t.nbytes(), MADV_WILLNEED);
}
void SafetensorsFile::advise_dontneed(const TensorInfo& t) const {
  if (t.data_end <= file_size_ - 8 - header_len_) advise(map_, 8 + header_len_ + t.data_begin, t.nbytes(), MADV_DONTNEED);
}

}  // namespace vlq::io
