// Entry point of the `vlq` command: builds the CLI from the registered subcommands and maps
// vlq::Error to a message on stderr and an exit code.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "vlq/core/error.h"

namespace vlq::cli {
std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}

namespace {

// "INT" → "an integer", ... (CLI11's type names of the options vlq declares).
std::string expected_of(const std::string& type) {
  if (type == "INT") return "an integer";
  if (type == "UINT") return "a non-negative integer";
  if (type == "FLOAT") return "a number";
  if (type == "BOOLEAN") return "true or false";
  return "a value of type " + type;
}

}  // namespace

// CLI11's parse errors in vlq's form (flag, what, expected, found, hint): a value that is not a number
// ("Could not convert: --port = abc") and an option given more than once ("--port: At Most 1 required but
// received 2"); other errors keep CLI11's text, with the help hint.
std::string parse_error_message(const CLI::ParseError& e, const CLI::App& sub, const std::string& cmd) {
  const std::string what = e.what(), help = "see `" + cmd + " --help`";
  static const std::string kConvert = "Could not convert: ";
  if (dynamic_cast<const CLI::ConversionError*>(&e) && what.rfind(kConvert, 0) == 0) {
    const std::string rest = what.substr(kConvert.size());
    const auto eq = rest.find(" = ");
    if (eq != std::string::npos) {
      const std::string name = rest.substr(0, eq), value = rest.substr(eq + 3);
      const CLI::Option* o = sub.get_option_no_throw(name);
      const std::string expected = o ? expected_of(o->get_type_name()) : "a number";
      return vlq::format_error_message({name, "not a valid value", expected, "`" + value + "`", "give " + name + " " +
                                        (expected == "a number" ? "e.g. 0.5" : "e.g. 8") + "; " + help});
    }
  }
  static const std::string kAtMost = ": At Most ";
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e)) {
    const auto p = what.find(kAtMost);
    const auto r = what.find(" required but received ");
    if (p != std::string::npos && r != std::string::npos) {
      const std::string name = what.substr(0, p), at_most = what.substr(p + kAtMost.size(), r - p - kAtMost.size());
      const std::string got = what.substr(r + std::string(" required but received ").size());
      return vlq::format_error_message({name, "given more than once", at_most == "1" ? "once" : "at most " + at_most + " values",
                                        got + " times", "give " + name + " once (repeat only the options whose --help says "
                                        "repeatable); " + help});
    }
  }
  return what + ". Hint: " + help;
}

}  // namespace vlq::cli

int main(int argc, char** argv) {
  CLI::App app{"vlq: FP8 quantization, checking, conversion and runtime for Qwen2.5-VL"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vlq 0.1.0");
  std::function<int()> run;
  std::vector<std::pair<CLI::App*, std::function<int()>>> subs;
  for (auto& cmd : vlq::cli::command_registry()) {
    CLI::App* sub = app.add_subcommand(cmd.name);
    subs.emplace_back(sub, cmd.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string cmd = "vlq";
    for (auto& [sub, fn] : subs)
      if (sub->parsed()) cmd += " " + sub->get_name();
    if (cmd == "vlq") {  // no subcommand recognised: say which word was not one, and list them
      std::vector<std::string> names;
      for (auto& [sub, fn] : subs) names.push_back(sub->get_name());
      std::sort(names.begin(), names.end());
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      const char* first = argc > 1 ? argv[1] : nullptr;
      if (first && first[0] != '-')
        std::cerr << "vlq: error: unknown command `" << first << "`; the commands are: " << list
                  << ". Hint: see `vlq --help`\n";
      else if (!first)
        std::cerr << "vlq: error: a command is required: " << list << ". Hint: see `vlq --help`\n";
      else
        std::cerr << "vlq: error: " << e.what() << " (the commands are: " << list << "). Hint: see `vlq --help`\n";
      return 64;
    }
    CLI::App* parsed = &app;
    for (auto& [sub, fn] : subs)
      if (sub->parsed()) parsed = sub;
    std::cerr << "vlq: error: " << vlq::cli::parse_error_message(e, *parsed, cmd) << "\n";
    return 64;
  }
  try {
    for (auto& [sub, fn] : subs)
      if (sub->parsed()) return fn();
  } catch (const vlq::UsageError& e) {
    std::cerr << "vlq: error: " << e.what() << "\n";
    return 64;
  } catch (const vlq::Error& e) {
    std::cerr << "vlq: error: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "vlq: internal error: " << e.what() << "\n";
    return 70;
  }
  return 0;
}
