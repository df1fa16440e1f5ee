#include "upstream.h"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "speculative_recv.h"

namespace dpgate::proxy {
namespace asio = boost::asio;

namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);
// Relay's read buffer: most answers of relayed statements fit in one read.
constexpr size_t kRelayBuffer = 16384;
// The largest message Relay takes from the upstream: PostgreSQL caps a
// field at 1 GB, and a DataRow carries its length words besides.
constexpr size_t kMaxRelayedMessage = (size_t{1} << 30) + (size_t{1} << 20);

std::string Field(const PGresult* r, int code) {
  const char* v = PQresultErrorField(r, code);
  return v != nullptr ? v : "";
}

wire::Diagnostic DiagnosticFrom(const PGresult* r) {
  wire::Diagnostic d;
  d.severity = Field(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (d.severity.empty()) d.severity = Field(r, PG_DIAG_SEVERITY);
  if (d.severity.empty()) d.severity = "ERROR";
  d.sqlstate = Field(r, PG_DIAG_SQLSTATE);
  if (d.sqlstate.empty()) d.sqlstate = "XX000";
  d.message = Field(r, PG_DIAG_MESSAGE_PRIMARY);
  d.detail = Field(r, PG_DIAG_MESSAGE_DETAIL);
  d.hint = Field(r, PG_DIAG_MESSAGE_HINT);
  const std::string pos = Field(r, PG_DIAG_STATEMENT_POSITION);
  d.position = pos.empty() ? 0 : std::atoi(pos.c_str());
  return d;
}

void CollectNotice(void* arg, const PGresult* r) {
  static_cast<std::vector<wire::Diagnostic>*>(arg)->push_back(DiagnosticFrom(r));
}

// poll(2) of `fd` for reading, without waiting: >0 when a read would not
// block (data, end of stream, an error), 0 when it would, <0 on failure.
// Level-triggered, unlike the reactor's edge-triggered epoll.
int PollForRead(int fd) {
  pollfd p{};
  p.fd = fd;
  p.events = POLLIN | POLLRDHUP;
  return ::poll(&p, 1, 0);
}

std::string ConnectionError(PGconn* conn) {
  std::string m = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

}  // namespace

UpstreamConnection::UpstreamConnection(asio::any_io_executor executor, PGconn* conn)
    : executor_(std::move(executor)), conn_(conn) {
  PQsetNoticeReceiver(conn_, CollectNotice, &notices_);
}

UpstreamConnection::~UpstreamConnection() {
  socket_.reset();  // closes our duplicate only
  PQfinish(conn_);
}

// Asio waits on a dup() of libpq's socket, never on libpq's own descriptor:
// libpq closes its socket by itself when the server goes away, and the number
// can be reused at once by another connection on another thread. Had Asio
// registered libpq's number, deregistering it later would silently remove the
// *new* owner's registration and hang that session. Our duplicate keeps its
// own number until we close it.
Status UpstreamConnection::AdoptSocket(bool force) {
  if (!executor_) return MakeError("08006", "upstream connection is parked in the pool");
  const int fd = PQsocket(conn_);
  if (fd < 0) return MakeError("08006", "upstream connection has no socket");
  if (!force && socket_ && fd == socket_fd_) return Status::Ok();
  socket_.reset();
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return MakeError("08006", "upstream: cannot read the socket's address family");
  }
  const int own = ::dup(fd);
  if (own < 0) return MakeError("08006", "upstream: cannot duplicate the socket");
  auto socket = std::make_unique<asio::generic::stream_protocol::socket>(executor_);
  boost::system::error_code ec;
  socket->assign(asio::generic::stream_protocol(address.ss_family, 0), own, ec);
  if (ec) {
    ::close(own);
    return MakeError("08006", "upstream: cannot watch the socket: " + ec.message());
  }
  socket_ = std::move(socket);
  socket_fd_ = fd;
  return Status::Ok();
}

