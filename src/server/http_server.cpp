// OpenAI-compatible HTTP routes over cpp-httplib: auth, errors, SSE streaming, disconnect aborts, drain
// (see vlq/server/http_server.h).
#include "vlq/server/http_server.h"

#include <httplib.h>
#include <fmt/format.h>

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <utility>
#include <vector>

#include "connection_pool.h"
#include "vlq/core/error.h"

namespace vlq::server {

namespace {

using ojson = nlohmann::ordered_json;

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(e.to_json().dump(-1, ' ', false, ojson::error_handler_t::replace), "application/json");
}

// Set while a request's connection must end after its response (its body was not read, or an HTTP/1.0 stream
// ends with the connection); the logger, which cpp-httplib calls on the same thread once the response is
// written, then ends it. Cleared when the next request starts (pre-routing).
thread_local bool t_end_connection = false;

// This response is the connection's last: "Connection: close" (not twice: cpp-httplib writes it itself when
// the request said so) and the connection really ends after it (see end_connection).
void close_after(const httplib::Request& req, httplib::Response& res) {
  if (req.get_header_value("Connection") != "close") res.set_header("Connection", "close");
  t_end_connection = true;
}

// The socket of req's connection, found by its two ends (cpp-httplib 0.11 does not expose it); -1 if none.
int connection_socket(const httplib::Request& req, int local_port) {
  // The open descriptors only (/proc/self/fd): the cost follows the connections, not RLIMIT_NOFILE.
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  std::vector<int> fds;
  while (const dirent* e = ::readdir(dir))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') fds.push_back(std::atoi(e->d_name));
  ::closedir(dir);
  for (const int fd : fds) {
    sockaddr_storage peer{}, self{};
    socklen_t pl = sizeof peer, sl = sizeof self;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) continue;
    char host[NI_MAXHOST], port[NI_MAXSERV], lhost[NI_MAXHOST], lport[NI_MAXSERV];
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&peer), pl, host, sizeof host, port, sizeof port,
                      NI_NUMERICHOST | NI_NUMERICSERV) != 0 ||
        ::getnameinfo(reinterpret_cast<sockaddr*>(&self), sl, lhost, sizeof lhost, lport, sizeof lport,
                      NI_NUMERICHOST | NI_NUMERICSERV) != 0)
      continue;
    // Both ends (the same client address and port may reach two of this host's addresses).
    if (std::atoi(port) == req.remote_port && host == req.remote_addr && std::atoi(lport) == local_port &&
        (req.local_addr.empty() || lhost == req.local_addr))
      return fd;
  }
  return -1;
}

// cpp-httplib 0.11 keeps a connection whose response said "Connection: close" open (only the request's header
// counts), and would then read an unread body as the next request. After the response is written: FIN, drop
// what the client already sent (bounded), and swap the descriptor for one at end of input, so the library's
// next read ends its keep-alive loop (it then closes the swap) and no byte still on the socket is ever parsed.
// Bytes the library had already buffered with the headers (its read buffer, 4 KiB) may still be parsed as a
// request, with the usual API-key check, but its answer goes nowhere: nothing the client could not send anyway.
void end_connection(int fd) {
  ::shutdown(fd, SHUT_WR);
  char buf[16384];
  for (int i = 0; i < 16 && ::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; ++i) {
  }
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
    ::shutdown(fd, SHUT_RDWR);
    return;
  }
  ::close(sp[1]);
  ::dup2(sp[0], fd);
  ::close(sp[0]);
}

// Content-Length as a number; nullopt when absent; -1 when it is not a decimal number (RFC 9110 §8.6).
std::optional<long long> content_length(const httplib::Request& req) {
  if (!req.has_header("Content-Length")) return std::nullopt;
  const std::string v = req.get_header_value("Content-Length");
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(v);
}

