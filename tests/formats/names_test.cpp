// Tests for the name tables: naming generations, prefix maps, fusion, KV-scale spellings (F04, F10),
// and the order and idempotence of the rename pipeline (F01/F02).
#include <gtest/gtest.h>

#include <algorithm>

#include "vlq/formats/names.h"

using namespace vlq::formats;

TEST(Names, DetectsBothNamingGenerations) {
  EXPECT_EQ(detect_naming({"model.layers.0.self_attn.q_proj.weight", "visual.blocks.0.attn.qkv.weight",
                           "lm_head.weight"}),
            NamingGeneration::kLegacy);
  EXPECT_EQ(detect_naming({"model.language_model.layers.0.self_attn.q_proj.weight",
                           "model.visual.blocks.0.attn.qkv.weight", "lm_head.weight"}),
            NamingGeneration::kTransformers452);
  EXPECT_EQ(detect_naming({"model.layers.0.x", "model.visual.blocks.0.y"}), NamingGeneration::kMixed);
  EXPECT_EQ(detect_naming({"lm_head.weight"}), NamingGeneration::kUnknown);
}

// F10: both layouts map to identical canonical names.
TEST(Names, F10BothGenerationsMapToTheSameCanonicalNames) {
  const std::pair<const char*, const char*> pairs[] = {
      {"model.layers.0.self_attn.q_proj.weight", "model.language_model.layers.0.self_attn.q_proj.weight"},
      {"visual.blocks.0.attn.qkv.weight", "model.visual.blocks.0.attn.qkv.weight"},
      {"model.embed_tokens.weight", "model.language_model.embed_tokens.weight"},
      {"model.norm.weight", "model.language_model.norm.weight"},
      {"lm_head.weight", "lm_head.weight"},
  };
  for (auto [legacy, v452] : pairs) {
    EXPECT_EQ(canonical_name(legacy), v452) << legacy;
    EXPECT_EQ(canonical_name(v452), v452) << v452;
    EXPECT_EQ(qwen_vl_canonical_to_legacy().apply(v452), legacy) << v452;
  }
}

TEST(Names, VllmMapperMatchesHfToVllmMapper) {
  const auto& m = vllm_qwen2_5_vl_mapper();
  EXPECT_EQ(m.apply("model.language_model.layers.0.mlp.up_proj.weight"),
            "language_model.model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(m.apply("model.visual.blocks.0.attn.k_proj.k_scale"), "visual.blocks.0.attn.k_proj.k_scale");
  EXPECT_EQ(m.apply("visual.blocks.0.attn.qkv.weight"), "visual.blocks.0.attn.qkv.weight");
  EXPECT_EQ(m.apply("lm_head.weight"), "language_model.lm_head.weight");
  EXPECT_EQ(m.apply("model.layers.3.self_attn.o_proj.weight"), "language_model.model.layers.3.self_attn.o_proj.weight");
  // `model.visual` without the trailing dot falls through to the `model.` rule (vLLM issue #28072).
  EXPECT_EQ(m.apply("model.visual"), "language_model.model.visual");
  // Idempotent on its own output.
  for (const char* n : {"language_model.model.layers.0.x", "visual.merger.mlp.0", "language_model.lm_head"})
    EXPECT_EQ(m.apply(m.apply(n)), m.apply(n));
}

TEST(Names, FusionTableWithShardIds) {
  const auto& lm = qwen2_lm_fusion();
  auto r = lm.apply("model.layers.0.self_attn.k_proj.weight");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "model.layers.0.self_attn.qkv_proj.weight");
  EXPECT_EQ(r->rule->shard_id, "k");
  r = lm.apply("model.layers.0.mlp.up_proj.weight_scale");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "model.layers.0.mlp.gate_up_proj.weight_scale");
  EXPECT_EQ(r->rule->shard_id, "1");
  EXPECT_FALSE(lm.apply("model.layers.0.self_attn.o_proj.weight"));
  EXPECT_FALSE(lm.apply("model.layers.0.self_attn.qkv_proj.weight"));  // already fused: idempotent
  EXPECT_EQ(lm.shards_of("x.self_attn.qkv_proj"),
            (std::vector<std::string>{"x.self_attn.q_proj", "x.self_attn.k_proj", "x.self_attn.v_proj"}));
  EXPECT_EQ(lm.shards_of("x.mlp.gate_up_proj"), (std::vector<std::string>{"x.mlp.gate_proj", "x.mlp.up_proj"}));
  EXPECT_TRUE(lm.shards_of("x.mlp.down_proj").empty());

  const auto& vis = vllm_qwen2_5_vision_fusion();
  r = vis.apply("blocks.0.mlp.gate_proj.weight");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "blocks.0.mlp.gate_up_proj.weight");
  EXPECT_EQ(r->rule->shard_id, "0");
  // "attn.k." needs a dot right after k: the orphan ModelOpt vision KV scale matches no rule (§2.6 step 4).
  EXPECT_FALSE(vis.apply("blocks.0.attn.k_proj.k_scale"));
  EXPECT_FALSE(vis.apply("blocks.0.attn.qkv.weight"));
}

