// Test helper: checks a `--report` HTML page — well-formed XML (every tag closed in order, attributes quoted,
// no stray '<' or '&'), self-contained (no script, no external URL), the sections, and one <svg> per plot.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vlq::testing_report {

// Empty when `x` is well-formed XML after a leading <!DOCTYPE ...>; else the first problem.
inline std::string xml_problem(const std::string& x) {
  std::vector<std::string> stack;
  std::size_t i = 0;
  if (x.rfind("<!DOCTYPE", 0) == 0) i = x.find('>') + 1;
  while (i < x.size()) {
    const char c = x[i];
    if (c == '&') {
      const std::size_t semi = x.find(';', i);
      if (semi == std::string::npos || semi - i > 8) return "bare & at " + std::to_string(i);
      i = semi + 1;
      continue;
    }
    if (c == '>') return "stray > at " + std::to_string(i);
    if (c != '<') {
      ++i;
      continue;
    }
    const std::size_t end = x.find('>', i);
    if (end == std::string::npos) return "unclosed tag at " + std::to_string(i);
    std::string tag = x.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) return "< inside a tag at " + std::to_string(i);
    i = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return "</" + name + "> closes " + (stack.empty() ? "nothing" : "<" + stack.back() + ">");
      stack.pop_back();
      continue;
    }
    const bool self = tag.back() == '/';
    if (self) tag.pop_back();
    const std::string name = tag.substr(0, tag.find_first_of(" \t\n"));
    // attributes: name="value" pairs
    std::size_t k = name.size();
    while (k < tag.size()) {
      while (k < tag.size() && std::isspace(static_cast<unsigned char>(tag[k]))) ++k;
      if (k >= tag.size()) break;
      const std::size_t eq = tag.find('=', k);
      if (eq == std::string::npos || eq + 1 >= tag.size() || tag[eq + 1] != '"') return "unquoted attribute in <" + name + ">";
      const std::size_t close = tag.find('"', eq + 2);
      if (close == std::string::npos) return "unterminated attribute in <" + name + ">";
      k = close + 1;
    }
    if (!self) stack.push_back(name);
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

inline int count(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (std::size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

inline void expect_report(const std::string& html, bool group_kl_measured) {
  EXPECT_EQ(xml_problem(html), "");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(count(html, "http"), count(html, "http://www.w3.org/"));  // only XML namespaces
  for (const char* sec : {"summary", "amax", "clipped", "group-kl", "size", "kv-scales", "checks"})
    EXPECT_EQ(count(html, std::string("<section id=\"") + sec + "\""), 1) << sec;
  for (const char* plot : {"amax", "clipped", "group-kl", "size", "kv-scales"})
    EXPECT_EQ(count(html, std::string("data-plot=\"") + plot + "\""), 1) << plot;
  EXPECT_EQ(count(html, "<svg "), count(html, "</svg>"));
  // a measured group-KL plot has bars; an unmeasured one is a one-line note
  const std::size_t g = html.find("data-plot=\"group-kl\"");
  ASSERT_NE(g, std::string::npos);
  const std::size_t gend = html.find("</svg>", g);
  EXPECT_EQ(html.substr(g, gend - g).find("<rect") != std::string::npos, group_kl_measured);
  EXPECT_GT(count(html, "<td style=\"background:"), 0) << "no check verdicts";
}

}  // namespace vlq::testing_report
