// dpgate: one binary, one subcommand per task (DESIGN.md §3).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const dpgate::app::Args&);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"serve", dpgate::app::RunServe, "run the proxy: dpgate serve -c dpgate.yaml"},
    {"check", dpgate::app::RunCheck,
     "validate the config, connect upstream and ledger, check tables and columns"},
    {"rewrite", dpgate::app::RunRewrite,
     "print classification, rewritten SQL and ReleasePlan: dpgate rewrite -c FILE \"SQL\""},
    {"ledger", dpgate::app::RunLedger, "ledger status | grant | report | verify"},
    {"passwd", dpgate::app::RunPasswd, "print a SCRAM-SHA-256 verifier: dpgate passwd NAME"},
    {"sample", dpgate::app::RunSample,
     "draw from a mechanism: dpgate sample --mechanism laplace --epsilon 1 --sensitivity 1 "
     "--value 0 -n 100000"},
};

void PrintUsage(std::FILE* out) {
  std::fprintf(out, "usage: dpgate COMMAND [OPTIONS]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
  std::fprintf(out, "\nRun 'dpgate COMMAND --help' for the options of one command.\n");
}

}  // namespace

namespace dpgate::app {
int NotYetSupported(const std::string& command, const std::string& what) {
  std::fprintf(stderr, "dpgate %s: not yet supported in this build: %s\n", command.c_str(),
               what.c_str());
  return 2;
}
}  // namespace dpgate::app

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("dpgate 0.1.0\n");
    return 0;
  }
  for (const auto& c : kCommands) {
    if (name == c.name) return c.run(dpgate::app::Args(argv + 2, argv + argc));
  }
  std::fprintf(stderr, "dpgate: unknown command '%s'\n\n", name.c_str());
  PrintUsage(stderr);
  return 2;
}