// F04: every spelling of the zoo maps to the canonical per-attention K/V scale; kv_scale fills both.
TEST(Names, F04KvScaleZooMapsToCanonical) {
  const std::string A = "model.language_model.layers.0.self_attn";
  const std::pair<std::string, KvKind> cases[] = {
      {A + ".k_proj.k_scale", KvKind::kK},       {A + ".v_proj.v_scale", KvKind::kV},
      {A + ".k_proj.output_scale", KvKind::kK},  {A + ".v_proj.output_scale", KvKind::kV},
      {A + ".k_scale", KvKind::kK},              {A + ".v_scale", KvKind::kV},
      {A + ".qkv_proj.k_scale", KvKind::kK},     {A + ".qkv_proj.v_scale", KvKind::kV},
      {A + ".attn.k_scale", KvKind::kK},         {A + ".attn.v_scale", KvKind::kV},
  };
  for (const auto& [name, kind] : cases) {
    auto p = parse_kv_scale_name(name);
    ASSERT_TRUE(p) << name;
    EXPECT_EQ(p->attention, A) << name;
    EXPECT_EQ(p->kind, kind) << name;
    EXPECT_EQ(canonical_name(name), A + (kind == KvKind::kK ? ".k_scale" : ".v_scale")) << name;
  }
  auto kv = parse_kv_scale_name(A + ".kv_scale");
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->kind, KvKind::kKV);
  EXPECT_EQ(kv->attention, A);
  // Legacy names go through the prefix map first.
  EXPECT_EQ(canonical_name("model.layers.0.self_attn.k_proj.k_scale"), A + ".k_scale");
  // The ViT attention is itself called "attn": its scales parse with A = "...blocks.0.attn".
  auto vit = parse_kv_scale_name("model.visual.blocks.0.attn.k_proj.k_scale");
  ASSERT_TRUE(vit);
  EXPECT_EQ(vit->attention, "model.visual.blocks.0.attn");
  auto vit2 = parse_kv_scale_name("visual.blocks.0.attn.k_scale");
  ASSERT_TRUE(vit2);
  EXPECT_EQ(vit2->attention, "visual.blocks.0.attn");
  // Not KV scales.
  EXPECT_FALSE(parse_kv_scale_name(A + ".k_proj.weight_scale"));
  EXPECT_FALSE(parse_kv_scale_name(A + ".k_proj.input_scale"));
  EXPECT_FALSE(parse_kv_scale_name("k_scale"));
}

TEST(Names, KvSpellingsRoundTrip) {
  const std::string A = "a.self_attn";
  for (KvStyle s : {KvStyle::kCanonical, KvStyle::kModelOpt, KvStyle::kFusedQkv, KvStyle::kOutputScale,
                    KvStyle::kRuntimeAttn}) {
    for (KvKind k : {KvKind::kK, KvKind::kV}) {
      std::string n = kv_scale_name(A, k, s);
      auto p = parse_kv_scale_name(n);
      ASSERT_TRUE(p) << n;
      EXPECT_EQ(p->attention, A) << n;
      EXPECT_EQ(p->kind, k) << n;
      EXPECT_EQ(p->spelling->style, s) << n;
    }
  }
  EXPECT_EQ(kv_scale_name(A, KvKind::kK, KvStyle::kModelOpt), "a.self_attn.k_proj.k_scale");
  EXPECT_EQ(kv_scale_name(A, KvKind::kV, KvStyle::kRuntimeAttn), "a.self_attn.attn.v_scale");
}

