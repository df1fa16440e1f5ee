// dpgate serve -c dpgate.yaml: run the proxy until SIGTERM / SIGINT.
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <unistd.h>

#include "commands.h"
#include "dpgate/config/config.h"
#include "dpgate/proxy/batched_sink.h"
#include "dpgate/proxy/log_line_formatter.h"
#include "dpgate/proxy/server.h"
#include "schema_facts_loader.h"

namespace dpgate::app {
namespace {
constexpr const char* kUsage =
    "usage: dpgate serve -c dpgate.yaml [--threads N] [--max-connections N]\n"
    "  Runs the proxy on the config's listen address until SIGTERM or SIGINT, then\n"
    "  stops accepting, finishes the statements in flight and exits.\n";

// How long a log line may wait in memory before it is written (what a crash
// can lose; docs/DESIGN-NOTES.md item 9), and the most that may wait.
constexpr std::chrono::milliseconds kLogBatchInterval{20};
constexpr size_t kLogMaxBuffered = size_t{1} << 20;

// Writes every buffered line when `dpgate serve` returns, however it returns.
struct FlushLogsAtExit {
  ~FlushLogsAtExit() { spdlog::default_logger()->flush(); }
};

bool ParseInt(const std::string& s, int* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && *out > 0;
}
}  // namespace

int RunServe(const Args& args) {
  std::string config_path;
  proxy::ServerOptions options;
  int max_connections_flag = 0;  // --max-connections, over limits.max_connections
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* what) -> const std::string* {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "dpgate serve: %s needs a value\n%s", what, kUsage);
        return nullptr;
      }
      return &args[++i];
    };
    if (a == "-h" || a == "--help") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "-c" || a == "--config") {
      const auto* v = value("-c");
      if (v == nullptr) return 2;
      config_path = *v;
    } else if (a == "--threads" || a == "--max-connections") {
      const auto* v = value(a.c_str());
      int n = 0;
      if (v == nullptr || !ParseInt(*v, &n)) {
        std::fprintf(stderr, "dpgate serve: %s needs a positive whole number\n", a.c_str());
        return 2;
      }
      (a == "--threads" ? options.io_threads : max_connections_flag) = n;
    } else {
      std::fprintf(stderr, "dpgate serve: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "dpgate serve: missing -c CONFIG\n%s", kUsage);
    return 2;
  }
  auto config = config::LoadConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.error().message.c_str());
    return 1;
  }
  options.max_connections =
      max_connections_flag > 0 ? max_connections_flag : config->limits.max_connections;
  options.limits.max_message = config->limits.max_message_size;
  options.auth_timeout = config->limits.auth_timeout;
  options.idle_timeout = config->limits.idle_timeout;
  // Logs to standard error, as docs/PROXY.md §3 says (standard output stays
  // free for anything a wrapper wants to print), in batches: one write per
  // audit line was ~10 % of passthrough throughput. Warnings and errors are
  // written at once, with every line before them; SIGTERM writes the rest
  // (docs/DESIGN-NOTES.md item 9).
  const FlushLogsAtExit flush_logs;
  auto logger = std::make_shared<spdlog::logger>(
      "dpgate",
      std::make_shared<proxy::BatchedFdSink>(STDERR_FILENO, kLogBatchInterval, kLogMaxBuffered));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  // "%Y-%m-%dT%H:%M:%S.%e%z %l %v", written without spdlog's pattern
  // machinery (log_line_formatter.h).
  spdlog::set_formatter(std::make_unique<proxy::LogLineFormatter>());
  // Schema facts let the rewriter skip per-unit pre-aggregation where a
  // unique privacy unit makes it a no-op (docs/REWRITER.md §8.5). Without
  // them every query takes the full bounded shape: slower, never less
  // private, so a failure here is a warning, not a reason to refuse to start.
  // They are read once: after DDL on a configured table, restart dpgate
  // (docs/PRIVACY.md §2.3).
  auto facts = LoadSchemaFacts(*config, config->upstream.dsn);
  if (facts.ok()) {
    spdlog::info("schema facts: {} unique NOT NULL column(s) on configured tables",
                 facts->unique_column_count());
    options.schema_facts = std::move(facts).value();
  } else {
    spdlog::warn(
        "{}; serving without schema facts (every private query takes the per-unit "
        "bounded shape)",
        facts.error().message);
  }
  auto status = proxy::RunServer(*config, options);
  if (!status.ok()) {
    std::fprintf(stderr, "dpgate serve: %s\n", status.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace dpgate::app
