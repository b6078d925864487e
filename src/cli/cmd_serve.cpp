// `vlq serve`: an OpenAI-compatible server (chat completions with images, completions, models, health,
// metrics) with continuous batching on the CPU runtime; SIGTERM / SIGINT drain in-flight requests, then exit.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/common_options.h"
#include "vlq/core/error.h"
#include "vlq/engine/llm_engine.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/engine/device_model.h"
#include "vlq/image/image_processor.h"
#include "vlq/engine/model_runner.h"
#include "vlq/server/async_engine.h"
#include "vlq/server/http_server.h"
#include "vlq/server/metrics.h"

namespace {

namespace fs = std::filesystem;
using namespace vlq;

struct ServeArgs {
  std::string model, device = "auto", image_backend = "torchvision", host = "127.0.0.1", api_key, kv_cache = "auto", served_model_name;
  std::string allowed_media_dir;
  int port = 8000, tensor_parallel = 1;
  std::int64_t max_num_seqs = 8, max_num_batched_tokens = 512, max_model_len = 0, num_kv_blocks = 0, block_size = 16;
  std::int64_t max_queue = 64, kv_cache_memory_mb = 0, image_cache_mb = 256, max_body_mb = 32, max_image_mb = 20;
  double drain_timeout = 30;
  bool no_prefix_caching = false, allow_remote_media = false;
};

void check_args(const ServeArgs& a) {
  auto bad = [](const char* opt, const std::string& want, const std::string& got) {
    throw UsageError({opt, "value out of range", want, got, ""});
  };
  cli::parse_device_option(a.device);  // cpu | cuda | auto (UsageError / UnsupportedError)
  if (a.port < 0 || a.port > 65535) bad("--port", "0..65535 (0 = any free port)", std::to_string(a.port));
  if (a.max_num_seqs < 1) bad("--max-num-seqs", ">= 1", std::to_string(a.max_num_seqs));
  if (a.max_num_batched_tokens < 1) bad("--max-num-batched-tokens", ">= 1", std::to_string(a.max_num_batched_tokens));
  if (a.max_model_len < 0 || a.max_model_len == 1) bad("--max-model-len", ">= 2 (0 = the model's)", std::to_string(a.max_model_len));
  if (a.block_size < 1 || a.block_size > 1024) bad("--block-size", "1..1024", std::to_string(a.block_size));
  if (a.num_kv_blocks < 0) bad("--num-kv-blocks", ">= 0 (0 = from --kv-cache-memory-mb)", std::to_string(a.num_kv_blocks));
  if (a.max_queue < 1) bad("--max-queue", ">= 1", std::to_string(a.max_queue));
  if (!(a.drain_timeout >= 0)) bad("--drain-timeout", ">= 0 seconds", fmt::format("{}", a.drain_timeout));
  if (a.kv_cache_memory_mb < 0) bad("--kv-cache-memory-mb", ">= 0 (0 = the device's default)", std::to_string(a.kv_cache_memory_mb));
  if (a.max_body_mb < 1 || a.max_body_mb > 4096) bad("--max-body-mb", "1..4096 (MiB)", std::to_string(a.max_body_mb));
  if (a.max_image_mb < 1) bad("--max-image-mb", ">= 1 (MiB)", std::to_string(a.max_image_mb));
  if (!a.allowed_media_dir.empty() && !fs::is_directory(a.allowed_media_dir))
    throw IoError({a.allowed_media_dir, "--allowed-media-dir is not a folder", "an existing folder", "", ""});
}

// SIGTERM / SIGINT set this flag (a handler, not sigwait: OpenBLAS starts threads before main, so the
// signals cannot be blocked in every thread); a watcher thread polls it and starts the drain.
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

// Bytes of KV cache for the default block count: --kv-cache-memory-mb when given; else 1 GiB on the CPU, and on
// a GPU what vLLM's --gpu-memory-utilization 0.9 leaves: 90 % of the free memory minus the checkpoint's
// safetensors bytes per rank (the weights stay in their stored dtype on the device) minus 2 GiB of
// activations and workspaces, at least 1 GiB.
std::int64_t kv_budget_bytes(const ServeArgs& a, bool cuda) {
  if (a.kv_cache_memory_mb > 0) return a.kv_cache_memory_mb << 20;
  constexpr std::int64_t kGiB = std::int64_t{1} << 30;
  if (!cuda) return kGiB;
  std::int64_t weights = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(a.model, ec))
    if (e.path().extension() == ".safetensors") weights += static_cast<std::int64_t>(e.file_size(ec));
  const std::int64_t free = engine::cuda_free_memory_bytes(0);
  const std::int64_t budget = free * 9 / 10 - weights / std::max(1, a.tensor_parallel) - 2 * kGiB;
  return std::max(kGiB, budget);
}

