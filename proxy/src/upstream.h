// One connection to the upstream PostgreSQL, driven without blocking: libpq
// in non-blocking mode (it handles SCRAM/MD5/trust and TLS as the DSN asks),
// with Asio waiting on its socket. Private to proxy/.
#pragma once

#include <libpq-fe.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>
#include <optional>
#include <string>
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

 private:
  UpstreamConnection(boost::asio::any_io_executor executor, PGconn* conn);
  boost::asio::awaitable<Status> Wait(bool for_write, bool readopt = false);
  Status AdoptSocket(bool force);

  boost::asio::any_io_executor executor_;
  PGconn* conn_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> socket_;
  int socket_fd_ = -1;  // libpq's descriptor number that socket_ duplicates
  std::vector<wire::Diagnostic> notices_;
};

}  // namespace dpgate::proxy
