// Registry of `vlq` subcommands: each src/cli/cmd_<name>.cpp registers itself with
// VLQ_COMMAND(<name>) so that adding a command touches no shared file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace vlq::cli {

// A subcommand: `setup` adds the CLI11 subcommand and its options and returns the function that runs it.
// The run function returns the process exit code; it may throw vlq::Error (printed by main, exit 3
// for invalid input unless the command maps errors itself).
struct Command {
  std::string name;
  std::function<std::function<int()>(CLI::App& app)> setup;
};

std::vector<Command>& command_registry();

struct CommandRegistrar {
  explicit CommandRegistrar(Command c) { command_registry().push_back(std::move(c)); }
};

}  // namespace vlq::cli

#define VLQ_COMMAND_CONCAT2(a, b) a##b
#define VLQ_COMMAND_CONCAT(a, b) VLQ_COMMAND_CONCAT2(a, b)
// Usage: VLQ_COMMAND("inspect", [](CLI::App& app) { ...; return [=]{ return 0; }; });
#define VLQ_COMMAND(NAME, SETUP) \
  static ::vlq::cli::CommandRegistrar VLQ_COMMAND_CONCAT(vlq_cmd_, __LINE__){::vlq::cli::Command{NAME, SETUP}}