asio::awaitable<Status> UpstreamConnection::Wait(bool for_write, bool readopt) {
  if (auto st = AdoptSocket(readopt); !st.ok()) co_return st;
  boost::system::error_code ec;
  co_await socket_->async_wait(
      for_write ? asio::socket_base::wait_write : asio::socket_base::wait_read,
      asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return MakeError("08006", "upstream wait failed: " + ec.message());
  co_return Status::Ok();
}

asio::awaitable<Result<std::unique_ptr<UpstreamConnection>>> UpstreamConnection::Connect(
    asio::any_io_executor executor, const std::string& dsn) {
  PGconn* raw = PQconnectStart(dsn.c_str());
  if (raw == nullptr) co_return MakeError("08006", "upstream: out of memory");
  std::unique_ptr<UpstreamConnection> conn(new UpstreamConnection(executor, raw));
  if (PQstatus(raw) == CONNECTION_BAD) {
    co_return MakeError("08006", "upstream connection failed: " + ConnectionError(raw));
  }
  // A deadline for the whole handshake: a server that accepts and then says
  // nothing must not hold the client forever.
  asio::steady_timer deadline(executor, kConnectTimeout);
  bool timed_out = false;
  UpstreamConnection* self = conn.get();
  deadline.async_wait([self, &timed_out](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    if (self->socket_) self->socket_->cancel();
  });
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  while (true) {
    if (poll == PGRES_POLLING_OK) break;
    if (poll == PGRES_POLLING_FAILED) {
      deadline.cancel();
      co_return MakeError("08006", "upstream connection failed: " + ConnectionError(raw));
    }
    // libpq may open a new socket while connecting (another host, an SSL
    // retry), possibly under the same number: take a fresh duplicate each time.
    Status st = co_await conn->Wait(poll == PGRES_POLLING_WRITING, /*readopt=*/true);
    if (!st.ok() || timed_out) {
      deadline.cancel();
      co_return MakeError("08006", timed_out ? "upstream connection timed out" : st.message());
    }
    poll = PQconnectPoll(raw);
  }
  deadline.cancel();
  if (PQsetnonblocking(raw, 1) != 0) {
    co_return MakeError("08006", "upstream: cannot switch to non-blocking mode");
  }
  if (Status pinned = co_await conn->Pin(); !pinned.ok()) co_return pinned.error();
  conn->TakeNotices();
  co_return std::move(conn);
}

// Every upstream transaction is read-only whatever a client sends
// (DESIGN.md §1: a pooled, read-only upstream connection). The search_path
// is pinned to pg_catalog alone: dpgate schema-qualifies every relation it
// forwards, so the path only decides which *functions, types and
// operators* an unqualified name means, and that must never be a
// user-defined one from a writable schema (docs/PROXY.md §1). Connect and
// Reset both run this, so a pooled session is pinned exactly like a new one.
asio::awaitable<Status> UpstreamConnection::Pin() {
  auto pin =
      co_await Execute("SET default_transaction_read_only = on; SET search_path = pg_catalog");
  if (!pin.ok()) co_return pin.error();
  if (pin->error.has_value()) {
    co_return MakeError("08006", "upstream refused the session settings: " + pin->error->message);
  }
  co_return Status::Ok();
}

asio::awaitable<Status> UpstreamConnection::FlushOutput() {
  while (true) {
    const int f = PQflush(conn_);
    if (f == 0) co_return Status::Ok();
    if (f < 0) co_return MakeError("08006", "upstream send failed: " + ConnectionError(conn_));
    Status st = co_await Wait(true);
    if (!st.ok()) co_return st;
  }
}

asio::awaitable<Result<StatementOutcome>> UpstreamConnection::Execute(const std::string& sql) {
  if (PQsendQuery(conn_, sql.c_str()) != 1) {
    co_return MakeError("08006", "upstream send failed: " + ConnectionError(conn_));
  }
  co_return co_await CollectResults(nullptr);
}

asio::awaitable<Result<StatementOutcome>> UpstreamConnection::ExecuteWithParameters(
    const std::string& sql, const BoundParameters& parameters, int result_format) {
  const size_t n = parameters.values.size();
  if (n > 65535 || parameters.formats.size() != n ||
      (!parameters.types.empty() && parameters.types.size() > n)) {
    co_return MakeError("08P01", "bound parameters do not match their formats");
  }
  std::vector<Oid> types(n, 0);
  for (size_t i = 0; i < parameters.types.size(); ++i) types[i] = parameters.types[i];
  std::vector<const char*> values(n, nullptr);
  std::vector<int> lengths(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (parameters.values[i].has_value()) {
      values[i] = parameters.values[i]->data();
      lengths[i] = static_cast<int>(parameters.values[i]->size());
    }
  }
  if (PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(n), types.data(), values.data(),
                        lengths.data(), parameters.formats.data(), result_format) != 1) {
    co_return MakeError("08006", "upstream send failed: " + ConnectionError(conn_));
  }
  co_return co_await CollectResults(nullptr);
}