// The credentials of "Authorization: Bearer <token>" (the scheme is case-insensitive, RFC 9110 §11.1); "" if absent.
std::string bearer_token(const std::string& header) {
  if (header.size() < 7) return "";
  for (std::size_t i = 0; i < 6; ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != "bearer"[i]) return "";
  if (header[6] != ' ') return "";
  std::size_t b = 7;
  while (b < header.size() && header[b] == ' ') ++b;
  std::size_t e = header.size();
  while (e > b && (header[e - 1] == ' ' || header[e - 1] == '\t')) --e;
  return header.substr(b, e - b);
}

// Comparison whose time does not depend on where the strings differ.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::string endpoint_label(const std::string& path) {
  for (const char* p : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"})
    if (path == p) return p;
  return "other";
}

// The methods a route answers ("" for an unknown path): the Allow header of a 405. GET routes answer HEAD too.
std::string allowed_methods(const std::string& path) {
  if (path == "/v1/chat/completions" || path == "/v1/completions") return "POST";
  if (path == "/v1/models" || path == "/health" || path == "/metrics") return "GET, HEAD";
  return "";
}

std::string reason_text(engine::FinishReason r) {
  return r == engine::FinishReason::kLength ? "length" : "stop";
}

// State of one generation request shared by the handler and its content provider.
struct Generation {
  std::shared_ptr<RequestStream> stream;
  std::string id, model;
  std::int64_t created = 0;
  bool chat = true, include_usage = false;
  std::string text;
  bool finished = false;
  engine::SeqEvent last;
  void add(const engine::SeqEvent& ev) {
    text += ev.text;
    if (ev.finished) {
      finished = true;
      last = ev;
    }
  }
  bool failed() const {
    return finished && (last.reason == engine::FinishReason::kError || last.reason == engine::FinishReason::kAbort);
  }
  Usage usage() const { return {last.prompt_tokens, last.completion_tokens, last.cached_tokens}; }
  ApiError failure() const {
    const bool stopping = last.error == "the server stopped";
    return ApiError(stopping ? 503 : 500, last.error.empty() ? std::string("generation was aborted") : last.error,
                    "server_error", "", stopping ? "shutting_down" : "");
  }
  ojson body() const {
    return chat ? chat_response_json(id, model, created, text, reason_text(last.reason), usage())
                : completion_response_json(id, model, created, text, reason_text(last.reason), usage());
  }
};

// cpp-httplib 0.11 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed in the Debian library):
// a burst of clients then loses SYNs and waits a 1 s retransmit. Linux lets a listening socket call listen()
// again with a larger backlog; find ours by its port.
void widen_listen_backlog(int port) {
  for (int fd = 3; fd < 1024; ++fd) {
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int p = -1;
    if (addr.ss_family == AF_INET) p = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) p = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (p == port) ::listen(fd, 512);
  }
}

}  // namespace

struct HttpServer::Impl {
  const engine::ModelBundle& bundle;
  AsyncEngine& engine;
  Metrics& metrics;
  ServerOptions opt;
  httplib::Server svr;
  std::int64_t created = static_cast<std::int64_t>(std::time(nullptr));
  bool bound = false;
  int port = 0;  // the bound port (connection_socket)

  Impl(const engine::ModelBundle& b, AsyncEngine& e, Metrics& m, ServerOptions o)
      : bundle(b), engine(e), metrics(m), opt(std::move(o)) {}

