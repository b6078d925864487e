// Sharded Hugging Face checkpoints: model.safetensors.index.json parsing (with safe shard names) and
// the Checkpoint view over one or many safetensors files.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "vlq/io/json.h"
#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"

namespace vlq::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {


bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void validate_shard_name(const std::string& shard, const std::string& tensor, const std::string& file) {
  std::string problem;
  if (shard.empty()) problem = "is empty";
  else if (shard.find('\0') != std::string::npos) problem = "contains a NUL byte";
  else if (shard.front() == '/') problem = "is an absolute path";
  else if (shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos) problem = "contains a path separator";
  else if (shard == "." || shard == "..") problem = "is a directory reference";
  if (!problem.empty())
    throw FormatError({file + ": " + tensor, "shard name in weight_map " + problem,
                       "a plain file name inside the checkpoint folder, e.g. model-00001-of-00002.safetensors",
                       quote_name(shard), "the index is corrupt or malicious; fix weight_map"});
}

std::string read_text_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError({p.string(), "cannot open file", "", std::strerror(errno), "check the path and permissions"});
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError({p.string(), "read failed", "", std::strerror(errno), ""});
  return ss.str();
}

// True if `p` (canonical) lies inside folder `root` (canonical).
bool inside(const fs::path& p, const fs::path& root) {
  auto rel = p.lexically_relative(root);
  if (rel.empty()) return false;
  auto first = *rel.begin();
  return first != ".." && first != "." && !rel.is_absolute();
}

// Folders a shard may resolve into: the checkpoint folder, plus .../models--X/blobs for a Hugging Face
// cache snapshot folder .../models--X/snapshots/REV (whose files are symlinks into blobs).
std::vector<fs::path> allowed_roots(const fs::path& dir_canonical, const fs::path& dir_given) {
  std::vector<fs::path> roots{dir_canonical};
  for (const fs::path& d : {dir_given, dir_canonical}) {
    fs::path abs = fs::absolute(d).lexically_normal();
    if (abs.filename().empty()) abs = abs.parent_path();
    const fs::path snapshots = abs.parent_path();
    const fs::path repo = snapshots.parent_path();
    if (snapshots.filename() == "snapshots" && repo.filename().string().find("--") != std::string::npos) {
      std::error_code ec;
      fs::path blobs = fs::canonical(repo / "blobs", ec);
      if (!ec) roots.push_back(blobs);
    }
  }
  return roots;
}

}  // namespace

std::vector<std::string> CheckpointIndex::shards() const {
  std::set<std::string> s;
  for (const auto& [name, shard] : weight_map) s.insert(shard);
  return {s.begin(), s.end()};
}

CheckpointIndex parse_checkpoint_index(std::string_view text, const std::string& file) {
  json j = io::parse_json_strict(text, file, 64, "checkpoint index", 2);
  if (!j.is_object())
    throw FormatError({file, "checkpoint index is not a JSON object", "{\"metadata\": {...}, \"weight_map\": {...}}",
                       json_kind(j), ""});
  CheckpointIndex idx;
  auto wm = j.find("weight_map");
  if (wm == j.end())
    throw FormatError({file, "checkpoint index has no \"weight_map\"", "an object tensor name -> shard file",
                       "no such key", "this is not a safetensors index (" + std::string(kCheckpointIndexFile) + ")"});
  if (!wm->is_object())
    throw FormatError({file, "\"weight_map\" is not an object", "an object tensor name -> shard file",
                       json_kind(*wm), ""});
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      throw FormatError({file + ": " + it.key(), "weight_map value is not a string", "a shard file name",
                         json_kind(it.value()), ""});
    const auto& shard = it.value().get_ref<const std::string&>();
    validate_shard_name(shard, it.key(), file);
    idx.weight_map.emplace(it.key(), shard);
  }
  auto md = j.find("metadata");
  if (md != j.end() && !md->is_null()) {
    if (!md->is_object())
      throw FormatError({file, "\"metadata\" is not an object", "an object such as {\"total_size\": N}",
                         json_kind(*md), ""});
    for (auto it = md->begin(); it != md->end(); ++it)
      idx.metadata.emplace(it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
  }
  return idx;
}

// ---- Checkpoint ---------------------------------------------------------------------------------

Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