// GCC 12 reports -Wmismatched-new-delete on this coroutine's frame: Asio's
// awaitable frame has a class-specific operator new and delete, which GCC's
// inliner pairs wrongly with the global ones (a false positive; the frame is
// allocated and freed by the same class operators).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<Result<StatementDescription>> UpstreamConnection::Describe(
    const std::string& sql, const std::vector<uint32_t>& parameter_types) {
  // At most 65535 types: the Parse message counts them in an int16.
  std::vector<Oid> types(parameter_types.begin(), parameter_types.end());
  Result<StatementDescription> result = StatementDescription{};
  if (PQsendPrepare(conn_, "", sql.c_str(), static_cast<int>(types.size()), types.data()) != 1) {
    result = MakeError("08006", "upstream send failed: " + ConnectionError(conn_));
  } else {
    auto prepared = co_await CollectResults(nullptr);
    if (!prepared.ok()) {
      result = prepared.error();
    } else if (prepared->error.has_value()) {
      result->error = prepared->error;
    } else if (PQsendDescribePrepared(conn_, "") != 1) {
      result = MakeError("08006", "upstream send failed: " + ConnectionError(conn_));
    } else {
      auto described = co_await CollectResults(&*result);
      if (!described.ok()) {
        result = described.error();
      } else if (described->error.has_value()) {
        result->error = described->error;
      }
    }
  }
  co_return result;
}
#pragma GCC diagnostic pop

bool UpstreamConnection::CanRelay() {
  if (relay_broken_ || PQstatus(conn_) != CONNECTION_OK) return false;
  // libpq encrypts a TLS or GSS session's bytes itself: only it can talk there.
  if (PQsslInUse(conn_) != 0 || PQgssEncInUse(conn_) != 0) return false;
  // PQisBusy also parses whatever libpq has buffered (a notice that came
  // after the last ReadyForQuery), so that Relay's first byte read is the
  // first byte of its own answer.
  return PQisBusy(conn_) == 0 && Xact() != PQTRANS_ACTIVE;
}

