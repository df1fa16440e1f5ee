// One connection to the upstream PostgreSQL, driven without blocking: libpq
// in non-blocking mode (it handles SCRAM/MD5/trust and TLS as the DSN asks),
// with Asio waiting on its socket. On a plain (unencrypted) connection a
// statement whose answer goes to the client as it is can also be relayed as
// the upstream's own bytes (Relay), without libpq. Private to proxy/.
#pragma once

#include <libpq-fe.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpgate/common/result.h"
#include "dpgate/proxy/wire.h"

namespace dpgate::proxy {

// The result of one statement, in the text format, ready to relay.
struct StatementOutcome {
  std::vector<wire::FieldDescription> fields;  // empty: no rows (e.g. SET)
  bool has_rows = false;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string command_tag;
  std::optional<wire::Diagnostic> error;  // the upstream's ErrorResponse
};

// The values a client bound to an extended-protocol statement, passed to the
// upstream as they came (libpq takes per-parameter formats; §55.2.3).
struct BoundParameters {
  std::vector<uint32_t> types;  // 0: the server infers the type
  std::vector<std::optional<std::string>> values;
  std::vector<int> formats;  // one per value: 0 text, 1 binary
};

// What the upstream says about a statement without running it: the types of
// its parameters and its result columns (empty fields and !has_rows: NoData).
struct StatementDescription {
  std::vector<int32_t> parameter_types;
  std::vector<wire::FieldDescription> fields;
  bool has_rows = false;
  std::optional<wire::Diagnostic> error;  // the upstream's ErrorResponse
};

// What Relay learnt of a statement whose answer it relayed.
struct RelayedStatement {
  std::string command_tag;                // the CommandComplete's tag
  std::optional<wire::Diagnostic> error;  // the upstream's ErrorResponse
};

class UpstreamConnection {
 public:
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // Connects and pins the session: read-only transactions, and a
  // search_path that only dpgate changes.
  static boost::asio::awaitable<Result<std::unique_ptr<UpstreamConnection>>> Connect(
      boost::asio::any_io_executor executor, const std::string& dsn);

  // Runs one SQL text (one statement) with the simple protocol and collects
  // its results. Errors are returned as values: an upstream ErrorResponse is
  // in StatementOutcome::error; a broken connection is an Error.
  boost::asio::awaitable<Result<StatementOutcome>> Execute(const std::string& sql);

  // Runs one statement with bound parameters (the extended protocol's
  // unnamed statement upstream); `result_format` 0 text or 1 binary for every
  // column (libpq cannot ask per column; the session converts).
  boost::asio::awaitable<Result<StatementOutcome>> ExecuteWithParameters(
      const std::string& sql, const BoundParameters& parameters, int result_format);

  // True when Relay may be used: the connection is plain TCP or a Unix
  // socket (libpq owns a TLS or GSS session's bytes) and libpq has nothing
  // outstanding.
  bool CanRelay();

  // Runs one SQL text (one statement) with the simple protocol and appends
  // its answer to `out` as the upstream sent it: RowDescription, DataRow,
  // CommandComplete and EmptyQueryResponse byte for byte, NoticeResponse
  // re-encoded through wire::Diagnostic (the same fields as the libpq path);
  // ParameterStatus and the ReadyForQuery are consumed here. Only for
  // statements whose rows go to the client unchanged (public and catalog
  // statements in the simple query flow); a private aggregate's rows never
  // take this path. On an upstream ErrorResponse, or an Error (connection
  // lost, COPY, a message out of place: the connection is then marked
  // broken), `out` is left as it was and the notices are kept for
  // TakeNotices, as Execute does.
  boost::asio::awaitable<Result<RelayedStatement>> Relay(const std::string& sql,
                                                         wire::BackendWriter& out);

  // Relay in steps, for a caller that drives the reads itself (the session's
  // simple-query path, which then needs no coroutine frame per statement;
  // docs/PROXY.md §1 item 4). Relay above is exactly these steps:
  //   StartRelay: the Query is sent without blocking; false when part of it
  //     waits for room in the socket (then co_await SendUnsent, or write
  //     UnsentQuery() to relay_socket() and hand the outcome to
  //     UnsentWritten).
  //   ContinueRelay: relays every whole message buffered; kNeedRead asks for
  //     one read of relay_socket() into RelayReadBuffer(), handed to
  //     RelayReceived, which continues.
  //   TakeRelayed: once kDone or kLost, what Relay would have returned.
  enum class RelayProgress { kNeedRead, kDone, kLost };
  Result<bool> StartRelay(std::string_view sql, wire::BackendWriter& out);
  boost::asio::awaitable<Status> SendUnsent(wire::BackendWriter& out);
  std::string_view UnsentQuery() const;
  Status UnsentWritten(const boost::system::error_code& ec, wire::BackendWriter& out);
  RelayProgress ContinueRelay(wire::BackendWriter& out);
  boost::asio::generic::stream_protocol::socket& relay_socket() { return *socket_; }
  boost::asio::mutable_buffer RelayReadBuffer();
  RelayProgress RelayReceived(const boost::system::error_code& ec, size_t n,
                              wire::BackendWriter& out);
  Result<RelayedStatement> TakeRelayed();

