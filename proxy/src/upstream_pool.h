// A bounded pool of upstream connections shared by every session (DESIGN.md
// §1: "a pooled, read-only upstream connection"). Private to proxy/.
//
// - At most `max_size` connections exist (idle, lent, being opened or being
//   reset); beyond that, Acquire waits in FIFO order up to `acquire_timeout`
//   and then fails with 53300.
// - A returned connection is reset (UpstreamConnection::Reset: DISCARD ALL
//   and the pins again) in the background, then handed to the next waiter or
//   kept idle. A broken connection, or one whose reset fails, is closed and
//   its slot freed, so the next Acquire opens a new one: an upstream restart
//   costs errors while it is down, never the process.
// - Thread-safe. Call Acquire from a coroutine whose executor never runs two
//   handlers at once (each session's is one I/O thread's event loop): the
//   connection is re-homed to that executor, so its socket is only ever
//   waited on by its holder.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dpgate/common/result.h"
#include "upstream.h"

namespace dpgate::proxy {

enum class PoolMode {
  kSession,      // a client keeps its connection until it disconnects
  kTransaction,  // a client gives it back whenever it is outside a transaction
};

struct UpstreamPoolOptions {
  std::string dsn;
  int max_size = 16;  // upstream.pool_size
  std::chrono::milliseconds acquire_timeout{10000};
  PoolMode mode = PoolMode::kSession;
  // Idle connections are closed after `idle_timeout` (zero: never) while
  // more than `min_size` connections are open.
  std::chrono::milliseconds idle_timeout{0};
  int min_size = 0;
};

struct UpstreamPoolStats {
  int open = 0;     // every slot taken: idle, lent, opening or resetting
  int idle = 0;     // ready to hand out
  int waiting = 0;  // Acquire calls queued for a connection
};

// Server-wide ParameterStatus values as the upstream reported them, in the
// order a client is told them at startup; names the upstream did not report
// are left out.
using ServerParameters = std::vector<std::pair<std::string, std::string>>;

namespace pool_detail {
class PoolState;
}

// One connection lent by the pool. Move-only; returning it (Release, or the
// destructor) never blocks: the reset runs in the background.
class UpstreamLease {
 public:
  UpstreamLease() = default;
  UpstreamLease(UpstreamLease&& other) noexcept = default;
  UpstreamLease& operator=(UpstreamLease&& other) noexcept;
  UpstreamLease(const UpstreamLease&) = delete;
  UpstreamLease& operator=(const UpstreamLease&) = delete;
  ~UpstreamLease() { Release(); }

  UpstreamConnection* get() const { return conn_.get(); }
  UpstreamConnection* operator->() const { return conn_.get(); }
  UpstreamConnection& operator*() const { return *conn_; }
  explicit operator bool() const { return conn_ != nullptr; }

  // Gives the connection back: it is reset, then lent again. Idempotent.
  void Release();
  // Closes the connection instead (its session state is unknown) and frees
  // its slot.
  void Discard();

 private:
  friend class pool_detail::PoolState;
  UpstreamLease(std::shared_ptr<pool_detail::PoolState> pool,
                std::shared_ptr<UpstreamConnection> conn);

  std::shared_ptr<pool_detail::PoolState> pool_;
  std::shared_ptr<UpstreamConnection> conn_;
};

class UpstreamPool {
 public:
  // `executor` runs the idle-connection reaper (when idle_timeout > 0); any
  // executor of the I/O context will do.
  UpstreamPool(const boost::asio::any_io_executor& executor, const UpstreamPoolOptions& options);
  ~UpstreamPool();  // Close()
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // An idle connection (checked not to be broken), else a new one while fewer
  // than max_size exist, else the first to be returned, waiting FIFO up to
  // acquire_timeout. Errors: 53300 when the wait times out, the connect error
  // (08006) when the upstream cannot be reached, 57P01 once closed.
  boost::asio::awaitable<Result<UpstreamLease>> Acquire();

  // What to tell a client at startup without holding a connection: cached
  // from the newest connection the pool opened (refreshed at every open, so
  // an upgraded upstream is seen after its restart). The awaitable form
  // opens (and returns) one connection if none was ever opened.
  std::optional<ServerParameters> CachedServerParameters() const;
  boost::asio::awaitable<Result<ServerParameters>> GetServerParameters();

  // Whether the holder should give `lease` back now that a statement has
  // finished: always when the connection broke; in transaction pooling, also
  // whenever the session is outside a transaction block (status 'I').
  bool ShouldReleaseAfterStatement(const UpstreamLease& lease) const;
  PoolMode mode() const { return mode_; }

  UpstreamPoolStats Stats() const;

  // Fails waiters (57P01) and later Acquires, closes idle connections, and
  // closes lent ones when they come back. Idempotent.
  void Close();

 private:
  PoolMode mode_;
  std::shared_ptr<pool_detail::PoolState> state_;
};

}  // namespace dpgate::proxy