// The framing is the protocol's (§55.7): a type byte, then a length word that
// counts itself and the body. Every length is checked before it is used,
// and anything out of place ends the connection rather than being guessed
// at: the client gets an error, never bytes from the middle of a message.
Result<bool> UpstreamConnection::StartRelay(std::string_view sql, wire::BackendWriter& out) {
  if (Status st = AdoptSocket(false); !st.ok()) return st.error();
  if (sql.size() > kMaxRelayedMessage || sql.find('\0') != std::string_view::npos) {
    return MakeError("54000", "statement cannot be sent upstream: too long or holds a NUL");
  }
  std::string& query = relay_query_;  // its storage is reused
  query.clear();
  query += 'Q';
  const uint32_t length = static_cast<uint32_t>(sql.size() + 5);
  for (int shift = 24; shift >= 0; shift -= 8) query += static_cast<char>((length >> shift) & 0xff);
  query.append(sql.data(), sql.size());
  query += '\0';
  relay_ = RelayState{};
  relay_.mark = out.size();
  relayed_xact_ = PQTRANS_ACTIVE;  // until this statement's ReadyForQuery
  if (relay_in_.size() < kRelayBuffer) relay_in_.resize(kRelayBuffer);
  relay_begin_ = 0;
  relay_filled_ = 0;
  boost::system::error_code ec;
  if (!socket_->non_blocking()) socket_->non_blocking(true, ec);
  // Usually all of it fits in the socket's buffer at once.
  const size_t sent = ec ? 0 : socket_->send(asio::buffer(query.data(), query.size()), 0, ec);
  if (ec && ec != asio::error::would_block) {
    RelayLost(out, "upstream send failed: " + ec.message());
    return MakeError("08006", relay_.lost);
  }
  relay_unsent_ = ec ? 0 : sent;
  return relay_unsent_ == query.size();
}

std::string_view UpstreamConnection::UnsentQuery() const {
  return std::string_view(relay_query_).substr(relay_unsent_);
}

Status UpstreamConnection::UnsentWritten(const boost::system::error_code& ec,
                                         wire::BackendWriter& out) {
  if (ec) {
    RelayLost(out, "upstream send failed: " + ec.message());
    return MakeError("08006", relay_.lost);
  }
  relay_unsent_ = relay_query_.size();
  return Status::Ok();
}

void UpstreamConnection::RelayLost(wire::BackendWriter& out, std::string why) {
  relay_broken_ = true;
  out.Truncate(relay_.mark);
  relay_.lost = std::move(why);
  relay_.outcome = RelayProgress::kLost;
}

