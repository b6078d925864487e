// CLI11's parse errors in vlq's message form (flag, what, expected, found, hint), for main's usage errors (exit 64).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace vlq::cli {

// The message for a CLI11 ParseError of subcommand `sub` (`cmd` = "vlq <name>", `top` = the whole app, whose
// remaining() holds the arguments no option took). Rewritten: a value that is not a number ("Could not
// convert: --top-p = x"), an option given more than once ("--port: At Most 1 required but received 2"), a
// value missing ("--port: 1 required INT missing"), an argument no option takes ("The following argument was
// not expected: --bogus"; the nearest option is suggested) and count_validator's messages (the help pointer
// added to their hint). Other errors keep CLI11's text, with the hint "see `<cmd> --help`".
std::string parse_error_message(const CLI::ParseError& e, const CLI::App& top, const CLI::App& sub, const std::string& cmd);

}  // namespace vlq::cli
