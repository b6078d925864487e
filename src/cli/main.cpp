// Entry point of the `vlq` command: builds the CLI from the registered subcommands and maps CLI11's parse
// errors (cli/parse_errors) and vlq::Error to a message on stderr and an exit code.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/common_options.h"
#include "cli/parse_errors.h"
#include "vlq/core/error.h"

namespace vlq::cli {
std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}
}  // namespace vlq::cli

int main(int argc, char** argv) {
  CLI::App app{"vlq: FP8 quantization, checking, conversion and runtime for Qwen2.5-VL"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vlq 0.1.0");
  std::function<int()> run;
  std::vector<std::pair<CLI::App*, std::function<int()>>> subs;
  try {
    for (auto& cmd : vlq::cli::command_registry()) {
      CLI::App* sub = app.add_subcommand(cmd.name);
      subs.emplace_back(sub, cmd.setup(*sub));
      vlq::cli::require_number_validators(*sub);  // every numeric flag through add_count/number_option
    }
  } catch (const std::logic_error& e) {  // a command declared wrongly: a bug in vlq, not in the command line
    std::cerr << "vlq: internal error: " << e.what() << "\n";
    return 70;
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
    std::cerr << "vlq: error: " << vlq::cli::parse_error_message(e, app, *parsed, cmd) << "\n";
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