  void install();
  // Runs a content provider's body; an exception aborts the request and ends the response (false).
  template <class F> bool guarded(Generation& g, F&& f) {
    try {
      return f();
    } catch (...) {
      engine.abort(g.stream->id());
      return false;
    }
  }
  void check_model(const std::string& model) const;
  // Answers (and returns true) when a request's framing is refused before its body is read: 405 for methods no
  // route takes, 400 bad or conflicting Content-Length, 411 none or Transfer-Encoding, 413 over 4x the limit.
  bool refuse_framing(const httplib::Request& req, httplib::Response& res) const;
  // The API key (when the server has one) of a /v1/* request; refuse_key answers 401.
  bool authorized(const httplib::Request& req) const {
    return opt.api_key.empty() || req.path.rfind("/v1/", 0) != 0 ||
           same_secret(bearer_token(req.get_header_value("Authorization")), opt.api_key);
  }
  static void refuse_key(httplib::Response& res) {
    send_error(res, ApiError(401, "Incorrect or missing API key: send the header 'Authorization: Bearer <key>'.",
                             "authentication_error", "", "invalid_api_key"));
    res.set_header("WWW-Authenticate", "Bearer realm=\"vlq\"");  // RFC 6750 §3
  }
  void handle_generate(const httplib::Request& req, httplib::Response& res, bool chat);
  bool write_stream(Generation& g, httplib::DataSink& sink);
  bool write_whole(Generation& g, httplib::DataSink& sink);
  // Waits for the next event, aborting the request when the client is gone. nullopt: gone.
  std::optional<engine::SeqEvent> next_event(Generation& g, httplib::DataSink* sink);
  // The same, with "gone" asked of the caller (a socket that reached end of input, a sink no longer writable).
  template <class Gone> std::optional<engine::SeqEvent> next_event_until(Generation& g, Gone&& gone) {
    for (;;) {
      if (gone()) {
        engine.abort(g.stream->id());
        metrics.count_disconnect();
        return std::nullopt;
      }
      if (auto ev = g.stream->next(opt.poll_interval)) return ev;
    }
  }
};

void HttpServer::Impl::check_model(const std::string& model) const {
  if (model.empty() || model == opt.served_model_name || model == bundle.dir().string()) return;
  throw ApiError(404, "The model `" + model + "` does not exist.", "invalid_request_error", "model", "model_not_found");
}

bool HttpServer::Impl::refuse_framing(const httplib::Request& req, httplib::Response& res) const {
  auto refuse = [&](int status, const std::string& message, const char* code) {
    send_error(res, ApiError(status, message, "invalid_request_error", "", code));
    close_after(req, res);
    return true;
  };
  const bool has_te = req.has_header("Transfer-Encoding");
  const auto len = content_length(req);
  if (req.method != "POST") {
    if (req.method != "GET" && req.method != "HEAD") {
      // PUT / PATCH / DELETE / OPTIONS / ...: no route takes them, and the library would read their bodies (chunked or
      // until close) without a limit before answering.
      res.set_header("Allow", allowed_methods(req.path).empty() ? "GET, HEAD, POST" : allowed_methods(req.path));
      return refuse(405, req.method + " is not served (this server answers GET, HEAD and POST)", "method_not_allowed");
    }
    // A GET or HEAD with a body is answered, then the connection ends (its body is never read as a request).
    if (has_te || (len && *len != 0)) close_after(req, res);
    return false;
  }
  const std::size_t lengths = req.get_header_value_count("Content-Length");
  bool conflicting = false;
  for (std::size_t i = 1; i < lengths; ++i)
    conflicting |= req.get_header_value("Content-Length", i) != req.get_header_value("Content-Length", 0);
  if ((len && *len < 0) || conflicting)
    return refuse(400, conflicting ? std::string("conflicting Content-Length headers")
                                   : "Content-Length '" + req.get_header_value("Content-Length") + "' is not a number of bytes",
                  "bad_content_length");
  if (has_te)
    return refuse(411, "chunked (Transfer-Encoding) request bodies are not accepted: send the body with a Content-Length header",
                  "length_required");
  if (!len) return refuse(411, "a POST needs a Content-Length header", "length_required");
  // Up to 4x the limit the library reads the body and drops it, then answers 413: a client that writes its whole
  // body before reading (most do) then sees the 413 instead of a reset connection. Beyond that the upload is not
  // worth reading: 413 at once, and the connection ends.
  if (static_cast<unsigned long long>(*len) > 4ull * opt.max_body_bytes)
    return refuse(413, fmt::format("request body of {} bytes is larger than the server's limit ({} MiB, --max-body-mb)", *len,
                                   opt.max_body_bytes >> 20),
                  "request_too_large");
  return false;
}

