#include "upstream_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <mutex>

namespace dpgate::proxy {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace pool_detail {

namespace {

// The ParameterStatus names a PostgreSQL 15 server reports at startup that
// describe the server rather than the role (is_superuser and
// session_authorization are the upstream role's and must not be relayed).
constexpr const char* kServerParameterNames[] = {"server_version",
                                                 "server_encoding",
                                                 "client_encoding",
                                                 "DateStyle",
                                                 "TimeZone",
                                                 "IntervalStyle",
                                                 "integer_datetimes",
                                                 "standard_conforming_strings",
                                                 "application_name",
                                                 "in_hot_standby",
                                                 "default_transaction_read_only"};

}  // namespace

// One queued Acquire. The granting thread fills it under the pool's mutex and
// then cancels `timer` on the waiter's own executor, which wakes it.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
  bool granted = false;                      // guarded by PoolState::mutex_
  std::shared_ptr<UpstreamConnection> conn;  // granted null: a free slot to open one in
  std::optional<Error> error;                // granted with an error: the pool closed
};

// The pool's shared state. Leases and background resets hold it by
// shared_ptr, so a connection returned after UpstreamPool is gone still finds
// it (and is closed, the pool being closed).
class PoolState : public std::enable_shared_from_this<PoolState> {
 public:
  PoolState(const asio::any_io_executor& executor, const UpstreamPoolOptions& options)
      : options_(options), strand_(asio::make_strand(executor)) {}

  void StartReaper() {
    if (options_.idle_timeout.count() <= 0) return;
    auto self = shared_from_this();
    asio::co_spawn(
        strand_, [self]() -> asio::awaitable<void> { co_await self->Reap(); }, asio::detached);
  }

  asio::awaitable<Result<UpstreamLease>> Acquire();
  asio::awaitable<Result<ServerParameters>> GetServerParameters();

  std::optional<ServerParameters> CachedServerParameters() const {
    std::lock_guard lock(mutex_);
    return parameters_;
  }

  UpstreamPoolStats Stats() const {
    std::lock_guard lock(mutex_);
    UpstreamPoolStats s;
    s.open = open_;
    s.idle = static_cast<int>(idle_.size());
    s.waiting = static_cast<int>(waiters_.size());
    return s;
  }

  // From a lease: reset in the background on the holder's executor, or close.
  void Return(std::shared_ptr<UpstreamConnection> conn, bool discard) {
    if (!conn) return;
    bool closed;
    {
      std::lock_guard lock(mutex_);
      closed = closed_;
    }
    if (discard || closed || conn->broken()) {
      conn.reset();  // closed before its slot is reused: never max_size + 1 backends
      FreeSlot();
      return;
    }
    auto self = shared_from_this();
    const asio::any_io_executor executor = conn->executor();
    asio::co_spawn(
        executor, [self, conn]() mutable -> asio::awaitable<void> { co_await self->Recycle(conn); },
        asio::detached);
  }

  void Close() {
    std::deque<std::shared_ptr<Waiter>> waiters;
    std::deque<Idle> idle;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      closed_ = true;
      waiters.swap(waiters_);
      idle.swap(idle_);
      open_ -= static_cast<int>(idle.size());
      for (auto& w : waiters) {
        w->granted = true;
        w->error = MakeError("57P01", "dpgate is shutting down");
      }
    }
    for (auto& w : waiters) Wake(w);
    idle.clear();  // parked connections: no executor, closed from any thread
    auto self = shared_from_this();
    asio::post(strand_, [self] {
      if (self->reaper_timer_ != nullptr) self->reaper_timer_->cancel();
    });
  }

 private:
  struct Idle {
    std::shared_ptr<UpstreamConnection> conn;
    Clock::time_point since;
  };

  static void Wake(const std::shared_ptr<Waiter>& w) {
    asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
  }

