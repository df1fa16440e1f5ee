// The ledger for the asynchronous proxy: charging never blocks the caller's
// thread. A fixed pool of worker threads, each with its own ledger connection,
// takes requests from one bounded queue; a worker charges everything waiting
// (up to a batch limit) in one transaction (group commit), so throughput grows
// with load while each request keeps its own budget check and its own chain
// row. A charge is committed before its completion reports success.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "dpgate/accountant/ledger.h"

namespace dpgate::accountant {

struct AsyncLedgerOptions {
  LedgerOptions ledger;          // each worker opens its own connection with these
  int workers = 4;               // threads = connections
  size_t queue_capacity = 4096;  // requests waiting; beyond this, "ledger busy"
  size_t max_batch = 64;         // requests charged in one transaction
  // After a failed connection attempt a worker fails requests immediately for
  // this long instead of trying again for each one (fail fast, fail closed).
  std::chrono::milliseconds reconnect_backoff{500};
};

class AsyncLedger {
 public:
  using Done = std::function<void(Result<ChargeReceipt>)>;

  // Starts the workers. Connections are opened by the workers, lazily, and
  // reopened after they break; so Start succeeds even when the ledger is down
  // (every charge then fails closed with "ledger.unavailable").
  static Result<std::unique_ptr<AsyncLedger>> Start(AsyncLedgerOptions options);

  // Drains: requests already queued are charged, then the workers stop.
  ~AsyncLedger();
  AsyncLedger(const AsyncLedger&) = delete;
  AsyncLedger& operator=(const AsyncLedger&) = delete;

  // Queues a charge. `done` runs exactly once: normally on a worker thread
  // (the proxy posts it back to its own executor); but when the request is
  // not queued at all (queue full: "ledger.busy"; shutting down; invalid) it
  // runs on the caller's thread before ChargeAsync returns. `done` must not
  // block for long: it holds up that worker.
  void ChargeAsync(ChargeRequest request, Done done);

  // Stops accepting requests, charges those already queued, joins the workers.
  // With drain=false, queued requests fail with "ledger.unavailable" instead.
  void Shutdown(bool drain = true);

  size_t queued() const;

 private:
  struct Impl;
  explicit AsyncLedger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpgate::accountant