Checkpoint Checkpoint::open(const fs::path& dir_or_file) {
  std::error_code ec;
  auto st = fs::status(dir_or_file, ec);
  if (ec || !fs::exists(st))
    throw IoError({dir_or_file.string(), "checkpoint not found", "a folder or a .safetensors file",
                   ec ? ec.message() : "nothing at this path", "check the path"});

  Checkpoint c;
  fs::path index_file;
  if (fs::is_directory(st)) {
    c.dir_ = dir_or_file;
    std::vector<fs::path> indexes, singles;
    for (const auto& e : fs::directory_iterator(dir_or_file, ec)) {
      const std::string n = e.path().filename().string();
      if (ends_with(n, ".safetensors.index.json")) indexes.push_back(e.path());
      else if (ends_with(n, ".safetensors") && e.is_regular_file()) singles.push_back(e.path());
    }
    if (ec) throw IoError({dir_or_file.string(), "cannot list folder", "", ec.message(), ""});
    std::sort(indexes.begin(), indexes.end());
    std::sort(singles.begin(), singles.end());
    if (fs::exists(dir_or_file / kCheckpointIndexFile)) index_file = dir_or_file / kCheckpointIndexFile;
    else if (indexes.size() == 1) index_file = indexes.front();
    else if (indexes.size() > 1)
      throw UsageError({dir_or_file.string(), "several safetensors index files and none is " + std::string(kCheckpointIndexFile),
                        "one index", fmt::format("{} index files", indexes.size()), "pass the index file to use"});
    else if (fs::exists(dir_or_file / kSingleCheckpointFile)) c.shard_paths_.push_back(dir_or_file / kSingleCheckpointFile);
    else if (singles.size() == 1) c.shard_paths_.push_back(singles.front());
    else if (singles.empty())
      throw IoError({dir_or_file.string(), "no safetensors weights in folder",
                     std::string(kSingleCheckpointFile) + " or " + kCheckpointIndexFile, "none", "is this a model folder?"});
    else
      throw UsageError({dir_or_file.string(), "several .safetensors files and no index",
                        std::string(kCheckpointIndexFile) + " or a single .safetensors file",
                        fmt::format("{} files, e.g. {}", singles.size(), singles.front().filename().string()),
                        "pass one file, or add an index"});
  } else {
    c.dir_ = dir_or_file.parent_path().empty() ? fs::path(".") : dir_or_file.parent_path();
    if (ends_with(dir_or_file.filename().string(), ".index.json")) index_file = dir_or_file;
    else c.shard_paths_.push_back(dir_or_file);
  }

  if (!index_file.empty()) {
    c.sharded_ = true;
    c.index_path_ = index_file;
    const std::string ifile = index_file.string();
    c.index_ = parse_checkpoint_index(read_text_file(index_file), ifile);
    if (c.index_.weight_map.empty())
      throw FormatError({ifile, "weight_map is empty", "at least one tensor", "none", "the index is incomplete"});
    fs::path dir_canon = fs::canonical(c.dir_, ec);
    if (ec) throw IoError({c.dir_.string(), "cannot resolve folder", "", ec.message(), ""});
    const auto roots = allowed_roots(dir_canon, c.dir_);
    for (const auto& shard : c.index_.shards()) {
      // The first tensor that names this shard, for messages.
      std::string tensor;
      for (const auto& [t, s] : c.index_.weight_map)
        if (s == shard) { tensor = t; break; }
      const fs::path p = c.dir_ / shard;
      if (!fs::exists(fs::symlink_status(p, ec)))
        throw IoError({ifile + ": " + tensor, "index names a missing shard", "file " + p.string(), "no such file",
                       "the download is incomplete, or the index is stale"});
      fs::path real = fs::canonical(p, ec);
      if (ec)
        throw IoError({ifile + ": " + tensor, "shard cannot be resolved (dangling symlink?)", "file " + p.string(),
                       ec.message(), "the download is incomplete"});
      if (std::none_of(roots.begin(), roots.end(), [&](const fs::path& r) { return inside(real, r); }))
        throw FormatError({ifile + ": " + tensor, "shard " + quote_name(shard) + " resolves outside the checkpoint folder",
                           "a file inside " + dir_canon.string(), real.string(),
                           "refusing to follow a symlink out of the checkpoint; copy the file in instead"});
      c.shard_paths_.push_back(p);
    }
  }

  for (const auto& p : c.shard_paths_) c.headers_.push_back(read_safetensors_header(p));
  c.files_.resize(c.shard_paths_.size());

  // Cross-check index and shard headers; collect every disagreement into one error.
  std::map<std::string, std::vector<std::size_t>> where;  // tensor -> shards holding it
  for (std::size_t i = 0; i < c.headers_.size(); ++i)
    for (const auto& t : c.headers_[i].tensors) where[t.name].push_back(i);
  std::vector<std::string> problems;
  auto shard_name = [&](std::size_t i) { return c.shard_paths_[i].filename().string(); };
  for (const auto& [name, shards] : where)
    if (shards.size() > 1)
      problems.push_back(fmt::format("{}: tensor is in two shards ({} and {})", name, shard_name(shards[0]),
                                     shard_name(shards[1])));
  if (c.sharded_) {
    for (const auto& entry : c.index_.weight_map) {
      const std::string& name = entry.first;
      const std::string& shard = entry.second;
      auto it = where.find(name);
      bool in_shard = it != where.end() && std::any_of(it->second.begin(), it->second.end(),
                                                       [&](std::size_t i) { return shard_name(i) == shard; });
      if (!in_shard)
        problems.push_back(fmt::format("{}: listed in weight_map for {} but missing from that shard{}", name, shard,
                                       it == where.end() ? "" : " (it is in " + shard_name(it->second[0]) + ")"));
    }
    for (const auto& [name, shards] : where)
      if (!c.index_.weight_map.count(name))
        problems.push_back(fmt::format("{}: in shard {} but not listed in weight_map", name, shard_name(shards[0])));
  }
  if (!problems.empty()) {
    const std::string loc = c.sharded_ ? c.index_path_.string() : c.shard_paths_.front().string();
    constexpr std::size_t kShow = 8;
    std::string list;
    for (std::size_t i = 0; i < problems.size() && i < kShow; ++i) list += (i ? "; " : "") + problems[i];
    if (problems.size() > kShow) list += fmt::format("; ... and {} more", problems.size() - kShow);
    throw FormatError({loc,
                       problems.size() == 1 ? "index and shards disagree"
                                            : fmt::format("index and shards disagree in {} places", problems.size()),
                       "every weight_map entry in its shard, every shard tensor in weight_map, each tensor in one shard",
                       list, "the checkpoint is incomplete or was assembled from different exports"});
  }

  for (std::size_t i = 0; i < c.headers_.size(); ++i)
    for (const auto& t : c.headers_[i].tensors) c.by_name_.emplace(t.name, TensorRef{i, &t});
  c.names_.reserve(c.by_name_.size());
  for (const auto& [name, ref] : c.by_name_) c.names_.push_back(name);
  return c;
}

