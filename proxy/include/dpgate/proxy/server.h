// The dpgate server: accepts PostgreSQL clients, authenticates analysts, and
// runs every statement through rewriter -> accountant -> upstream -> release
// (DESIGN.md §1). Boost.Asio with C++20 coroutines on a fixed pool of I/O
// threads; nothing blocking runs on them (the ledger has its own workers).
#pragma once

#include <chrono>
#include <functional>

#include "dpgate/common/result.h"
#include "dpgate/config/config.h"
#include "dpgate/proxy/wire.h"
#include "dpgate/rewriter/schema_facts.h"

namespace dpgate::proxy {

struct ServerOptions {
  int io_threads = 0;  // 0: one per core
  // The config's `limits` (docs/CONFIG.md); `dpgate serve` copies them here.
  int max_connections = 1000;  // beyond this, new clients get FATAL 53300
  // From connect to ReadyForQuery, the TLS handshake included (FATAL 57014).
  std::chrono::seconds auth_timeout{30};
  // Waiting for the client's next message (FATAL 57P05); 0: no limit.
  std::chrono::seconds idle_timeout{0};
  std::chrono::seconds shutdown_grace{30};
  wire::Limits limits;
  int ledger_workers = 4;
  // Unique NOT NULL columns read from the upstream catalog at start: they let
  // the rewriter emit the cheaper per-row shape (docs/REWRITER.md §8.5). Empty
  // (the default, and the fallback when they cannot be read) is always safe.
  rewriter::SchemaFacts schema_facts;
  // Called once the listening socket is bound (tests wait for it).
  std::function<void(uint16_t port)> on_listening;
};

// Runs until SIGTERM or SIGINT: then stops accepting, lets statements in
// flight finish (up to shutdown_grace), and returns. Errors at start (port in
// use, TLS files unreadable, ledger schema cannot be migrated) are returned
// before anything is served.
Status RunServer(const config::Config& config, const ServerOptions& options);

}  // namespace dpgate::proxy