int run_serve(const ServeArgs& a) {
  check_args(a);
  install_stop_handlers();
  engine::BundleOptions bo;
  bo.kv_cache = engine::parse_kv_cache_mode(a.kv_cache, "--kv-cache");
  bo.image_backend = cli::parse_image_backend_option(a.image_backend);
  if (a.tensor_parallel != 1 && cli::parse_device_option(a.device) != engine::Device::kCuda)
    throw UsageError({"--tensor-parallel", "tensor parallelism needs --device cuda", "1 on the CPU",
                      std::to_string(a.tensor_parallel), "use --device cuda, or drop --tensor-parallel"});
  const engine::ModelBundle bundle = engine::ModelBundle::load(a.model, bo);
  if (auto w = bundle.kv_cache_warning()) std::cerr << "[vlq] warning: " << *w << "\n";
  const auto& tc = bundle.model().config().text;
  const std::int64_t max_model_len = a.max_model_len > 0 ? a.max_model_len : tc.max_position_embeddings;
  if (max_model_len > tc.max_position_embeddings)
    throw UsageError({"--max-model-len", "longer than the model's context",
                      "<= " + std::to_string(tc.max_position_embeddings), std::to_string(max_model_len), ""});

  const engine::Device device = cli::parse_device_option(a.device);
  const bool cuda = device == engine::Device::kCuda;
  engine::CpuRunnerOptions ro;
  ro.block_size = a.block_size;
  ro.image_cache_bytes = static_cast<std::size_t>(a.image_cache_mb) << 20;
  const engine::KvLayout layout = cuda ? engine::cuda_kv_layout(bundle.model())
                                       : engine::CpuModelRunner(bundle.model(), ro).kv_layout();
  const std::int64_t block_bytes = layout.bytes_per_token() * a.block_size;
  const std::int64_t min_blocks = (max_model_len + a.block_size - 1) / a.block_size;
  std::int64_t blocks = a.num_kv_blocks;
  if (blocks == 0)
    blocks = std::max(min_blocks, std::min(min_blocks * a.max_num_seqs, kv_budget_bytes(a, cuda) / block_bytes));
  if (blocks < min_blocks)
    std::cerr << fmt::format("[vlq] warning: --num-kv-blocks {} holds {} tokens, fewer than the context of {} "
                             "(--max-model-len): a request longer than that is refused\n",
                             blocks, blocks * a.block_size, max_model_len);
  if (a.api_key.empty() && a.host != "127.0.0.1" && a.host != "localhost" && a.host != "::1")
    std::cerr << "[vlq] warning: listening on " << a.host << " without --api-key: anyone who can reach this address "
                 "can use the model (set --api-key, or bind 127.0.0.1 behind a proxy)\n";
  ro.num_blocks = a.no_prefix_caching ? 0 : blocks;
  std::unique_ptr<engine::ModelRunner> runner_ptr;
  if (cuda) {
    engine::CudaRunnerOptions co;
    co.num_blocks = blocks;
    co.block_size = a.block_size;
    co.max_num_batched_tokens = a.max_num_batched_tokens;
    co.max_num_seqs = a.max_num_seqs;
    co.image_cache_bytes = ro.image_cache_bytes;
    co.tensor_parallel = a.tensor_parallel;
    runner_ptr = engine::make_cuda_model_runner(bundle.model(), co);
  } else {
    runner_ptr = std::make_unique<engine::CpuModelRunner>(bundle.model(), ro);
  }
  engine::ModelRunner& runner = *runner_ptr;

  engine::EngineConfig ec;
  ec.num_blocks = blocks;
  ec.block_size = a.block_size;
  ec.prefix_caching = !a.no_prefix_caching;
  ec.max_model_len = max_model_len;
  ec.scheduler.max_num_seqs = a.max_num_seqs;
  ec.scheduler.max_num_batched_tokens = a.max_num_batched_tokens;
  ec.scheduler.max_waiting = a.max_queue + 1;  // the AsyncEngine bounds the queue; the scheduler never refuses
  engine::LlmEngine core(runner, bundle.tokenizer(), ec);
  server::Metrics metrics;
  server::AsyncEngine async(core, metrics, a.max_queue);

  server::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.api_key = a.api_key;
  so.served_model_name = a.served_model_name.empty() ? fs::path(a.model).lexically_normal().filename().string()
                                                     : a.served_model_name;
  if (so.served_model_name.empty()) so.served_model_name = fs::absolute(a.model).parent_path().filename().string();
  so.max_body_bytes = static_cast<std::size_t>(a.max_body_mb) << 20;
  so.media.max_image_bytes = static_cast<std::size_t>(a.max_image_mb) << 20;
  so.media.allow_remote_media = a.allow_remote_media;
  if (!a.allowed_media_dir.empty()) so.media.allowed_media_dir = fs::absolute(a.allowed_media_dir);
  so.max_model_len = max_model_len;
  // Connection threads: ServerOptions' 16 kept, grown on demand up to one per request that can be running or
  // queued (each may hold a connection while it waits) plus room for health checks and metrics scrapes, >= 512.
  so.max_connections = static_cast<int>(std::min<std::int64_t>(
      65536, std::max<std::int64_t>(512, a.max_num_seqs + a.max_queue + 64)));
  server::HttpServer http(bundle, async, metrics, so);
  const int port = http.bind();
  async.start();
  std::cerr << fmt::format(
      "[vlq] serving '{}' on http://{}:{} ({}; {} KV blocks of {} tokens, {} KV cache, prefix caching {}; "
      "max {} sequences, {} tokens per step, context {}){}\n",
      so.served_model_name, a.host, port, cuda ? "CUDA" : "CPU", blocks, a.block_size, layout.elem_bytes == 1 ? "FP8 E4M3" : layout.elem_bytes == 2 ? "BF16" : "f32",
      a.no_prefix_caching ? "off" : "on", a.max_num_seqs, a.max_num_batched_tokens, max_model_len,
      a.api_key.empty() ? "" : "; API key required");
  std::cerr << "vlq serve: listening on http://" << a.host << ":" << port << std::endl;

  std::atomic<bool> done{false};
  std::thread signals([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const int sig = g_stop_signal.load();
      if (sig == SIGTERM || sig == SIGINT) {
        std::cerr << "[vlq] " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ": draining in-flight requests\n";
        http.shutdown(std::chrono::milliseconds(static_cast<std::int64_t>(a.drain_timeout * 1000)));
        return;
      }
    }
  });
  http.serve();
  done = true;
  signals.join();
  async.stop();
  std::cerr << "[vlq] stopped\n";
  return 0;
}