// Pipeline order prefix → KV → stacking: a ModelOpt KV scale must not be stacked into qkv_proj first.
TEST(Names, PipelineOrderAndIdempotence) {
  NamePipeline vllm{&vllm_qwen2_5_vl_mapper(), KvStyle::kRuntimeAttn, {&qwen2_lm_fusion()}};
  auto n = normalize_name("model.layers.0.self_attn.k_proj.k_scale", vllm);
  EXPECT_EQ(n.name, "language_model.model.layers.0.self_attn.attn.k_scale");
  EXPECT_EQ(n.kv, KvKind::kK);
  EXPECT_FALSE(n.shard_id);
  n = normalize_name("model.language_model.layers.0.self_attn.k_proj.weight", vllm);
  EXPECT_EQ(n.name, "language_model.model.layers.0.self_attn.qkv_proj.weight");
  EXPECT_EQ(n.shard_id, "k");
  // The F01/F02 input: a KV scale already under the fused name.
  n = normalize_name("model.layers.0.self_attn.qkv_proj.v_scale", vllm);
  EXPECT_EQ(n.name, "language_model.model.layers.0.self_attn.attn.v_scale");

  const char* inputs[] = {"model.layers.0.self_attn.k_proj.k_scale",
                          "model.language_model.layers.1.self_attn.v_proj.v_scale",
                          "model.layers.2.self_attn.kv_scale",
                          "model.layers.0.mlp.gate_proj.weight",
                          "visual.blocks.0.attn.qkv.weight_scale",
                          "model.visual.blocks.0.attn.k_proj.k_scale",
                          "lm_head.weight"};
  for (const NamePipeline* p : std::initializer_list<const NamePipeline*>{&vllm, &canonical_pipeline()}) {
    for (const char* in : inputs) {
      std::string once = normalize_name(in, *p).name;
      EXPECT_EQ(normalize_name(once, *p).name, once) << in;
    }
  }
}

TEST(Names, TowersAndModuleHelpers) {
  EXPECT_EQ(tower_of("model.visual.blocks.0.attn.qkv"), Tower::kVision);
  EXPECT_EQ(tower_of("visual.merger.mlp.0"), Tower::kVision);
  EXPECT_EQ(tower_of("model.vision_tower.encoder"), Tower::kVision);
  EXPECT_EQ(tower_of("mlp1.1"), Tower::kVision);
  EXPECT_EQ(tower_of("model.language_model.layers.0.mlp.up_proj"), Tower::kLanguage);
  EXPECT_EQ(tower_of("lm_head"), Tower::kHead);
  EXPECT_EQ(tower_of("model.visualizer"), Tower::kLanguage);
  EXPECT_EQ(module_of("a.b.weight"), "a.b");
  EXPECT_EQ(leaf_of("a.b.weight"), "weight");
  EXPECT_TRUE(in_subtree("a.b.c", "a.b"));
  EXPECT_FALSE(in_subtree("a.bc", "a.b"));
}

// One name's generation and the inspect ids (vlq.inspect/1 "naming").
TEST(Names, NamingGenerationOfOneName) {
  EXPECT_EQ(naming_generation_of("model.language_model.norm.weight"), NamingGeneration::kTransformers452);
  EXPECT_EQ(naming_generation_of("model.visual.blocks.0.attn.qkv.weight"), NamingGeneration::kTransformers452);
  EXPECT_EQ(naming_generation_of("model.norm.weight"), NamingGeneration::kLegacy);
  EXPECT_EQ(naming_generation_of("visual.merger.mlp.0.weight"), NamingGeneration::kLegacy);
  EXPECT_EQ(naming_generation_of("lm_head.weight"), NamingGeneration::kUnknown);
  EXPECT_EQ(naming_generation_id(NamingGeneration::kLegacy), "legacy");
  EXPECT_EQ(naming_generation_id(NamingGeneration::kTransformers452), "hf-4.52");
  EXPECT_EQ(naming_generation_id(NamingGeneration::kMixed), "mixed");
  EXPECT_EQ(naming_generation_id(NamingGeneration::kUnknown), "unknown");
}

