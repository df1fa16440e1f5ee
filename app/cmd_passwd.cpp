// dpgate passwd NAME: prints a SCRAM-SHA-256 verifier for the config's
// `analysts[].scram`. The password is read from the terminal without echo (or
// from standard input when it is not a terminal) and never printed or logged.
#include <termios.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <string>

#include "commands.h"
#include "dpgate/proxy/scram.h"

namespace dpgate::app {
namespace {

constexpr const char* kUsage =
    "usage: dpgate passwd [--iterations N] NAME\n"
    "  Reads a password (twice, without echo, on a terminal; once from standard input\n"
    "  otherwise) and prints the SCRAM-SHA-256 verifier to paste into the config:\n"
    "    analysts:\n"
    "      - name: NAME\n"
    "        scram: \"SCRAM-SHA-256$4096:...\"\n";

bool ReadLineNoEcho(const char* prompt, std::string* out) {
  const bool tty = ::isatty(STDIN_FILENO) != 0;
  termios saved{};
  if (tty) {
    std::fprintf(stderr, "%s", prompt);
    std::fflush(stderr);
    ::tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  const bool ok = static_cast<bool>(std::getline(std::cin, *out));
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    std::fprintf(stderr, "\n");
  }
  return ok;
}

}  // namespace

int RunPasswd(const Args& args) {
  uint32_t iterations = 4096;
  std::string name;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (a == "--iterations") {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "dpgate passwd: --iterations needs a number\n%s", kUsage);
        return 2;
      }
      const std::string& v = args[++i];
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), iterations);
      if (ec != std::errc() || p != v.data() + v.size()) {
        std::fprintf(stderr, "dpgate passwd: --iterations: '%s' is not a whole number\n",
                     v.c_str());
        return 2;
      }
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "dpgate passwd: unknown option '%s'\n%s", a.c_str(), kUsage);
      return 2;
    } else if (name.empty()) {
      name = a;
    } else {
      std::fprintf(stderr, "dpgate passwd: one NAME only\n%s", kUsage);
      return 2;
    }
  }
  if (name.empty()) {
    std::fprintf(stderr, "dpgate passwd: missing NAME\n%s", kUsage);
    return 2;
  }
  std::string password;
  if (!ReadLineNoEcho(("Password for " + name + ": ").c_str(), &password)) {
    std::fprintf(stderr, "dpgate passwd: no password given on standard input\n");
    return 1;
  }
  if (::isatty(STDIN_FILENO) != 0) {
    std::string again;
    if (!ReadLineNoEcho("Again: ", &again) || again != password) {
      std::fprintf(stderr, "dpgate passwd: the passwords do not match\n");
      return 1;
    }
  }
  auto verifier = proxy::MakeScramVerifier(password, iterations);
  if (!verifier.ok()) {
    std::fprintf(stderr, "dpgate passwd: %s\n", verifier.error().message.c_str());
    return 1;
  }
  std::printf("%s\n", verifier->ToString().c_str());
  return 0;
}

}  // namespace dpgate::app