std::optional<engine::SeqEvent> HttpServer::Impl::next_event(Generation& g, httplib::DataSink* sink) {
  return next_event_until(g, [sink] { return sink && !sink->is_writable(); });
}

bool HttpServer::Impl::write_stream(Generation& g, httplib::DataSink& sink) {
  auto send = [&](const std::string& s) {
    if (sink.write(s.data(), s.size())) return true;
    engine.abort(g.stream->id());
    metrics.count_disconnect();
    return false;
  };
  if (g.chat && !send(sse_event(chat_chunk_json(g.id, g.model, g.created, "", true, "")))) return false;
  while (!g.finished) {
    const auto ev = next_event(g, &sink);
    if (!ev) return false;
    g.add(*ev);
    if (g.failed()) {
      if (!send(sse_event(g.failure().to_json())) || !send(kSseDone)) return false;
      sink.done();
      return true;
    }
    const std::string reason = ev->finished ? reason_text(ev->reason) : "";
    if (!ev->text.empty() || ev->finished) {
      const ojson chunk = g.chat ? chat_chunk_json(g.id, g.model, g.created, ev->text, false, reason)
                                 : completion_chunk_json(g.id, g.model, g.created, ev->text, reason);
      if (!send(sse_event(chunk))) return false;
    }
  }
  if (g.include_usage &&
      !send(sse_event(usage_chunk_json(g.id, g.chat ? "chat.completion.chunk" : "text_completion", g.model, g.created,
                                       g.usage()))))
    return false;
  if (!send(kSseDone)) return false;
  sink.done();
  return true;
}

bool HttpServer::Impl::write_whole(Generation& g, httplib::DataSink& sink) {
  while (!g.finished) {
    const auto ev = next_event(g, &sink);
    if (!ev) return false;
    g.add(*ev);
  }
  const std::string body = (g.failed() ? g.failure().to_json() : g.body()).dump(-1, ' ', false, ojson::error_handler_t::replace);
  if (!sink.write(body.data(), body.size())) return false;
  sink.done();
  return true;
}

