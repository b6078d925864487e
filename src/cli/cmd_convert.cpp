// `vlq convert DIR OUT --for T [--vision keep|bf16] [--force] [--json]`: rewrites an FP8 checkpoint so
// that runtime T loads it correctly; the output is checked against T before it is renamed into place.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <string>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/common_options.h"
#include "vlq/core/error.h"
#include "vlq/formats/convert.h"

namespace {

struct ConvertArgs {
  std::string in, out, target, vision = "default";
  bool force = false, json = false, quiet = false;
  double shard_gb = 5.0;
};

int run_convert(const ConvertArgs& a) {
  namespace F = vlq::formats;
  F::ConvertOptions o;
  o.target = a.target;
  o.force = a.force;
  if (!(a.shard_gb >= 0 && a.shard_gb <= 1e9))  // 1e9 GB = 1e18 bytes: still a uint64
    throw vlq::UsageError({"--shard-gb", "value out of range", "0 <= GB <= 1e9 (0 = one file; default 5)",
                           fmt::format("{}", a.shard_gb), "e.g. --shard-gb 5"});
  // A positive size below one byte still means shards (of one tensor each), not 0 = no limit.
  o.max_shard_bytes = a.shard_gb > 0 ? std::max<std::uint64_t>(1, static_cast<std::uint64_t>(a.shard_gb * 1e9)) : 0;
  if (a.vision == "keep") o.vision = F::VisionMode::kKeep;
  else if (a.vision == "bf16") o.vision = F::VisionMode::kBf16;
  else if (a.vision == "default") o.vision = F::VisionMode::kDefault;
  else
    throw vlq::UsageError({"--vision", "unknown vision mode", "keep or bf16", a.vision, "vlq convert DIR OUT --for T --vision bf16"});
  vlq::cli::require_profile("--for", a.target);  // an unknown --for is a usage error before anything is read
  // An input whose tensors do not match its config.json converts into an output that does not build either:
  // refused (exit 3) before anything is written.
  if (std::filesystem::is_directory(a.in))
    if (const std::string problems = vlq::cli::model_audit(a.in); !problems.empty())
      throw vlq::FormatError({a.in, "the input checkpoint does not build as its config.json describes it", "a consistent checkpoint",
                              problems, "run `vlq check " + a.in + " --target vlq` for the list; nothing was written"});
  F::ConvertResult r = F::convert_checkpoint(a.in, a.out, o);
  if (a.json) {
    nlohmann::json j = {{"schema", "vlq.convert/1"}, {"input", a.in}, {"output", r.out.string()}, {"target", a.target},
                        {"actions", r.actions}, {"tensors_in", r.tensors_in}, {"tensors_out", r.tensors_out},
                        {"bytes_out", r.bytes_out}, {"check", F::report_to_json(r.check)}};
    std::cout << j.dump(2) << "\n";
  } else if (!a.quiet) {
    std::cout << "vlq convert: " << a.in << " -> " << r.out.string() << " for " << a.target << "\n";
    for (const auto& s : r.actions) std::cout << "  " << s << "\n";
    std::cout << "  " << r.tensors_in << " tensors in, " << r.tensors_out << " out, " << r.bytes_out << " bytes\n";
    std::cout << "  check --target " << a.target << ": " << F::verdict_name(r.check.verdict) << "\n";
  }
  return 0;
}

}  // namespace

VLQ_COMMAND("convert", ([](CLI::App& app) -> std::function<int()> {
  auto a = std::make_shared<ConvertArgs>();
  app.description(
      "Rewrite an FP8 checkpoint so that runtime T loads it correctly: drop vision K/V scales, rename KV scales "
      "to T's spelling, optionally dequantize the vision tower to BF16 and exclude it the way T reads exclusions, "
      "write both config files consistently. The input is never modified; the output is checked with "
      "`vlq check --target T` before it is renamed into place.");
  app.add_option("input", a->in, "checkpoint folder to convert")->required();
  app.add_option("output", a->out, "output folder (must not exist unless --force)")->required();
  app.add_option("--for,-t", a->target, "target runtime profile (vlq check --list-targets)")->required();
  app.add_option("--vision", a->vision, "keep: leave the vision tower as is; bf16: dequantize it and exclude it "
                 "(default: the target's choice)");
  app.add_flag("--force", a->force, "replace an existing output folder");
  vlq::cli::add_number_option(app, "--shard-gb", a->shard_gb, "maximum output shard size in GB (0 = one file; default 5)");
  app.add_flag("--json", a->json, "print a vlq.convert/1 JSON summary");
  app.add_flag("--quiet,-q", a->quiet, "print nothing on success");
  return [a] { return run_convert(*a); };
}));