// Components come from the canonical prefix table, for both generations alike.
TEST(Names, ComponentsOfBothGenerations) {
  const std::pair<const char*, Component> cases[] = {
      {"visual.merger.mlp.0.weight", Component::kVisionMerger},
      {"model.visual.merger.ln_q.weight", Component::kVisionMerger},
      {"visual.blocks.0.attn.qkv.weight", Component::kVisionTower},
      {"model.visual.patch_embed.proj.weight", Component::kVisionTower},
      {"model.embed_tokens.weight", Component::kEmbedTokens},
      {"model.language_model.embed_tokens.weight", Component::kEmbedTokens},
      {"model.layers.0.self_attn.k_proj.k_scale", Component::kLanguageModel},
      {"model.language_model.norm.weight", Component::kLanguageModel},
      {"lm_head.weight", Component::kLmHead},
      {"language_model.lm_head.weight", Component::kOther},
      {"vision_tower.x.weight", Component::kOther},
  };
  for (auto [n, c] : cases) EXPECT_EQ(component_name(component_of(n)), component_name(c)) << n;
}

// parse_kv_scale_key is a view of the spelling table: every K/V spelling, never q/prob scales.
TEST(Names, KvScaleKeysFromTheSpellingTable) {
  for (const auto& sp : kv_scale_spellings()) {
    const std::string n = "model.layers.0.self_attn" + sp.suffix;
    auto k = parse_kv_scale_key(n);
    if (sp.kind == KvKind::kQ || sp.kind == KvKind::kProb) {
      EXPECT_FALSE(k) << n;
      continue;
    }
    ASSERT_TRUE(k) << n;
    EXPECT_EQ(k->attention, "model.layers.0.self_attn") << n;
    EXPECT_EQ(k->kind, sp.kind == KvKind::kK ? 'k' : sp.kind == KvKind::kV ? 'v' : 'b') << n;
  }
  auto q = parse_kv_scale_key("model.layers.0.self_attn.qkv_proj.v_scale");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->spelling, "qkv_proj.v_scale");
  EXPECT_EQ(q->holder, "model.layers.0.self_attn.qkv_proj");
  auto v = parse_kv_scale_key("visual.blocks.0.attn.k_scale");  // a vision module called attn
  ASSERT_TRUE(v);
  EXPECT_EQ(v->attention, "visual.blocks.0.attn");
  EXPECT_EQ(v->spelling, "attn.k_scale");
  EXPECT_EQ(v->holder, "visual.blocks.0.attn");
}

TEST(Names, QuantTensorLeaves) {
  ASSERT_NE(quant_tensor_leaf("a.b.weight_scale"), nullptr);
  EXPECT_EQ(quant_tensor_leaf("a.b.weight_scale")->role, QuantTensorRole::kLinearScale);
  EXPECT_EQ(quant_tensor_leaf("a.b.input_scale_2")->role, QuantTensorRole::kLinearScale);
  EXPECT_EQ(quant_tensor_leaf("a.self_attn.k_scale")->role, QuantTensorRole::kKvScale);
  EXPECT_EQ(quant_tensor_leaf("a.k_proj._amax")->role, QuantTensorRole::kOther);
  EXPECT_EQ(quant_tensor_leaf("a.b.weight"), nullptr);
  EXPECT_EQ(quant_tensor_leaf("a.b.bias"), nullptr);
}

// vLLM's own tables: substring stacking (the "qkqkv_proj" effect of §2.4) and maybe_remap_kv_scale_name.
TEST(Names, VllmStackingAndKvRemapTables) {
  auto r = vllm_qwen2_lm_stacking().apply("layers.0.self_attn.qkv_proj.k_scale");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "layers.0.self_attn.qkqkv_proj.k_scale");
  EXPECT_EQ(vllm_qwen2_lm_stacking().rules.size(), qwen2_lm_fusion().rules.size());
  const auto& remap = vllm_kv_scale_remap();
  auto hit = std::find_if(remap.begin(), remap.end(), [&](const KvRemapRule& x) {
    return r->name.size() >= x.from.size() && r->name.compare(r->name.size() - x.from.size(), x.from.size(), x.from) == 0;
  });
  ASSERT_NE(hit, remap.end());
  EXPECT_EQ(hit->to, ".self_attn.attn.k_scale");
  EXPECT_EQ(trtllm_vision_attention_renames().front().to, "qkv_proj");
}