TensorRef Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? TensorRef{} : it->second;
}

const TensorInfo& Checkpoint::info(std::string_view name) const {
  auto r = find(name);
  if (!r.info)
    throw FormatError({dir_.string() + ": " + std::string(name), "no such tensor in the checkpoint", "", "",
                       "list the tensors with `vlq inspect`"});
  return *r.info;
}

const fs::path& Checkpoint::shard_path_of(std::string_view name) const {
  info(name);
  return shard_paths_[find(name).shard];
}

const SafetensorsFile& Checkpoint::shard(std::size_t i) const {
  if (i >= shard_paths_.size())
    throw UsageError({dir_.string(), "shard index out of range", fmt::format("< {}", shard_paths_.size()),
                      std::to_string(i), ""});
  std::lock_guard lock(*files_mu_);
  if (!files_[i]) {
    auto f = std::make_unique<SafetensorsFile>(SafetensorsFile::open(shard_paths_[i]));
    if (!(f->header() == headers_[i]))
      throw FormatError({shard_paths_[i].string(), "shard changed since the checkpoint was opened",
                         "the header read at open", "a different header", "do not modify checkpoints while vlq reads them"});
    files_[i] = std::move(f);
  }
  return *files_[i];
}

std::span<const std::byte> Checkpoint::data(std::string_view name) const {
  const TensorInfo& t = info(name);
  return shard(find(name).shard).data(t);
}

}  // namespace vlq::io
