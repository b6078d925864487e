// The HTTP front of `vlq serve` (cpp-httplib, HTTP/1.1): routes POST /v1/chat/completions,
// POST /v1/completions, GET /v1/models, GET /health, GET /metrics; API-key check (Authorization: Bearer,
// on /v1/* only, scheme case-insensitive, 401 with WWW-Authenticate; a POST's after its body is read); framing
// checked before any body is read (405 for methods no route takes, 411 without Content-Length or with
// Transfer-Encoding, 400 for a bad or conflicting Content-Length, 413 unread beyond 4x the limit), and a refusal
// that leaves a body unread ends its connection; HTTP/1.0 clients get whole bodies with a length and streams
// that end with the connection; a connection thread pool that grows to max_connections (slow or idle clients do
// not starve the others); OpenAI-shaped JSON errors for every failure (400 naming the field, 401,
// 404, 413, 429 queue full, 503 shutting down, 500); server-sent events for stream=true ending in
// `data: [DONE]`. Worker threads parse and build requests, submit them to the AsyncEngine and read their
// output channel; a client that goes away is noticed within poll_interval (the socket stops being writable)
// and its sequence is aborted at once. shutdown() drains: new requests get 503, in-flight ones finish.
// Spec: OpenAI API reference (chat/completions, completions, models, errors, streaming); Prometheus text
// format for /metrics; RFC 6750 (Bearer tokens); WHATWG server-sent events.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "vlq/engine/model_bundle.h"
#include "vlq/server/async_engine.h"
#include "vlq/server/metrics.h"
#include "vlq/server/request_builder.h"

namespace vlq::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                                 // 0 = an ephemeral port (tests)
  std::string api_key;                             // empty = no authentication
  std::string served_model_name;                   // the id in /v1/models and responses
  std::size_t max_body_bytes = std::size_t{32} << 20;
  MediaPolicy media;
  int http_threads = 16;                           // connection threads kept up (idle ones beyond exit after 30 s)
  int max_connections = 512;                       // connections served at once; more wait for a thread
  std::chrono::seconds read_timeout{10};           // a stalled receive (headers or body) closes the connection
  std::chrono::milliseconds poll_interval{50};     // disconnect checks while waiting for tokens
  std::int64_t max_model_len = 2048;
};

class HttpServer {
 public:
  // bundle, engine and metrics must outlive the server.
  HttpServer(const engine::ModelBundle& bundle, AsyncEngine& engine, Metrics& metrics, ServerOptions options);
  ~HttpServer();
  // Binds host:port; returns the bound port. Throws IoError when the address cannot be bound.
  int bind();
  // Serves until stop() / shutdown(). Blocking; call after bind().
  void serve();
  // Refuses new requests (503), lets in-flight ones finish (up to drain_timeout), stops the engine (what is
  // left ends with an error), then stops the listener.
  void shutdown(std::chrono::milliseconds drain_timeout);
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vlq::server