  // A slot became free (a connection closed, or an open failed): the first
  // waiter may open a connection in it, else it is given back.
  void FreeSlot() {
    std::shared_ptr<Waiter> w;
    {
      std::lock_guard lock(mutex_);
      if (!closed_ && !waiters_.empty()) {
        w = std::move(waiters_.front());
        waiters_.pop_front();
        w->granted = true;
      } else {
        --open_;
      }
    }
    if (w) Wake(w);
  }

  // A reset, parked connection: to the first waiter, else idle.
  void Recycled(std::shared_ptr<UpstreamConnection> conn) {
    std::shared_ptr<Waiter> w;
    {
      std::lock_guard lock(mutex_);
      if (closed_) {
        --open_;
      } else if (!waiters_.empty()) {
        w = std::move(waiters_.front());
        waiters_.pop_front();
        w->granted = true;
        w->conn = std::move(conn);
      } else {
        idle_.push_back(Idle{std::move(conn), Clock::now()});
      }
    }
    if (w) Wake(w);
    // A closed pool's connection is closed here, outside the lock.
  }

  asio::awaitable<void> Recycle(std::shared_ptr<UpstreamConnection>& conn) {
    Status reset = co_await conn->Reset();
    if (!reset.ok()) {
      spdlog::warn("upstream pool: closing a connection whose reset failed ({})",
                   reset.error().code);
      conn.reset();
      FreeSlot();
      co_return;
    }
    conn->Park();
    Recycled(std::move(conn));
  }

  asio::awaitable<void> Reap();

  const UpstreamPoolOptions options_;
  const asio::strand<asio::any_io_executor> strand_;  // the reaper's
  asio::steady_timer* reaper_timer_ = nullptr;        // touched on strand_ only

  mutable std::mutex mutex_;
  int open_ = 0;  // guarded: slots taken (idle, lent, opening, resetting)
  // Guarded. Returned at the back and lent from the back (the warmest), so
  // the front has been idle the longest.
  std::deque<Idle> idle_;
  std::deque<std::shared_ptr<Waiter>> waiters_;  // guarded; FIFO
  bool closed_ = false;                          // guarded
  std::optional<ServerParameters> parameters_;   // guarded
};

asio::awaitable<Result<UpstreamLease>> PoolState::Acquire() {
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  std::shared_ptr<UpstreamConnection> conn;
  while (!conn) {
    bool open_new = false;
    std::shared_ptr<Waiter> waiter;
    {
      std::lock_guard lock(mutex_);
      if (closed_) co_return MakeError("57P01", "dpgate is shutting down");
      // Queued waiters go first: a newcomer never overtakes them.
      if (waiters_.empty() && !idle_.empty()) {
        conn = std::move(idle_.back().conn);
        idle_.pop_back();
      } else if (waiters_.empty() && open_ < options_.max_size) {
        ++open_;
        open_new = true;
      } else {
        waiter = std::make_shared<Waiter>(executor);
        waiter->timer.expires_after(options_.acquire_timeout);
        waiters_.push_back(waiter);
      }
    }
    if (conn) {
      if (conn->IdleAndHealthy()) break;
      // Killed while idle (pg_terminate_backend, an upstream restart):
      // replace it.
      spdlog::info("upstream pool: replacing a connection that broke while idle");
      conn.reset();
      FreeSlot();
      continue;
    }
    if (waiter) {
      boost::system::error_code ec;
      co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      std::lock_guard lock(mutex_);
      if (!waiter->granted) {
        waiters_.erase(std::find(waiters_.begin(), waiters_.end(), waiter));
        co_return MakeError("53300", "all " + std::to_string(options_.max_size) +
                                         " upstream connections are in use; try again or raise "
                                         "upstream.pool_size");
      }
      if (waiter->error.has_value()) co_return *waiter->error;
      if (waiter->conn) {
        conn = std::move(waiter->conn);  // reset a moment ago
        break;
      }
      open_new = true;  // handed a free slot
    }
    if (open_new) {
      auto opened = co_await UpstreamConnection::Connect(executor, options_.dsn);
      if (!opened.ok()) {
        FreeSlot();
        co_return opened.error();
      }
      conn = std::move(*opened);
      ServerParameters parameters;
      for (const char* name : kServerParameterNames) {
        std::string value = conn->ParameterStatus(name);
        if (!value.empty()) parameters.emplace_back(name, std::move(value));
      }
      std::lock_guard lock(mutex_);
      parameters_ = std::move(parameters);
    }
  }
  conn->Rehome(executor);
  co_return UpstreamLease(shared_from_this(), std::move(conn));
}