UpstreamConnection::RelayProgress UpstreamConnection::ContinueRelay(wire::BackendWriter& out) {
  while (true) {
    const std::string_view unread(relay_in_.data() + relay_begin_, relay_filled_ - relay_begin_);
    auto next = wire::NextBackendMessage(unread, kMaxRelayedMessage);
    if (!next.ok()) {
      RelayLost(out, "the upstream sent a message with an invalid length");
      return RelayProgress::kLost;
    }
    if (!next->has_value()) break;
    const char type = (*next)->type;
    const std::string_view message = (*next)->whole;
    const std::string_view body = (*next)->body;
    relay_begin_ += message.size();
    RelayedStatement& result = relay_.result;
    switch (type) {
      case 'T':  // RowDescription
      case 'D':  // DataRow
      case 'I':  // EmptyQueryResponse
        if (!result.error.has_value()) out.Relayed(message);
        break;
      case 'C': {  // CommandComplete
        const size_t nul = body.find('\0');
        if (nul == std::string_view::npos) {
          RelayLost(out, "the upstream sent a malformed tag");
          return RelayProgress::kLost;
        }
        if (!result.error.has_value()) {
          out.Relayed(message);
          result.command_tag.assign(body.data(), nul);
        }
        break;
      }
      case 'N':    // NoticeResponse
      case 'E': {  // ErrorResponse
        auto diagnostic = wire::ParseDiagnostic(body);
        if (!diagnostic.ok()) {
          RelayLost(out, "the upstream sent a malformed error or notice");
          return RelayProgress::kLost;
        }
        if (type == 'E') {
          if (!result.error.has_value()) result.error = std::move(*diagnostic);
        } else {
          if (!result.error.has_value()) out.NoticeResponse(*diagnostic);
          relay_.notices.push_back(std::move(*diagnostic));
        }
        break;
      }
      case 'S':  // ParameterStatus: not relayed (as on the libpq path)
      case 'A':  // NotificationResponse: LISTEN is refused
        break;
      case 'Z': {  // ReadyForQuery: this statement's answer is complete
        if (body.size() != 1) {
          RelayLost(out, "the upstream sent a malformed ReadyForQuery");
          return RelayProgress::kLost;
        }
        switch (body[0]) {
          case 'I':
            relayed_xact_ = PQTRANS_IDLE;
            break;
          case 'T':
            relayed_xact_ = PQTRANS_INTRANS;
            break;
          case 'E':
            relayed_xact_ = PQTRANS_INERROR;
            break;
          default:
            RelayLost(out, "the upstream sent an unknown transaction status");
            return RelayProgress::kLost;
        }
        // Anything after it arrived unasked: this connection is not
        // reused (an idle session has nothing to say; see IdleAndHealthy).
        if (relay_begin_ != relay_filled_) {
          relay_broken_ = true;
        } else {
          // The backend is idle until dpgate's next Query, whose answer (or
          // reset) is a new arrival: that read needs no recv of its own
          // first (speculative_recv.h says why this is safe here only).
          SkipNextSpeculativeRecv(*socket_);
        }
        if (relay_in_.size() > 4 * kRelayBuffer) std::vector<char>(kRelayBuffer).swap(relay_in_);
        if (result.error.has_value()) {
          out.Truncate(relay_.mark);  // as on the libpq path: the error alone
          notices_.insert(notices_.end(), relay_.notices.begin(), relay_.notices.end());
        }
        relay_.outcome = RelayProgress::kDone;
        return RelayProgress::kDone;
      }
      case 'G':
      case 'H':
      case 'W':
        RelayLost(out, "upstream entered COPY mode, which dpgate does not relay");
        return RelayProgress::kLost;
      default:
        RelayLost(out, std::string("the upstream sent an unexpected message type '") + type + "'");
        return RelayProgress::kLost;
    }
  }
  // Keep the unread part at the front, with room for a whole message.
  if (relay_begin_ > 0) {
    std::memmove(relay_in_.data(), relay_in_.data() + relay_begin_, relay_filled_ - relay_begin_);
    relay_filled_ -= relay_begin_;
    relay_begin_ = 0;
  }
  size_t whole = 0;
  (void)wire::NextBackendMessage(std::string_view(relay_in_.data(), relay_filled_),
                                 kMaxRelayedMessage, &whole);
  if (whole > relay_in_.size()) relay_in_.resize(whole);
  if (relay_filled_ == relay_in_.size()) relay_in_.resize(relay_in_.size() * 2);
  return RelayProgress::kNeedRead;
}

asio::mutable_buffer UpstreamConnection::RelayReadBuffer() {
  return asio::buffer(relay_in_.data() + relay_filled_, relay_in_.size() - relay_filled_);
}

UpstreamConnection::RelayProgress UpstreamConnection::RelayReceived(
    const boost::system::error_code& ec, size_t n, wire::BackendWriter& out) {
  if (ec) {
    RelayLost(out, "upstream connection lost: " + ec.message());
    return RelayProgress::kLost;
  }
  relay_filled_ += n;
  return ContinueRelay(out);
}

Result<RelayedStatement> UpstreamConnection::TakeRelayed() {
  if (relay_.outcome != RelayProgress::kDone) {
    return MakeError("08006", relay_.lost.empty() ? "relay not finished" : relay_.lost);
  }
  return std::move(relay_.result);
}

// GCC 12's false -Wmismatched-new-delete on Asio coroutine frames (see
// Describe below) fires here too.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<Status> UpstreamConnection::SendUnsent(wire::BackendWriter& out) {
  const std::string_view rest = UnsentQuery();
  boost::system::error_code ec;
  co_await asio::async_write(*socket_, asio::buffer(rest.data(), rest.size()),
                             asio::redirect_error(asio::use_awaitable, ec));
  co_return UnsentWritten(ec, out);
}