void HttpServer::Impl::handle_generate(const httplib::Request& req, httplib::Response& res, bool chat) {
  if (!authorized(req)) {
    refuse_key(res);
    return;
  }
  auto g = std::make_shared<Generation>();
  g->chat = chat;
  g->model = opt.served_model_name;
  g->created = static_cast<std::int64_t>(std::time(nullptr));
  g->id = make_response_id(chat ? "chatcmpl-" : "cmpl-");
  bool stream = false;
  try {
    BuiltRequest built;
    if (chat) {
      const ChatRequest c = parse_chat_request(req.body);
      check_model(c.model);
      built = build_chat_request(bundle, c, opt.media, opt.max_model_len);
      stream = c.sampling.stream;
      g->include_usage = c.sampling.include_usage;
    } else {
      const CompletionRequest c = parse_completion_request(req.body);
      check_model(c.model);
      built = build_completion_request(bundle, c, opt.max_model_len);
      stream = c.sampling.stream;
      g->include_usage = c.sampling.include_usage;
    }
    try {
      g->stream = engine.submit(std::move(built.request));
    } catch (const SubmitError& e) {
      if (e.kind == SubmitError::Kind::kQueueFull) throw ApiError(429, e.what(), "rate_limit_error", "", "queue_full");
      throw ApiError(503, e.what(), "server_error", "", "shutting_down");
    } catch (const Error& e) {
      throw ApiError(400, e.info().what, "invalid_request_error", "max_tokens", "context_length_exceeded");
    }
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  }
  auto releaser = [this, g](bool) {
    if (!g->finished) engine.abort(g->stream->id());  // client gone before the provider finished
  };
  // HTTP/1.0 has no chunked encoding: stream until the connection closes, and send a whole body with its length.
  const bool http10 = req.version == "HTTP/1.0";
  if (stream && http10) {
    res.set_header("Cache-Control", "no-cache");
    close_after(req, res);  // the stream ends with the connection, even if the client asked to keep it
    res.set_content_provider(
        "text/event-stream", [this, g](std::size_t, httplib::DataSink& sink) { return guarded(*g, [&] { return write_stream(*g, sink); }); }, releaser);
    return;
  }
  if (stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [this, g](std::size_t, httplib::DataSink& sink) { return guarded(*g, [&] { return write_stream(*g, sink); }); }, releaser);
    return;
  }
  // Non-streaming: the status line depends on the outcome, so wait for the first event (prefill done) before
  // answering; the rest is written by a provider that notices a vanished client.
  if (http10) {
    // The whole answer before the status line: watch the socket meanwhile (no provider to notice a vanished client).
    const int fd = connection_socket(req, port);
    auto gone = [fd] {
      pollfd p{fd, POLLRDHUP, 0};
      return fd >= 0 && ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
    };
    while (!g->finished) {
      const auto ev = next_event_until(*g, gone);
      if (!ev) {
        send_error(res, ApiError(499, "the client closed the connection", "invalid_request_error"));
        return;
      }
      g->add(*ev);
    }
  } else {
    g->add(*next_event(*g, nullptr));
  }
  // HTTP/1.0 keep-alive is opt-in on both sides: cpp-httplib keeps the connection for "Keep-Alive" (this spelling
  // only), so say so, or the client waits for a close.
  if (http10 && req.get_header_value("Connection") == "Keep-Alive") res.set_header("Connection", "keep-alive");
  if (g->failed()) {
    send_error(res, g->failure());
    return;
  }
  if (g->finished) {
    res.set_content(g->body().dump(-1, ' ', false, ojson::error_handler_t::replace), "application/json");
    return;
  }
  res.set_chunked_content_provider(
      "application/json", [this, g](std::size_t, httplib::DataSink& sink) { return guarded(*g, [&] { return write_whole(*g, sink); }); }, releaser);
}