asio::awaitable<Result<ServerParameters>> PoolState::GetServerParameters() {
  if (auto cached = CachedServerParameters(); cached.has_value()) co_return *cached;
  auto lease = co_await Acquire();
  if (!lease.ok()) co_return lease.error();
  if (auto cached = CachedServerParameters(); cached.has_value()) co_return *cached;
  co_return MakeError("08006", "the upstream reported no server parameters");
}

asio::awaitable<void> PoolState::Reap() {
  asio::steady_timer timer(strand_);
  reaper_timer_ = &timer;
  // Checking a few times per timeout keeps a connection's idle life within
  // 1.25 × idle_timeout; each check is a lock and a look at the oldest.
  const auto period = std::clamp<std::chrono::milliseconds>(
      options_.idle_timeout / 4, std::chrono::milliseconds(10), std::chrono::seconds(1));
  while (true) {
    timer.expires_after(period);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    std::vector<std::shared_ptr<UpstreamConnection>> expired;
    {
      std::lock_guard lock(mutex_);
      if (closed_) break;
      const auto now = Clock::now();
      while (!idle_.empty() && open_ > options_.min_size &&
             now - idle_.front().since >= options_.idle_timeout) {
        expired.push_back(std::move(idle_.front().conn));
        idle_.pop_front();
        --open_;
      }
    }
    // Parked connections, closed outside the lock.
  }
  reaper_timer_ = nullptr;
}

}  // namespace pool_detail

// ---- UpstreamLease ----------------------------------------------------------

UpstreamLease::UpstreamLease(std::shared_ptr<pool_detail::PoolState> pool,
                             std::shared_ptr<UpstreamConnection> conn)
    : pool_(std::move(pool)), conn_(std::move(conn)) {}

UpstreamLease& UpstreamLease::operator=(UpstreamLease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = std::move(other.pool_);
    conn_ = std::move(other.conn_);
  }
  return *this;
}

void UpstreamLease::Release() {
  if (pool_) pool_->Return(std::move(conn_), /*discard=*/false);
  pool_.reset();
  conn_.reset();
}

void UpstreamLease::Discard() {
  if (pool_) pool_->Return(std::move(conn_), /*discard=*/true);
  pool_.reset();
  conn_.reset();
}

// ---- UpstreamPool -----------------------------------------------------------

UpstreamPool::UpstreamPool(const asio::any_io_executor& executor,
                           const UpstreamPoolOptions& options)
    : mode_(options.mode), state_(std::make_shared<pool_detail::PoolState>(executor, options)) {
  state_->StartReaper();
}

UpstreamPool::~UpstreamPool() {
  Close();
}

asio::awaitable<Result<UpstreamLease>> UpstreamPool::Acquire() {
  co_return co_await state_->Acquire();
}

std::optional<ServerParameters> UpstreamPool::CachedServerParameters() const {
  return state_->CachedServerParameters();
}

asio::awaitable<Result<ServerParameters>> UpstreamPool::GetServerParameters() {
  co_return co_await state_->GetServerParameters();
}

bool UpstreamPool::ShouldReleaseAfterStatement(const UpstreamLease& lease) const {
  if (!lease) return false;
  if (lease->broken()) return true;
  return mode_ == PoolMode::kTransaction && lease->TransactionStatus() == 'I';
}

UpstreamPoolStats UpstreamPool::Stats() const {
  return state_->Stats();
}

void UpstreamPool::Close() {
  state_->Close();
}

}  // namespace dpgate::proxy