asio::awaitable<Result<RelayedStatement>> UpstreamConnection::Relay(const std::string& sql,
                                                                    wire::BackendWriter& out) {
  auto sent = StartRelay(sql, out);
  if (!sent.ok()) co_return sent.error();
  if (!*sent) {
    if (Status st = co_await SendUnsent(out); !st.ok()) co_return st.error();
  }
  RelayProgress progress = ContinueRelay(out);
  while (progress == RelayProgress::kNeedRead) {
    boost::system::error_code ec;
    const size_t n = co_await socket_->async_read_some(
        RelayReadBuffer(), asio::redirect_error(asio::use_awaitable, ec));
    progress = RelayReceived(ec, n, out);
  }
  co_return TakeRelayed();
}
#pragma GCC diagnostic pop

namespace {

std::vector<wire::FieldDescription> FieldsOf(const PGresult* r) {
  std::vector<wire::FieldDescription> fields;
  const int nf = PQnfields(r);
  for (int i = 0; i < nf; ++i) {
    wire::FieldDescription f;
    f.name = PQfname(r, i);
    f.table_oid = static_cast<int32_t>(PQftable(r, i));
    f.column_attr = static_cast<int16_t>(PQftablecol(r, i));
    f.type_oid = static_cast<int32_t>(PQftype(r, i));
    f.type_size = static_cast<int16_t>(PQfsize(r, i));
    f.type_modifier = PQfmod(r, i);
    f.format = static_cast<int16_t>(PQfformat(r, i));
    fields.push_back(std::move(f));
  }
  return fields;
}

}  // namespace

bool UpstreamConnection::ReadableNow() const {
  const int fd = PQsocket(conn_);
  if (fd < 0) return true;  // PQconsumeInput reports the lost connection
  // Any event (data, end of stream, an error) means a read will not block;
  // a failed poll falls back to waiting for the reactor.
  return PollForRead(fd) > 0;
}

asio::awaitable<Result<StatementOutcome>> UpstreamConnection::CollectResults(
    StatementDescription* description) {
  relayed_xact_.reset();  // libpq reads this statement's ReadyForQuery itself
  if (Status st = co_await FlushOutput(); !st.ok()) co_return st.error();
  StatementOutcome out;
  // Before the first read the answer can only come as a new arrival, which
  // the reactor reports; after a read libpq may have left bytes behind.
  bool read_once = false;
  while (true) {
    while (PQisBusy(conn_) != 0) {
      // Asio's reactor is edge-triggered and reports a socket once per
      // arrival, but libpq may stop reading before the socket is drained
      // (pqReadData returns after one read that filled its buffer). An
      // answer that arrived whole before the last epoll_wait would then
      // never be reported again: ask the kernel, level-triggered, first.
      if (!read_once || !ReadableNow()) {
        Status st = co_await Wait(false);
        if (!st.ok()) co_return st.error();
      }
      read_once = true;
      if (PQconsumeInput(conn_) != 1) {
        co_return MakeError("08006", "upstream connection lost: " + ConnectionError(conn_));
      }
    }
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) break;
    const ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR) {
      if (!out.error.has_value()) out.error = DiagnosticFrom(r);
    } else if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      // The rewriter refuses COPY; if one still got here, end it and fail.
      PQclear(r);
      co_return MakeError("08006", "upstream entered COPY mode, which dpgate does not relay");
    } else if (!out.error.has_value()) {
      out.command_tag = PQcmdStatus(r);
      if (description != nullptr) {
        for (int i = 0; i < PQnparams(r); ++i) {
          description->parameter_types.push_back(static_cast<int32_t>(PQparamtype(r, i)));
        }
        description->fields = FieldsOf(r);
        description->has_rows = PQnfields(r) > 0;
      } else if (status == PGRES_TUPLES_OK) {
        out.has_rows = true;
        out.fields = FieldsOf(r);
        out.rows.clear();
        const int nf = PQnfields(r);
        const int nr = PQntuples(r);
        out.rows.reserve(static_cast<size_t>(nr));
        for (int row = 0; row < nr; ++row) {
          std::vector<std::optional<std::string>> values;
          values.reserve(static_cast<size_t>(nf));
          for (int i = 0; i < nf; ++i) {
            if (PQgetisnull(r, row, i) != 0) {
              values.emplace_back(std::nullopt);
            } else {
              values.emplace_back(
                  std::string(PQgetvalue(r, row, i), static_cast<size_t>(PQgetlength(r, row, i))));
            }
          }
          out.rows.push_back(std::move(values));
        }
      }
    }
    PQclear(r);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    co_return MakeError("08006", "upstream connection lost: " + ConnectionError(conn_));
  }
  co_return out;
}