void HttpServer::Impl::install() {
  svr.new_task_queue = [lo = opt.http_threads, hi = opt.max_connections] {
    return new ConnectionPool(static_cast<std::size_t>(lo), static_cast<std::size_t>(std::max(lo, hi)));
  };
  svr.set_payload_max_length(opt.max_body_bytes);
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which let a second server bind the same
  // port and share its connections.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Per receive call: a client that stalls mid-header or mid-body for this long loses its connection.
  svr.set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(opt.read_timeout).count(), 0);
  svr.set_write_timeout(30, 0);
  svr.set_keep_alive_max_count(1000);
  svr.set_keep_alive_timeout(5);
  // Framing first, before the library reads any body (pre-routing, and the Expect: 100-continue handler, which
  // the library runs before pre-routing and which would otherwise invite a body that is then refused): the
  // library would read a body of any announced length just to discard it (413 after the whole upload, however
  // large), a body with neither a length nor chunking until the client closes (a hang), and chunked bodies
  // without the size limit. Each refusal here ends the connection, since the body stays unread.
  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_end_connection = false;
    if (refuse_framing(req, res)) return httplib::Server::HandlerResponse::Handled;
    if (req.method == "POST") return httplib::Server::HandlerResponse::Unhandled;  // key checked once the body is read
    if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    refuse_key(res);
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_end_connection = false;
    return refuse_framing(req, res) ? res.status : 100;
  });
  svr.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    // The library's own refusals (a body that stalled or broke off: 400; too long: 413; URI too long: 414) may leave
    // part of a body unread: end the connection after them too.
    if (res.status == 400 || res.status == 413 || res.status == 414) close_after(req, res);
    if (res.status == 413 && req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0 &&
        req.body.size() <= opt.max_body_bytes && content_length(req).value_or(0) <= static_cast<long long>(opt.max_body_bytes))
      // Debian's compiled cpp-httplib reads a form-encoded body over 8 KiB, then refuses it with a bare 413 (plain
      // `curl -d` sends that type): say what to send instead.
      send_error(res, ApiError(415, "a JSON body must be sent as Content-Type: application/json (form-encoded bodies "
                                    "are limited to 8 KiB by the HTTP library); e.g. curl -H 'Content-Type: application/json'",
                               "invalid_request_error", "", "unsupported_media_type"));
    else if (res.status == 413)
      send_error(res, ApiError(413, "request body is larger than the server's limit (" +
                                        std::to_string(opt.max_body_bytes >> 20) + " MiB, --max-body-mb)",
                               "invalid_request_error", "", "request_too_large"));
    else if (res.status == 404 && !allowed_methods(req.path).empty()) {
      // A known route with another method (e.g. GET /v1/chat/completions): 405 with Allow, as RFC 9110 asks.
      const std::string allow = allowed_methods(req.path);
      send_error(res, ApiError(405, req.method + " is not allowed on " + req.path + "; use " + allow,
                               "invalid_request_error", "", "method_not_allowed"));
      res.set_header("Allow", allow);
    } else if (res.status == 404)
      send_error(res, ApiError(404, "no route for " + req.method + " " + req.path, "invalid_request_error", "",
                               "not_found"));
    else
      send_error(res, ApiError(res.status, fmt::format("HTTP {}", res.status), "invalid_request_error"));
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, what, "server_error"));
  });
  // The logger and the content providers run outside cpp-httplib's exception handling (an exception there ends
  // the process): nothing may escape them.
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    try {
      metrics.count_request(endpoint_label(req.path), res.status);
    } catch (...) {
    }
    if (std::exchange(t_end_connection, false)) {
      try {
        if (const int fd = connection_socket(req, port); fd >= 0) end_connection(fd);
      } catch (...) {
      }
    }
  });
  svr.Post("/v1/chat/completions",
           [this](const httplib::Request& req, httplib::Response& res) { handle_generate(req, res, true); });
  svr.Post("/v1/completions",
           [this](const httplib::Request& req, httplib::Response& res) { handle_generate(req, res, false); });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    ojson m = {{"id", opt.served_model_name}, {"object", "model"}, {"created", created}, {"owned_by", "vlq"},
               {"root", bundle.dir().string()}, {"max_model_len", opt.max_model_len}};
    res.set_content(ojson{{"object", "list"}, {"data", ojson::array({m})}}.dump(), "application/json");
  });
  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (engine.draining()) {
      send_error(res, ApiError(503, "the server is shutting down", "server_error", "", "shutting_down"));
      return;
    }
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(engine.gauges()), "text/plain; version=0.0.4; charset=utf-8");
  });
}

HttpServer::HttpServer(const engine::ModelBundle& bundle, AsyncEngine& engine, Metrics& metrics, ServerOptions options)
    : impl_(std::make_unique<Impl>(bundle, engine, metrics, std::move(options))) {
  impl_->install();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  int port = impl_->opt.port;
  bool ok;
  if (port == 0) {
    port = impl_->svr.bind_to_any_port(impl_->opt.host);
    ok = port > 0;
  } else {
    ok = impl_->svr.bind_to_port(impl_->opt.host, port);
  }
  if (!ok)
    throw IoError({impl_->opt.host + ":" + std::to_string(impl_->opt.port), "cannot listen on this address",
                   "a free local address", "bind failed", "choose another --port or --host"});
  impl_->bound = true;
  impl_->port = port;
  widen_listen_backlog(port);
  return port;
}

void HttpServer::serve() {
  // A client that closes its socket must not kill the process when a response is written to it.
  std::signal(SIGPIPE, SIG_IGN);
  impl_->svr.listen_after_bind();
}

void HttpServer::shutdown(std::chrono::milliseconds drain_timeout) {
  impl_->engine.drain(drain_timeout);
  impl_->engine.stop();  // what is left gets an error event, so every handler returns
  stop();
}

void HttpServer::stop() {
  if (impl_ && impl_->svr.is_running()) impl_->svr.stop();
}

}  // namespace vlq::server
