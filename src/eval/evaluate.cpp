// `vlq eval` library: scores quantized models against a reference (see vlq/eval/evaluate.h).
#include "vlq/eval/evaluate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "vlq/core/error.h"
#include "vlq/engine/generate.h"
#include "vlq/io/safetensors.h"

namespace vlq::eval {

EvalModel EvalModel::load(const std::filesystem::path& dir, const std::string& label, const engine::BundleOptions& options,
                          engine::Device device, int tensor_parallel) {
  EvalModel m{label.empty() ? dir.filename().string() : label, dir, engine::ModelBundle::load(dir, options), 0, "", nullptr};
  if (device != engine::Device::kCpu || tensor_parallel != 1)
    m.runner = engine::DeviceModel::create(m.bundle.model(), device, tensor_parallel);
  const io::Checkpoint ck = io::Checkpoint::open(dir);
  for (const auto& h : ck.shard_headers())
    for (const auto& t : h.tensors) m.tensor_bytes += t.nbytes();
  const auto& r = m.model().weights().report;
  if (r.fp8_linears == 0) {
    m.quantization = m.model().config().text.dtype.empty() ? "dense" : m.model().config().text.dtype;
  } else {
    int vis = 0;
    for (const auto& b : m.model().weights().vision.blocks)
      vis += b.qkv.kind != ops::LinearKind::kDense;
    m.quantization = fmt::format("FP8 {}{}", vis ? "LM+vision" : "LM", m.model().fp8_kv_cache() ? " + FP8 KV" : "");
  }
  return m;
}

namespace {

struct TaskInputs {
  engine::Prompt prompt;                     // question with generation prompt
  std::vector<std::int32_t> forced;  // prompt + answer + <|im_end|> (without the trailing newline)
  std::vector<std::int32_t> targets; // answer tokens + <|im_end|>
  std::vector<image::RgbImage> images;
};

TaskInputs task_inputs(const engine::ModelBundle& b, const EvalItem& item) {
  TaskInputs t;
  t.images = b.load_images(item.chat);
  t.prompt = b.build_prompt(item.chat.messages, t.images, true);
  nlohmann::ordered_json conv = item.chat.messages;
  conv.push_back({{"role", "assistant"}, {"content", item.answer}});
  const engine::Prompt full = b.build_prompt(conv, t.images, false);
  const std::size_t P = t.prompt.ids.size();
  const auto im_end = b.tokenizer().token_to_id("<|im_end|>");
  std::size_t end = full.ids.size();
  // cut after the assistant's <|im_end|>
  for (std::size_t i = P; i < full.ids.size(); ++i)
    if (im_end && full.ids[i] == *im_end) {
      end = i + 1;
      break;
    }
  if (full.ids.size() < P || !std::equal(t.prompt.ids.begin(), t.prompt.ids.end(), full.ids.begin()) || end <= P)
    throw UsageError({item.source, "the chat template does not render the answer after the generation prompt",
                      "prompt + answer", "a different prefix", "use a Qwen-style chat template"});
  t.forced.assign(full.ids.begin(), full.ids.begin() + static_cast<std::ptrdiff_t>(end) - 1);
  t.targets.assign(full.ids.begin() + static_cast<std::ptrdiff_t>(P), full.ids.begin() + static_cast<std::ptrdiff_t>(end));
  return t;
}

// Logits of the rows that predict `targets` (the last targets.size() positions of `ids`).
ops::Matrix forced_logits(const model::Qwen2_5_VL& m, const std::vector<std::int32_t>& ids, const engine::Prompt& prompt,
                          std::int64_t k) {
  model::Session s = m.new_session(static_cast<std::int64_t>(ids.size()));
  return m.prefill(s, ids, prompt.images.n_patches ? &prompt.images : nullptr, k);
}
// The same on the model's device (EvalModel::runner), or the CPU path when it has none.
ops::Matrix forced_logits(const EvalModel& m, const std::vector<std::int32_t>& ids, const engine::Prompt& prompt,
                          std::int64_t k) {
  if (!m.runner) return forced_logits(m.model(), ids, prompt, k);
  m.runner->begin(static_cast<std::int64_t>(ids.size()));
  return m.runner->prefill(ids, prompt.images.n_patches ? &prompt.images : nullptr, k);
}

std::vector<std::int32_t> text_ids(const engine::ModelBundle& b, const std::string& text, std::int64_t seq_len) {
  engine::Prompt p = b.build_raw(text);
  if (static_cast<std::int64_t>(p.ids.size()) > seq_len) p.ids.resize(static_cast<std::size_t>(seq_len));
  return p.ids;
}

void add_rows(LogitMetrics& m, const ops::Matrix& ref, const ops::Matrix& q, const std::vector<std::int32_t>& targets) {
  for (std::int64_t r = 0; r < ref.rows; ++r)
    m.add(std::span<const float>(ref.row(r), ref.cols), std::span<const float>(q.row(r), q.cols),
          r < static_cast<std::int64_t>(targets.size()) ? std::optional<std::int64_t>(targets[r]) : std::nullopt);
}

}  // namespace

nlohmann::ordered_json ModelScore::to_json() const {
  nlohmann::ordered_json j;
  j["label"] = label;
  j["quantization"] = quantization;
  j["reference"] = is_reference;
  j["tensor_bytes"] = tensor_bytes;
  j["task_logits"] = task_logits.to_json();
  j["text_logits"] = text_logits.to_json();
  j["accuracy"] = accuracy.to_json();
  j["generation_exact_match"] = gen_total ? static_cast<double>(gen_exact) / gen_total : 0.0;
  j["generations"] = gen_total;
  return j;
}

std::vector<ModelScore> evaluate(const EvalModel& reference, const std::vector<const EvalModel*>& models,
                                 const std::vector<EvalItem>& items, const std::vector<std::string>& texts,
                                 const EvalOptions& o) {
  const bool do_tasks = o.tasks && !items.empty(), do_text = o.text && !texts.empty();
  if (!do_tasks && !do_text)
    throw UsageError({"vlq eval", "nothing to evaluate", "task items and/or text samples", "none",
                      "pass --tasks FILE.jsonl and/or --text FILE"});
  for (const EvalModel* m : models)
    if (m->model().config().text.vocab_size != reference.model().config().text.vocab_size)
      throw UsageError({m->dir.string(), "model and reference have different vocabularies",
                        std::to_string(reference.model().config().text.vocab_size),
                        std::to_string(m->model().config().text.vocab_size), "compare a quantized model with its own base"});
  std::vector<ModelScore> scores(models.size() + 1);
  scores[0].label = reference.label;
  scores[0].quantization = reference.quantization;
  scores[0].tensor_bytes = reference.tensor_bytes;
  scores[0].is_reference = true;
  for (std::size_t i = 0; i < models.size(); ++i) {
    scores[i + 1].label = models[i]->label;
    scores[i + 1].quantization = models[i]->quantization;
    scores[i + 1].tensor_bytes = models[i]->tensor_bytes;
  }
  const std::size_t total = (do_tasks ? items.size() : 0) + (do_text ? texts.size() : 0);
  std::size_t done = 0;
  const std::vector<std::int64_t>& eos = reference.bundle.generation_defaults().eos_ids;
  auto gen = [&](const EvalModel& m, const engine::Prompt& p) {
    engine::GenerateOptions go;
    go.max_new_tokens = o.max_new_tokens;
    go.eos_ids = eos;
    return m.runner ? engine::generate(*m.runner, p, go).output_ids : engine::generate(m.model(), p, go).output_ids;
  };
  auto text_of = [&](const EvalModel& m, const std::vector<std::int32_t>& ids) {
    std::vector<std::int32_t> v = ids;
    while (!v.empty() && std::find(eos.begin(), eos.end(), v.back()) != eos.end()) v.pop_back();
    return m.bundle.tokenizer().decode(v, true);
  };
  if (do_tasks) {
    for (const EvalItem& item : items) {
      const TaskInputs t = task_inputs(reference.bundle, item);
      const auto K = static_cast<std::int64_t>(t.targets.size());
      const ops::Matrix ref = forced_logits(reference, t.forced, t.prompt, K);
      add_rows(scores[0].task_logits, ref, ref, t.targets);
      std::vector<std::int32_t> ref_gen;
      if (o.generation) {
        ref_gen = gen(reference, t.prompt);
        scores[0].accuracy.add(item.task, answer_matches(text_of(reference, ref_gen), item.answer));
        scores[0].gen_exact += 1;
        scores[0].gen_total += 1;
      }
      for (std::size_t i = 0; i < models.size(); ++i) {
        const ops::Matrix q = forced_logits(*models[i], t.forced, t.prompt, K);
        add_rows(scores[i + 1].task_logits, ref, q, t.targets);
        if (o.generation) {
          const auto g = gen(*models[i], t.prompt);
          scores[i + 1].accuracy.add(item.task, answer_matches(text_of(*models[i], g), item.answer));
          scores[i + 1].gen_exact += g == ref_gen;
          scores[i + 1].gen_total += 1;
        }
      }
      if (o.progress) o.progress(++done, total);
    }
  }
  if (do_text) {
    for (const std::string& text : texts) {
      const std::vector<std::int32_t> ids = text_ids(reference.bundle, text, o.seq_len);
      if (ids.size() < 2) continue;
      const std::vector<std::int32_t> targets(ids.begin() + 1, ids.end());
      const std::vector<std::int32_t> in(ids.begin(), ids.end() - 1);
      const engine::Prompt none;
      const auto K = static_cast<std::int64_t>(in.size());
      const ops::Matrix ref = forced_logits(reference, in, none, K);
      add_rows(scores[0].text_logits, ref, ref, targets);
      for (std::size_t i = 0; i < models.size(); ++i)
        add_rows(scores[i + 1].text_logits, ref, forced_logits(*models[i], in, none, K), targets);
      if (o.progress) o.progress(++done, total);
    }
  }
  return scores;
}

namespace {

struct Group {
  std::string name;
  std::vector<std::pair<ops::LinearWeights*, ops::LinearWeights*>> linears;  // (reference copy, quantized)
  bool kv = false;
};

std::vector<Group> groups_of(model::Qwen2_5_VLWeights& r, model::Qwen2_5_VLWeights& q) {
  std::vector<Group> gs;
  auto fp8 = [](const ops::LinearWeights& l) { return l.kind != ops::LinearKind::kDense; };
  auto add = [&](std::string name, std::vector<std::pair<ops::LinearWeights*, ops::LinearWeights*>> ls) {
    Group g{std::move(name), {}, false};
    for (auto& p : ls)
      if (fp8(*p.second)) g.linears.push_back(p);
    if (!g.linears.empty()) gs.push_back(std::move(g));
  };
  add("vision.patch_embed", {{&r.vision.patch_embed, &q.vision.patch_embed}});
  for (std::size_t i = 0; i < q.vision.blocks.size(); ++i) {
    auto &a = r.vision.blocks[i], &b = q.vision.blocks[i];
    add("vision.blocks." + std::to_string(i),
        {{&a.qkv, &b.qkv}, {&a.proj, &b.proj}, {&a.gate, &b.gate}, {&a.up, &b.up}, {&a.down, &b.down}});
  }
  add("vision.merger", {{&r.vision.merger0, &q.vision.merger0}, {&r.vision.merger2, &q.vision.merger2}});
  for (std::size_t l = 0; l < q.lm.layers.size(); ++l) {
    auto &a = r.lm.layers[l], &b = q.lm.layers[l];
    add("lm.layers." + std::to_string(l) + ".attn", {{&a.q, &b.q}, {&a.k, &b.k}, {&a.v, &b.v}, {&a.o, &b.o}});
    add("lm.layers." + std::to_string(l) + ".mlp", {{&a.gate, &b.gate}, {&a.up, &b.up}, {&a.down, &b.down}});
  }
  add("lm_head", {{&r.lm.lm_head, &q.lm.lm_head}});
  return gs;
}

}  // namespace

struct GroupProbe::Impl {
  model::Qwen2_5_VL probe;            // the reference, groups swapped in and out
  model::Qwen2_5_VLWeights qw;        // the quantized weights (swapped with probe's)
  const model::Qwen2_5_VL* quantized;
  std::vector<Group> groups;
  std::vector<std::string> names;
  struct Input {
    std::vector<std::int32_t> ids, targets;
    engine::Prompt prompt;
    ops::Matrix ref;
  };
  std::vector<Input> inputs;
  Impl(const model::Qwen2_5_VL& r, const model::Qwen2_5_VL& q) : probe(r), qw(q.weights()), quantized(&q) {}
};

GroupProbe::GroupProbe(const EvalModel& reference, const EvalModel& quantized, const std::vector<EvalItem>& items,
                       const std::vector<std::string>& texts, const EvalOptions& o)
    : impl_(std::make_unique<Impl>(reference.model(), quantized.model())) {
  Impl& I = *impl_;
  I.groups = groups_of(I.probe.mutable_weights(), I.qw);
  if (quantized.model().fp8_kv_cache()) I.groups.push_back(Group{"lm.kv_cache", {}, true});
  for (const Group& g : I.groups) I.names.push_back(g.name);
  if (o.tasks)
    for (const EvalItem& item : items) {
      TaskInputs t = task_inputs(reference.bundle, item);
      Impl::Input in{t.forced, t.targets, std::move(t.prompt), {}};
      in.ref = forced_logits(reference.model(), in.ids, in.prompt, static_cast<std::int64_t>(in.targets.size()));
      I.inputs.push_back(std::move(in));
    }
  if (o.text)
    for (const std::string& text : texts) {
      const auto ids = text_ids(reference.bundle, text, o.seq_len);
      if (ids.size() < 2) continue;
      Impl::Input in{std::vector<std::int32_t>(ids.begin(), ids.end() - 1), std::vector<std::int32_t>(ids.begin() + 1, ids.end()),
                     engine::Prompt{}, {}};
      in.ref = forced_logits(reference.model(), in.ids, in.prompt, static_cast<std::int64_t>(in.ids.size()));
      I.inputs.push_back(std::move(in));
    }
}

GroupProbe::~GroupProbe() = default;
const std::vector<std::string>& GroupProbe::groups() const { return impl_->names; }
std::size_t GroupProbe::inputs() const { return impl_->inputs.size(); }
int GroupProbe::fp8_linears(const std::string& group) const {
  for (const Group& g : impl_->groups)
    if (g.name == group) return static_cast<int>(g.linears.size());
  return 0;
}

LogitMetrics GroupProbe::score(const std::set<std::string>& fp8_groups) {
  Impl& I = *impl_;
  for (const auto& n : fp8_groups)
    if (std::find(I.names.begin(), I.names.end(), n) == I.names.end())
      throw UsageError({n, "not an FP8 module group of the quantized model", "one of its groups", n, ""});
  bool kv = false;
  auto swap_in = [&] {
    for (Group& g : I.groups)
      if (fp8_groups.count(g.name)) {
        for (auto& p : g.linears) std::swap(*p.first, *p.second);
        kv |= g.kv;
      }
  };
  swap_in();
  auto& layers = I.probe.mutable_weights().lm.layers;
  if (kv) {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      layers[l].k_scale = I.quantized->weights().lm.layers[l].k_scale;
      layers[l].v_scale = I.quantized->weights().lm.layers[l].v_scale;
    }
    I.probe.set_kv_cache_mode(model::KvCacheMode::kFp8);
  }
  LogitMetrics m;
  try {
    for (const Impl::Input& in : I.inputs)
      add_rows(m, in.ref, forced_logits(I.probe, in.ids, in.prompt, in.ref.rows), in.targets);
  } catch (...) {
    swap_in();
    if (kv) I.probe.set_kv_cache_mode(model::KvCacheMode::kF32);
    throw;
  }
  swap_in();  // swapping twice restores the reference
  if (kv) I.probe.set_kv_cache_mode(model::KvCacheMode::kF32);
  return m;
}

