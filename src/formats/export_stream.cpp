// Plan → pre-check → stream → check → rename, shared by convert and quantize's export (see
// include/vlq/formats/export_stream.h).
#include "vlq/formats/export_stream.h"

#include <cstring>
#include <map>

#include "vlq/core/numerics.h"
#include "vlq/formats/quant_layout.h"
#include "vlq/io/safetensors.h"

namespace vlq::formats {

namespace fs = std::filesystem;

namespace {

// The value of a 1-element float scale tensor as written (F64/F32/F16/BF16); nullopt for anything else.
std::optional<double> scalar_of(const io::SafetensorsFile& f, const io::TensorInfo& t) {
  if (t.numel() != 1 || !is_float(t.dtype) || is_fp8(t.dtype) || t.dtype == DType::F8_E8M0) return std::nullopt;
  auto b = f.data(t);
  if (t.dtype == DType::F64) {
    double v;
    std::memcpy(&v, b.data(), 8);
    return v;
  }
  float v = 0;
  decode_to_f32(t.dtype, b, std::span<float>(&v, 1));
  return v;
}

}  // namespace

bool verdict_fails(Verdict v) noexcept { return v == Verdict::kFails || v == Verdict::kInvalid; }

namespace {
bool wrong_output_code(const std::string& code) {
  return code == "fp8_without_scales" || code == "vision_fp8_without_scales";
}
}  // namespace

bool predicts_wrong_output(const Report& r) noexcept {
  for (const auto& f : r.findings)
    if (wrong_output_code(f.code)) return true;
  return false;
}

std::string failure_summary(const Report& r, std::size_t max_chars) {
  std::string s;
  for (const auto& f : r.findings) {
    if (f.severity != Severity::kError && f.severity != Severity::kInvalid && !wrong_output_code(f.code)) continue;
    if (!s.empty()) s += "; ";
    s += f.code + (f.subject.empty() ? "" : " (" + f.subject + ")") + ": " + f.message;
    if (!f.runtime_error.empty()) s += " [" + f.runtime_error + "]";
    if (s.size() > max_chars) break;
  }
  return s;
}

CheckpointStream::CheckpointStream(StreamPlan plan) : plan_(std::move(plan)) {}
CheckpointStream::~CheckpointStream() = default;

Report CheckpointStream::check_planned(const RuntimeProfile& profile) const {
  std::vector<TensorMeta> metas;
  std::map<std::string, double> scalars;
  for (const auto& t : plan_.tensors) {
    metas.push_back({t.spec.name, t.spec.dtype, t.spec.shape, t.spec.nbytes()});
    if (t.scalar) scalars[t.spec.name] = *t.scalar;
  }
  return check_view(CheckpointView::from_memory(std::move(metas), plan_.config, plan_.hf_quant_config, std::move(scalars)),
                    profile);
}

void CheckpointStream::write(const std::function<void(std::size_t, io::CheckpointWriter&)>& produce) {
  std::vector<io::TensorSpec> specs;
  specs.reserve(plan_.tensors.size());
  for (const auto& t : plan_.tensors) specs.push_back(t.spec);
  io::WriterOptions wo;
  wo.max_shard_bytes = plan_.max_shard_bytes;
  wo.metadata = {{"format", "pt"}};
  wo.overwrite = plan_.force;
  wo.fsync = plan_.fsync;
  wo.inputs = {fs::absolute(plan_.input_dir)};
  writer_ = std::make_unique<io::CheckpointWriter>(plan_.out, std::move(specs), wo);
  for (std::size_t i = 0; i < plan_.tensors.size(); ++i) produce(i, *writer_);
  std::set<std::string> skip = plan_.skip_files;
  skip.insert(io::kCheckpointIndexFile);
  for (const auto& [name, contents] : plan_.files) {
    writer_->write_file(name, contents);
    skip.insert(name);
  }
  for (const auto& e : fs::directory_iterator(plan_.input_dir)) {
    if (!e.is_regular_file()) continue;
    if (skip.count(e.path().filename().string()) || e.path().extension() == ".safetensors") continue;
    writer_->copy_file(e.path());
  }
}

Report CheckpointStream::check_written(const RuntimeProfile& profile) const {
  std::vector<TensorMeta> metas;
  std::map<std::string, double> scalars;
  for (const auto& sp : writer_->shards()) {
    io::SafetensorsFile f = io::SafetensorsFile::open(writer_->pending_dir() / sp.file_name);
    for (const auto& t : f.tensors()) {
      metas.push_back({t.name, t.dtype, t.shape, t.nbytes()});
      if (auto v = scalar_of(f, t)) scalars[t.name] = *v;
    }
  }
  Report r = check_view(CheckpointView::from_memory(std::move(metas), plan_.config, plan_.hf_quant_config, std::move(scalars)),
                        profile);
  r.checkpoint = plan_.out.string();
  return r;
}

std::uint64_t CheckpointStream::commit() {
  const std::uint64_t bytes = writer_->total_size();
  writer_->commit();
  return bytes;
}

}  // namespace vlq::formats