  // Prepares `sql` as the upstream's unnamed statement and describes it.
  // Nothing runs.
  boost::asio::awaitable<Result<StatementDescription>> Describe(
      const std::string& sql, const std::vector<uint32_t>& parameter_types);

  // The transaction status to report in ReadyForQuery: 'I', 'T' or 'E'.
  char TransactionStatus() const;
  bool broken() const;
  std::string ParameterStatus(const char* name) const;
  int backend_pid() const;
  // A cancel handle for the running query (PQgetCancel); the caller sends it
  // with PQcancel off the I/O threads and frees it with PQfreeCancel.
  PGcancel* MakeCancel() const;

  // Notices the upstream sent (relayed to the client after the statement).
  std::vector<wire::Diagnostic> TakeNotices();

  // ---- For UpstreamPool (upstream_pool.h) ----
  // Brings a used session back to exactly what Connect leaves: ends any
  // transaction, DISCARD ALL (settings, prepared statements, cursors, temp
  // tables, LISTENs, advisory locks), then pins again. An error means the
  // connection must be closed rather than reused.
  boost::asio::awaitable<Status> Reset();
  // Without blocking: true when an idle connection can be handed out. An idle
  // session has nothing to say, so a readable socket (a FATAL from
  // pg_terminate_backend or a shutdown, EOF, an error) means it is gone.
  bool IdleAndHealthy() const;
  // Moves the socket waits to `executor` (the event loop of the next holder);
  // only while no operation is pending. Asio then waits on a new dup().
  void Rehome(const boost::asio::any_io_executor& executor);
  // Drops the Asio side (the dup and the executor) while the connection sits
  // idle in the pool, so an idle connection belongs to no thread; Rehome
  // before the next use.
  void Park();
  const boost::asio::any_io_executor& executor() const { return executor_; }

 private:
  UpstreamConnection(boost::asio::any_io_executor executor, PGconn* conn);
  boost::asio::awaitable<Status> Wait(bool for_write, bool readopt = false);
  // The transaction status libpq saw last, or the one Relay read after it.
  PGTransactionStatusType Xact() const;
  Status AdoptSocket(bool force);
  boost::asio::awaitable<Status> Pin();
  boost::asio::awaitable<Status> FlushOutput();
  // Reads every result of the statement just sent. With `description`, a
  // describe result's parameter types and columns are stored there.
  // Whether libpq's socket can be read without blocking, asked of the
  // kernel directly (level-triggered), not of the edge-triggered reactor.
  bool ReadableNow() const;
  boost::asio::awaitable<Result<StatementOutcome>> CollectResults(
      StatementDescription* description);

  boost::asio::any_io_executor executor_;
  PGconn* conn_;
  // A socket object (not a plain descriptor) so that Relay's reads are Asio
  // read operations: a wait re-arms the descriptor with epoll_ctl each time.
  std::unique_ptr<boost::asio::generic::stream_protocol::socket> socket_;
  int socket_fd_ = -1;  // libpq's descriptor number that socket_ duplicates
  std::vector<wire::Diagnostic> notices_;
  // Set when Relay read a ReadyForQuery libpq never saw; cleared when libpq
  // runs the next statement (and reads its own).
  std::optional<PGTransactionStatusType> relayed_xact_;
  bool relay_broken_ = false;   // Relay lost the protocol's thread: never reuse
  std::vector<char> relay_in_;  // Relay's read buffer, kept between statements
  size_t relay_begin_ = 0;      // relay_in_[relay_begin_, relay_filled_) is unread
  size_t relay_filled_ = 0;
  std::string relay_query_;  // Relay's Query message, kept likewise
  size_t relay_unsent_ = 0;  // relay_query_'s bytes from here wait for SendUnsent
  // The statement being relayed.
  struct RelayState {
    size_t mark = 0;  // the output's size before its answer (truncated back on error)
    RelayedStatement result;
    std::vector<wire::Diagnostic> notices;
    RelayProgress outcome = RelayProgress::kNeedRead;
    std::string lost;  // why the connection was given up (kLost)
  };
  RelayState relay_;
  void RelayLost(wire::BackendWriter& out, std::string why);
};

}  // namespace dpgate::proxy