std::function<int()> setup_serve(CLI::App& app) {
  app.description("OpenAI-compatible server (chat completions with images, completions) with continuous batching");
  auto a = std::make_shared<ServeArgs>();
  app.add_option("--model", a->model, "Model folder (Hugging Face checkpoint: BF16, FP8 or mixed)")->required();
  cli::add_count_option(app, "--tensor-parallel", a->tensor_parallel, "Shard the model over this many GPUs (CUDA; default 1)");
  cli::add_image_backend_option(app, a->image_backend);
  cli::add_device_option(app, a->device, "Runtime");
  app.add_option("--host", a->host, "Address to listen on (default 127.0.0.1: this machine only)");
  cli::add_count_option(app, "--port", a->port, "Port (default 8000; 0 = any free port)", 65535);
  app.add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY' on /v1/* (default: $VLQ_API_KEY)")
      ->envname("VLQ_API_KEY");
  app.add_option("--served-model-name", a->served_model_name, "Model id in /v1/models and responses (default: folder name)");
  cli::add_count_option(app, "--max-num-seqs", a->max_num_seqs, "Sequences batched together at most (default 8)");
  cli::add_count_option(app, "--max-num-batched-tokens", a->max_num_batched_tokens,
                        "Tokens per engine step, decode tokens + prefill chunks (default 512)");
  cli::add_count_option(app, "--max-model-len", a->max_model_len, "Prompt + output tokens at most (default: the model's)");
  app.add_option("--kv-cache", a->kv_cache, "KV cache: auto (FP8 when the checkpoint has k/v scales), fp8, f32");
  cli::add_count_option(app, "--num-kv-blocks", a->num_kv_blocks, "KV blocks (default: from --kv-cache-memory-mb)");
  cli::add_count_option(app, "--kv-cache-memory-mb", a->kv_cache_memory_mb, "KV-cache budget for the default block count (default: 1024 on the CPU; on a GPU 90 % of free memory "
                        "minus the weights minus 2 GiB)");
  cli::add_count_option(app, "--block-size", a->block_size, "Tokens per KV block (default 16)");
  app.add_flag("--no-prefix-caching", a->no_prefix_caching, "Do not reuse the KV blocks of shared prompt prefixes");
  cli::add_count_option(app, "--max-queue", a->max_queue, "Requests that may wait before 429 (default 64)");
  cli::add_count_option(app, "--image-cache-mb", a->image_cache_mb, "Image-encoder cache budget (default 256)");
  app.add_option("--allowed-media-dir", a->allowed_media_dir, "Serve local image files (paths, file: URLs) from this folder only");
  app.add_flag("--allow-remote-media", a->allow_remote_media, "Accept http(s) image URLs (no client in this build: 400)");
  cli::add_count_option(app, "--max-body-mb", a->max_body_mb, "Largest request body (default 32 MiB; larger: 413)");
  cli::add_count_option(app, "--max-image-mb", a->max_image_mb, "Largest encoded image (default 20 MiB; larger: 413)");
  cli::add_number_option(app, "--drain-timeout", a->drain_timeout, "Seconds SIGTERM waits for in-flight requests (default 30)");
  return [a]() { return run_serve(*a); };
}

}  // namespace

VLQ_COMMAND("serve", setup_serve);
