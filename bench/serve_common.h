// Shared pieces of the `vlq serve` benchmarks (serve_load_bench, serve_soak_bench): start `vlq serve` as a
// child process on a free loopback port, read a process's resident memory, base64 image data: URLs,
// streamed requests timed per token (TTFT, inter-token gaps) with cpp-httplib's client, percentiles.
// Loopback only: the benchmarks never talk to another host.
#pragma once

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vlq::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A `vlq serve` child process. The server's stderr goes to `log_path`.
struct ServeProcess {
  pid_t pid = -1;
  int port = 0;
  std::string log_path;

  // Starts `vlq serve --port 0 <args>` and waits (up to 60 s) for its "listening on" line.
  static ServeProcess start(const std::string& vlq, const std::vector<std::string>& args, const std::string& log_path) {
    ServeProcess p;
    p.log_path = log_path;
    p.pid = ::fork();
    if (p.pid < 0) throw std::runtime_error("fork failed");
    if (p.pid == 0) {
      std::FILE* log = std::freopen(log_path.c_str(), "w", stderr);
      (void)log;
      std::vector<std::string> all = {vlq, "serve", "--port", "0"};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(vlq.c_str(), argv.data());
      std::_Exit(127);
    }
    const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600 && p.port == 0; ++i) {
      std::ifstream f(log_path);
      const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      std::smatch m;
      if (std::regex_search(text, m, re)) p.port = std::stoi(m[1]);
      else if (::waitpid(p.pid, nullptr, WNOHANG) == p.pid) throw std::runtime_error("vlq serve exited:\n" + text);
      else ::usleep(100000);
    }
    if (p.port == 0) {
      ::kill(p.pid, SIGKILL);
      throw std::runtime_error("vlq serve did not start (see " + log_path + ")");
    }
    return p;
  }

  // SIGTERM, then waits up to `timeout_s`; returns the exit status (-1: killed or not exited).
  int terminate(double timeout_s = 40) {
    if (pid <= 0) return -1;
    ::kill(pid, SIGTERM);
    const auto t0 = Clock::now();
    int status = 0;
    while (seconds_since(t0) < timeout_s) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      ::usleep(50000);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    pid = -1;
    return -1;
  }
};

// VmRSS of a process in KiB (0 when unreadable).
inline std::int64_t rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return 0;
}

inline std::string base64(const std::vector<std::uint8_t>& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t{in[i]} << 16) | (i + 1 < in.size() ? std::uint32_t{in[i + 1]} << 8 : 0) |
                            (i + 2 < in.size() ? std::uint32_t{in[i + 2]} : 0);
    out += t[(n >> 18) & 63];
    out += t[(n >> 12) & 63];
    out += i + 1 < in.size() ? t[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? t[n & 63] : '=';
  }
  return out;
}

inline std::string png_data_url(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return "data:image/png;base64," + base64(bytes);
}

// Client-side timing of one streamed request.
struct StreamTiming {
  int status = 0;              // HTTP status, -1 no response
  bool done = false;           // saw data: [DONE]
  double ttft_s = 0, total_s = 0;
  std::vector<double> gaps_s;  // between consecutive content chunks
  std::int64_t tokens = 0;     // completion_tokens from the usage chunk (else content chunks)
  std::int64_t prompt_tokens = 0;  // prompt_tokens from the usage chunk
};

// POSTs `body` (which must ask for stream=true with stream_options.include_usage) and times the SSE chunks.
inline StreamTiming post_stream(const std::string& host, int port, const std::string& path, const std::string& body,
                                const std::string& api_key) {
  StreamTiming st;
  httplib::Client c(host, port);
  c.set_read_timeout(120, 0);
  httplib::Headers h = {{"Content-Type", "application/json"}};
  if (!api_key.empty()) h.emplace("Authorization", "Bearer " + api_key);
  const auto t0 = Clock::now();
  auto last = t0;
  std::string buf;
  std::int64_t chunks = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = h;
  req.body = body;
  req.content_receiver = [&](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
    buf.append(d, n);
    for (std::size_t e; (e = buf.find("\n\n")) != std::string::npos; buf.erase(0, e + 2)) {
      const std::string ev = buf.substr(0, e);
      if (ev.rfind("data: ", 0) != 0) continue;
      const std::string data = ev.substr(6);
      if (data == "[DONE]") {
        st.done = true;
        continue;
      }
      const auto j = nlohmann::json::parse(data, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("usage") && j["usage"].is_object()) {
        st.tokens = j["usage"].value("completion_tokens", 0);
        st.prompt_tokens = j["usage"].value("prompt_tokens", 0);
      }
      if (!j.contains("choices") || j["choices"].empty()) continue;
      const auto& ch = j["choices"][0];
      const bool content = (ch.contains("text") && !ch["text"].get<std::string>().empty()) ||
                           (ch.contains("delta") && ch["delta"].contains("content") &&
                            !ch["delta"]["content"].get<std::string>().empty());
      if (!content) continue;
      const auto now = Clock::now();
      if (chunks++ == 0) st.ttft_s = std::chrono::duration<double>(now - t0).count();
      else st.gaps_s.push_back(std::chrono::duration<double>(now - last).count());
      last = now;
    }
    return true;
  };
  auto res = c.send(req);
  st.status = res ? res->status : -1;
  st.total_s = seconds_since(t0);
  if (st.tokens == 0) st.tokens = chunks;
  return st;
}

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * static_cast<double>(v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(idx);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

// Prometheus gauge/counter value (lines without labels) from /metrics; nullopt when absent.
inline std::optional<double> metric(const std::string& text, const std::string& name) {
  std::size_t pos = 0;
  while ((pos = text.find(name + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::stod(text.substr(pos + name.size() + 1));
    pos += name.size();
  }
  return std::nullopt;
}

}  // namespace vlq::bench