PGTransactionStatusType UpstreamConnection::Xact() const {
  return relayed_xact_.has_value() ? *relayed_xact_ : PQtransactionStatus(conn_);
}

char UpstreamConnection::TransactionStatus() const {
  switch (Xact()) {
    case PQTRANS_INTRANS:
      return 'T';
    case PQTRANS_INERROR:
      return 'E';
    default:
      return 'I';
  }
}

bool UpstreamConnection::broken() const {
  return relay_broken_ || PQstatus(conn_) == CONNECTION_BAD;
}

std::string UpstreamConnection::ParameterStatus(const char* name) const {
  const char* v = PQparameterStatus(conn_, name);
  return v != nullptr ? v : "";
}

int UpstreamConnection::backend_pid() const {
  return PQbackendPID(conn_);
}

PGcancel* UpstreamConnection::MakeCancel() const {
  return PQgetCancel(conn_);
}

std::vector<wire::Diagnostic> UpstreamConnection::TakeNotices() {
  return std::exchange(notices_, {});
}

asio::awaitable<Status> UpstreamConnection::Reset() {
  if (broken()) co_return MakeError("08006", "upstream connection lost");
  const PGTransactionStatusType before = Xact();
  // A statement still running (its holder went away mid-query) would have to
  // be drained or cancelled first; closing the connection is simpler and rare.
  if (before == PQTRANS_ACTIVE || before == PQTRANS_UNKNOWN) {
    co_return MakeError("08006", "upstream connection is busy; it is closed instead of reused");
  }
  // DISCARD ALL refuses to run inside a transaction block, and the holder may
  // have left one open (or failed).
  if (before != PQTRANS_IDLE) {
    auto rolled_back = co_await Execute("ROLLBACK");
    if (!rolled_back.ok()) co_return rolled_back.error();
    if (rolled_back->error.has_value()) co_return MakeError("08006", rolled_back->error->message);
  }
  // Its own message: a multi-statement query is an implicit transaction block.
  auto discarded = co_await Execute("DISCARD ALL");
  if (!discarded.ok()) co_return discarded.error();
  if (discarded->error.has_value()) co_return MakeError("08006", discarded->error->message);
  // DISCARD ALL ran RESET ALL, which undid the pins too.
  if (Status pinned = co_await Pin(); !pinned.ok()) co_return pinned;
  notices_.clear();
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    co_return MakeError("08006", "upstream session did not return to idle after the reset");
  }
  co_return Status::Ok();
}

bool UpstreamConnection::IdleAndHealthy() const {
  if (broken() || PQstatus(conn_) != CONNECTION_OK || Xact() != PQTRANS_IDLE) return false;
  const int fd = PQsocket(conn_);
  if (fd < 0) return false;
  // Any event, or a failed poll, and the connection is not trusted: closing
  // a good one costs a reconnect, reusing a dead one costs a client's query.
  return PollForRead(fd) == 0;
}

void UpstreamConnection::Rehome(const asio::any_io_executor& executor) {
  if (executor_ == executor) return;
  socket_.reset();
  socket_fd_ = -1;
  executor_ = executor;
}

void UpstreamConnection::Park() {
  socket_.reset();
  socket_fd_ = -1;
  executor_ = asio::any_io_executor();
}

}  // namespace dpgate::proxy