std::vector<GroupScore> evaluate_per_layer(const EvalModel& reference, const EvalModel& quantized,
                                           const std::vector<EvalItem>& items, const std::vector<std::string>& texts,
                                           const EvalOptions& o) {
  GroupProbe probe(reference, quantized, items, texts, o);
  std::vector<GroupScore> out;
  std::size_t done = 0;
  for (const std::string& g : probe.groups()) {
    out.push_back(GroupScore{g, probe.fp8_linears(g), probe.score({g})});
    if (o.progress) o.progress(++done, probe.groups().size());
  }
  return out;
}

std::string format_scores(const std::vector<ModelScore>& scores) {
  std::string s = fmt::format("{:<30} {:<24} {:>8} {:>9} {:>9} {:>7} {:>8} {:>9} {:>8} {:>8}\n", "model", "weights",
                              "size MB", "KL mean", "KL max", "top-1", "ppl ans", "ppl text", "gen=ref", "task acc");
  for (const ModelScore& m : scores) {
    LogitMetrics all = m.task_logits;
    all.merge(m.text_logits);
    const auto acc = m.accuracy.overall();
    auto ppl = [](const LogitMetrics& l) { return l.nll_tokens ? fmt::format("{:.3f}", l.ppl_quant()) : std::string("-"); };
    s += fmt::format("{:<30} {:<24} {:>8.2f} {:>9.2e} {:>9.2e} {:>6.1f}% {:>8} {:>9} {:>8} {:>8}\n", m.label, m.quantization,
                     m.tensor_bytes / 1e6, all.tokens ? all.mean_kl() : 0.0, all.kl_max,
                     all.tokens ? 100.0 * all.top1_agreement() : 0.0, ppl(m.task_logits), ppl(m.text_logits),
                     m.gen_total ? fmt::format("{:.1f}%", 100.0 * m.gen_exact / m.gen_total) : "-",
                     acc.total ? fmt::format("{:.1f}%", 100.0 * acc.accuracy()) : "-");
  }
  return s;
}

std::string format_group_scores(const std::vector<GroupScore>& groups) {
  std::string s = fmt::format("{:<24} {:>6} {:>10} {:>10} {:>7}\n", "group (only this in FP8)", "FP8", "KL mean", "KL max",
                              "top-1");
  for (const GroupScore& g : groups)
    s += fmt::format("{:<24} {:>6} {:>10.2e} {:>10.2e} {:>6.1f}%\n", g.group, g.group == "lm.kv_cache" ? "KV" : std::to_string(g.fp8_linears),
                     g.logits.mean_kl(), g.logits.kl_max, 100.0 * g.logits.top1_agreement());
  return s;
}

}  // namespace vlq::eval
