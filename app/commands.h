// The dpgate subcommands (DESIGN.md §3). Each takes the arguments after its
// own name and returns the process exit status. One file per command.
#pragma once

#include <string>
#include <vector>

namespace dpgate::app {

using Args = std::vector<std::string>;

int RunServe(const Args& args);
int RunCheck(const Args& args);
int RunRewrite(const Args& args);
int RunLedger(const Args& args);
int RunPasswd(const Args& args);
int RunSample(const Args& args);

// Exit status for a capability that this build does not have yet: it says so
// plainly and never pretends to work.
int NotYetSupported(const std::string& command, const std::string& what);

}  // namespace dpgate::app
