#include "dpgate/proxy/server.h"

#include <openssl/rand.h>
#include <sched.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "client_deadline.h"
#include "dpgate/accountant/async_ledger.h"
#include "dpgate/accountant/ledger.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/proxy/binary_format.h"
#include "dpgate/proxy/release.h"
#include "dpgate/proxy/scram.h"
#include "dpgate/rewriter/plan_cache.h"
#include "dpgate/rewriter/rewriter.h"
#include "upstream.h"
#include "upstream_pool.h"

namespace dpgate::proxy {
namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

// ---- Shared server state (owned by RunServer, no globals) --------------------

struct CancelKey {
  int32_t pid;
  int32_t key;
  bool operator<(const CancelKey& o) const { return pid != o.pid ? pid < o.pid : key < o.key; }
};

class Session;

struct ServerState {
  ServerState(const config::Config& c, const ServerOptions& o,
              std::vector<std::unique_ptr<asio::io_context>>& contexts)
      : config(c), options(o), io_contexts(contexts), plans(c, o.schema_facts) {}
  const config::Config& config;
  const ServerOptions& options;
  // One event loop per I/O thread (RunServer); sessions are spread over them.
  std::vector<std::unique_ptr<asio::io_context>>& io_contexts;
  std::atomic<size_t> next_context{0};
  // Classification results by exact query text and session context, so a
  // dashboard's repeated statement is not parsed and rewritten again
  // (docs/REWRITER.md §13).
  rewriter::PlanCache plans;
  std::optional<asio::ssl::context> tls;
  std::unique_ptr<accountant::AsyncLedger> ledger;
  // Upstream connections, shared by every session (docs/PROXY.md §1 item 3).
  std::unique_ptr<UpstreamPool> pool;
  // Blocking ledger reads (SHOW dp.budget) and cancel requests run here, never
  // on an I/O thread.
  asio::thread_pool blocking{2};
  std::mutex budget_ledger_mutex;
  std::unique_ptr<accountant::Ledger> budget_ledger;  // guarded by budget_ledger_mutex
  std::string upstream_database;
  std::string mock_secret;  // SCRAM mock salts for unknown users
  std::atomic<int> connections{0};
  std::atomic<bool> draining{false};
  std::mutex sessions_mutex;
  std::map<CancelKey, std::weak_ptr<Session>> sessions;  // guarded by sessions_mutex
  // Released answers, replayed for an identical query within query.cache_ttl
  // at no charge: returning the same noisy rows again is post-processing and
  // stops averaging attacks by repetition (DESIGN.md §2, docs/PROXY.md §1).
  struct CachedRelease {
    Released released;
    std::chrono::steady_clock::time_point at;
  };
  static constexpr size_t kCacheCapacity = 4096;
  std::mutex cache_mutex;
  std::map<std::string, CachedRelease> cache;  // guarded by cache_mutex
};

// The cache key: who asked, the exact rewritten SQL (constants included: the
// fingerprint alone would merge `age > 30` with `age > 40`) and every setting
// that changes the release. Raw values are never part of it.
std::string CacheKey(const std::string& analyst, const rewriter::StatementResult& st,
                     const QueryBudget& b, const BoundParameters* parameters) {
  std::ostringstream k;
  k.precision(17);
  k << analyst.size() << ':' << analyst << '|' << b.epsilon << '|' << b.delta << '|'
    << static_cast<int>(b.mechanism) << '|' << st.rewritten_sql.size() << ':' << st.rewritten_sql;
  if (parameters != nullptr) {
    // Bound values change the answer just as constants do: each with its
    // format and length, so no two different bindings share a key.
    for (size_t i = 0; i < parameters->values.size(); ++i) {
      const auto& v = parameters->values[i];
      k << "|$" << (i < parameters->types.size() ? parameters->types[i] : 0) << ','
        << parameters->formats[i] << ',';
      if (v.has_value()) {
        k << v->size() << ':' << *v;
      } else {
        k << 'N';
      }
    }
  }
  return k.str();
}

std::string FormatDouble(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

// An ErrorResponse's fields. The hint says what to do instead.
wire::Diagnostic MakeDiagnostic(const std::string& sqlstate, const std::string& message,
                                const std::string& hint = "") {
  wire::Diagnostic d;
  d.severity = "ERROR";
  d.sqlstate = sqlstate;
  d.message = message;
  d.hint = hint;
  return d;
}

wire::Diagnostic WithSeverity(wire::Diagnostic d, const std::string& severity) {
  d.severity = severity;
  return d;
}

// Runs `work` on the blocking pool and resumes the coroutine on its own
// executor with the result.
template <typename T, typename Work, typename Handler>
void StartOnBlockingPool(ServerState& state, Work work, Handler handler) {
  auto ex = asio::get_associated_executor(handler);
  auto h = std::make_shared<Handler>(std::move(handler));
  asio::post(state.blocking, [ex, h, work = std::move(work)]() mutable {
    auto value = std::make_shared<T>(work());
    asio::post(ex, [h, value]() mutable { (*h)(value); });
  });
}

// Runs `work` on the blocking pool and resumes the coroutine on its own
// executor with the result. Parameters by reference: see StartCharge.
template <typename T, typename Work>
awaitable<T> OnBlockingPool(ServerState& state, const Work& work) {
  auto result = co_await asio::async_initiate<decltype(use_awaitable), void(std::shared_ptr<T>)>(
      [&state, &work](auto handler) { StartOnBlockingPool<T>(state, work, std::move(handler)); },
      use_awaitable);
  co_return std::move(*result);
}

// Queues the charge; `handler` resumes the waiting coroutine on its own
// executor. A plain function (not a coroutine) on purpose: GCC 12 mis-copies
// non-trivial by-value coroutine parameters, so the request is copied here.
template <typename Handler>
void StartCharge(accountant::AsyncLedger& ledger, accountant::ChargeRequest request,
                 Handler handler) {
  using R = Result<accountant::ChargeReceipt>;
  auto ex = asio::get_associated_executor(handler);
  auto h = std::make_shared<Handler>(std::move(handler));
  ledger.ChargeAsync(std::move(request), [ex, h](R r) {
    auto value = std::make_shared<R>(std::move(r));
    asio::post(ex, [h, value]() mutable { (*h)(value); });
  });
}

awaitable<Result<accountant::ChargeReceipt>> ChargeLedger(
    accountant::AsyncLedger& ledger, const accountant::ChargeRequest& request) {
  using R = Result<accountant::ChargeReceipt>;
  auto result = co_await asio::async_initiate<decltype(use_awaitable), void(std::shared_ptr<R>)>(
      [&ledger, &request](auto handler) { StartCharge(ledger, request, std::move(handler)); },
      use_awaitable);
  co_return std::move(*result);
}

using Rows = std::vector<std::vector<std::optional<std::string>>>;

// One statement's answer, before it is written in the simple or the extended
// protocol's shape.
struct StatementReply {
  bool has_rows = false;
  std::vector<wire::FieldDescription> fields;
  Rows rows;
  std::string tag;
  std::vector<wire::Diagnostic> notices_before;  // upstream notices
  std::vector<wire::Diagnostic> notices_after;   // the privacy receipt
  // The answer (rows, tag, notices) is already in the session's output, as
  // the upstream sent it (UpstreamConnection::Relay).
  bool relayed = false;
};

// The columns a statement will return (has_rows false: NoData).
struct RowShape {
  bool has_rows = false;
  std::vector<wire::FieldDescription> fields;
};

// A Parse'd statement: its classification and, once asked, the upstream's
// description of the SQL dpgate will run for it.
struct PreparedStatement {
  rewriter::PlanCache::Statements classified;  // zero or one statement
  std::vector<uint32_t> parameter_types;       // as the client declared them
  std::optional<StatementDescription> description;
};

// A Bind'd portal; its result is computed (and, for a private aggregate,
// charged) once at the first Execute and handed out in max_rows slices.
struct Portal {
  std::shared_ptr<PreparedStatement> statement;
  BoundParameters parameters;
  std::vector<int16_t> result_formats;
  bool ran = false;
  bool completed = false;
  StatementReply reply;
  size_t next_row = 0;
};

// A cursor dpgate serves itself: DECLARE over a private aggregate keeps the
// released (noised) rows here, and FETCH hands them out; the bounded SQL's
// pre-noise rows never sit in an upstream cursor (DESIGN.md §2, "Wrapped
// queries"; docs/PROXY.md §1 item 9).
struct LocalCursor {
  std::vector<wire::FieldDescription> fields;
  Rows rows;
  size_t next_row = 0;
  bool hold = false;  // WITH HOLD: survives the end of its transaction
};

// Bounds on what one client can make dpgate hold.
constexpr size_t kMaxPreparedPerSession = 10000;
constexpr size_t kMaxCursorsPerSession = 1000;
constexpr size_t kFlushThreshold = 256 * 1024;
constexpr size_t kMaxSessionSets = 1024;

// The columns of dpgate's own answers (DESIGN.md §3), for Describe and for
// the answers themselves.
std::vector<std::string> LocalColumns(rewriter::DpgateCommandKind kind) {
  using K = rewriter::DpgateCommandKind;
  switch (kind) {
    case K::kShowEpsilon:
      return {"dp.epsilon"};
    case K::kShowDelta:
      return {"dp.delta"};
    case K::kShowBudget:
      return {"dataset",         "kind",          "principal",      "period", "remaining_epsilon",
              "remaining_delta", "spent_epsilon", "granted_epsilon"};
    case K::kExplainDp:
      return {"QUERY PLAN"};
    default:
      return {};
  }
}

StatementReply TextReply(const std::vector<std::string>& columns, Rows rows,
                         const std::string& tag) {
  StatementReply reply;
  reply.has_rows = true;
  for (const auto& c : columns) {
    wire::FieldDescription f;
    f.name = c;
    reply.fields.push_back(f);
  }
  reply.rows = std::move(rows);
  reply.tag = tag;
  return reply;
}

std::vector<wire::FieldDescription> ToFieldDescriptions(const std::vector<Released::Field>& in) {
  std::vector<wire::FieldDescription> fields;
  for (const auto& f : in) {
    wire::FieldDescription fd;
    fd.name = f.name;
    fd.type_oid = f.type_oid;
    fd.type_size = f.type_oid == 20 || f.type_oid == 701 ? 8 : -1;
    fields.push_back(fd);
  }
  return fields;
}

StatementReply ReleasedReply(const Released& released) {
  StatementReply reply;
  reply.has_rows = true;
  reply.fields = ToFieldDescriptions(released.fields);
  reply.rows = released.rows;
  reply.tag = "SELECT " + std::to_string(released.rows.size());
  return reply;
}

// True when `sql` has a parameter reference ($1, $2, ...) outside string
// literals and quoted identifiers.
bool MentionsParameter(std::string_view sql) {
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '$' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9' &&
               (i == 0 ||
                !(std::isalnum(static_cast<unsigned char>(sql[i - 1])) || sql[i - 1] == '_'))) {
      return true;
    }
  }
  return false;
}

// The statement name of a deparsed `DEALLOCATE [PREPARE] name` (quoted or
// not); nullopt for DEALLOCATE ALL.
std::optional<std::string> DeallocatedName(std::string_view sql) {
  std::string_view rest = sql.substr(std::string_view("DEALLOCATE ").size());
  if (rest.rfind("PREPARE ", 0) == 0) rest.remove_prefix(8);
  if (rest == "ALL") return std::nullopt;
  if (rest.size() >= 2 && rest.front() == '"' && rest.back() == '"') {
    std::string name;
    for (size_t i = 1; i + 1 < rest.size(); ++i) {
      name += rest[i];
      if (rest[i] == '"') ++i;  // "" is one quote
    }
    return name;
  }
  return std::string(rest);
}

// ---- One client connection -------------------------------------------------

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerState& state, tcp::socket socket)
      : state_(state),
        socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        client_deadline_(state.options.auth_timeout, state.options.idle_timeout),
        decoder_(state.options.limits) {}

  awaitable<void> Run();
  asio::any_io_executor executor() { return socket_.get_executor(); }
  // Runs on the session's event loop; the blocking cancel runs on the pool.
  void CancelUpstream() {
    if (!upstream_) return;
    PGcancel* cancel = upstream_->MakeCancel();
    if (cancel == nullptr) return;
    asio::post(state_.blocking, [cancel] {
      char err[256];
      PQcancel(cancel, err, sizeof err);
      PQfreeCancel(cancel);
    });
  }
  void CloseIfIdle() {
    if (!busy_) Close();
  }

 private:
  awaitable<bool> ReadFrame(wire::Frame* frame);
  void ArmDeadline(ClientDeadline::Clock::time_point at);
  void OnDeadline();
  void DropForTimeout(ClientDeadline::Expired why);
  void TakeRead(size_t n, boost::system::error_code* ec);
  std::array<char, 512> read_head_;  // plain-socket reads land here first
  awaitable<bool> Flush();
  size_t WriteAvailable(boost::system::error_code* ec);
  void ReadAvailable(boost::system::error_code* ec);
  void Close() {
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }
  awaitable<void> Fatal(const std::string& sqlstate, const std::string& message,
                        const std::string& hint = "") {
    out_.ErrorResponse(WithSeverity(MakeDiagnostic(sqlstate, message, hint), "FATAL"));
    co_await Flush();
    Close();
  }

  awaitable<bool> Startup();
  awaitable<bool> Authenticate(const std::string& user);
  awaitable<void> HandleQuery(const std::string& sql);
  awaitable<Status> ConnectUpstream();
  awaitable<bool> EnsureUpstream();
  std::optional<std::optional<StatementReply>> RunLocalSessionStatement(
      const rewriter::StatementResult& st);
  void MaybeReleaseUpstream();
  awaitable<bool> OpenImplicitBlock();
  awaitable<void> CloseImplicitBlock(bool failed);
  static const char* OutsideBlockOnly(const rewriter::StatementResult& st);
  void SettleTransaction(const rewriter::StatementResult& st, const std::string& tag);
  void EndTransaction(bool committed);
  // kRelay: the caller is the simple query flow, which sends a forwarded
  // statement's answer as it comes; the extended flow converts formats and
  // honours row limits, so it collects.
  enum class Route { kCollect, kRelay };
  awaitable<std::optional<StatementReply>> RunStatement(const rewriter::StatementResult& st,
                                                        const BoundParameters* parameters,
                                                        int result_format,
                                                        Route route = Route::kCollect);
  awaitable<std::optional<StatementReply>> Forward(const std::string& sql,
                                                   const BoundParameters* parameters,
                                                   int result_format);
  awaitable<std::optional<StatementReply>> Relay(const std::string& sql);
  awaitable<std::optional<StatementReply>> RunPrivateAggregate(const rewriter::StatementResult& st,
                                                               const BoundParameters* parameters);
  awaitable<std::optional<StatementReply>> RunDpgateCommand(const rewriter::StatementResult& st);
  awaitable<std::optional<StatementReply>> RunCursorStatement(const rewriter::StatementResult& st,
                                                              const BoundParameters* parameters);
  awaitable<std::optional<StatementReply>> RunSqlPrepared(const rewriter::StatementResult& st);
  void DropEndedCursors();
  void SendError(const wire::Diagnostic& d) { out_.ErrorResponse(d); }
  void SendRefusal(const rewriter::StatementResult& st,
                   std::chrono::steady_clock::time_point started);
  char TransactionStatus() const;

  // Extended query protocol. kError: an ErrorResponse was queued, discard
  // until Sync; kClose: a protocol violation ends the connection.
  enum class Step { kOk, kError, kClose };
  awaitable<bool> HandleExtended(const wire::Frame& frame);
  awaitable<Step> ProtocolViolation(const Error& error);
  Step QueueViolation(const Error& error);
  awaitable<Step> HandleParse(std::string_view body);
  Step HandleBind(std::string_view body);
  awaitable<Step> HandleDescribe(std::string_view body);
  awaitable<Step> HandleExecute(std::string_view body);
  Step HandleClose(std::string_view body);
  awaitable<bool> DescribeUpstream(PreparedStatement& statement);
  awaitable<std::optional<RowShape>> DescribeRows(PreparedStatement& statement);
  bool ApplyResultFormats(const std::vector<int16_t>& formats,
                          std::vector<wire::FieldDescription>* fields);
  QueryBudget Budget() const {
    QueryBudget b;
    b.epsilon = epsilon_;
    b.delta = delta_;
    b.mechanism = state_.config.query.mechanism;
    return b;
  }
  void Audit(const rewriter::StatementResult& st, std::string_view outcome, double epsilon,
             double delta, size_t rows, std::chrono::steady_clock::time_point started) const;
  mutable std::string audit_line_;  // Audit's storage, kept between statements
  // The start of the last audit line, up to the dataset, and what it was
  // made from: a client that repeats a statement has the same one.
  mutable std::string audit_head_;
  mutable std::string audit_head_fingerprint_;
  mutable std::string audit_head_dataset_;
  mutable rewriter::StatementClass audit_head_class_ = rewriter::StatementClass::kRefused;
  rewriter::PlanCache::Memo plan_memo_;  // this session's last classification
  // The simple query flow's hot path (docs/PROXY.md §1 item 4).
  enum class FlushState { kDone, kPending, kFailed };
  FlushState FlushNow();
  const rewriter::StatementResult* RelayableAlone(
      const std::vector<rewriter::StatementResult>& classified);
  void ReportRelayed(const Result<RelayedStatement>& relayed);
  // A relayed statement's two halves, around the reads of its answer: the
  // same for the coroutine above and the relay path below. `send_error`:
  // why BeginRelayed could not send the Query, or null.
  Result<bool> BeginRelayed(const rewriter::StatementResult& alone);
  void EndRelayed(const rewriter::StatementResult& alone, const Error* send_error,
                  std::chrono::steady_clock::time_point started);
  wire::Frame frame_;       // the message being handled; its storage is reused
  std::string query_text_;  // a Query's SQL, likewise

  // ---- The relay path (docs/PROXY.md §1 item 4) ----
  // While a plain-socket client sends Queries that are relayed whole (one
  // public or catalog statement), completion handlers run them rather than
  // the coroutine: Run awaits the relay path once, and it comes back only
  // with a message it does not run (kFrame: it is in frame_), malformed
  // input (kMalformed: relay_error_), or the end of the connection. A
  // co_await of an Asio operation costs a coroutine frame for its
  // initiation and a dispatch through the awaitable's executor for its
  // completion, twice per statement; a handler costs neither
  // (bench/RESULTS.md, proxy).
  //
  // Lifetime: the handlers hold `this` without owning it. While they run,
  // Run is suspended in RunRelayPath, and the coroutine (which owns the
  // session through co_spawn's lambda) resumes only through relay_resume_,
  // which RelayExitWith posts after the last handler's work. (A session still
  // in the relay path when the loops are destroyed, after the shutdown
  // grace, is not freed: relay_resume_ holds the coroutine that holds it.
  // The process exits right after.)
  enum class RelayExit { kFrame, kMalformed, kClosed, kDraining };
  awaitable<RelayExit> RunRelayPath();
  void RelayReadClient();
  void RelayNextFrames();
  void RelayContinue();
  void RelayReadUpstream();
  bool RelayFinishStatement();
  void RelayExitWith(RelayExit why);
  template <typename Work>
  void Guarded(Work&& work);
  // The suspended coroutine's completion handler, whatever its type.
  class ResumeHandler {
   public:
    template <typename Handler>
    void Hold(Handler handler) {
      held_ = std::make_unique<Held<Handler>>(std::move(handler));
    }
    // Nothing of this object is touched after the handler has run (it may
    // end the session).
    void Resume() {
      std::unique_ptr<Base> held = std::move(held_);
      held->Call();
    }

   private:
    struct Base {
      virtual ~Base() = default;
      virtual void Call() = 0;
    };
    template <typename Handler>
    struct Held final : Base {
      explicit Held(Handler h) : handler(std::move(h)) {}
      void Call() override { std::move(handler)(); }
      Handler handler;
    };
    std::unique_ptr<Base> held_;
  };
  ResumeHandler relay_resume_;
  RelayExit relay_exit_ = RelayExit::kClosed;
  Error relay_error_;                           // kMalformed's reason
  rewriter::PlanCache::Statements relay_plan_;  // its text, when too long for the memo
  const rewriter::StatementResult* relay_statement_ = nullptr;
  std::optional<Error> relay_send_error_;
  std::chrono::steady_clock::time_point relay_started_;

  ServerState& state_;
  tcp::socket socket_;
  // Created only when the client asks for TLS: an idle plain connection must
  // not carry a TLS engine and its two record buffers (~40 KiB).
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  bool tls_active_ = false;
  asio::steady_timer deadline_;
  ClientDeadline client_deadline_;
  wire::FrameDecoder decoder_;
  wire::BackendWriter out_;
  std::string analyst_;
  // Held from the first statement that needs the upstream; in transaction
  // pooling given back whenever no transaction is open.
  UpstreamLease upstream_;
  // Forwarded SET/RESET statements, replayed on a new upstream connection in
  // transaction pooling (a returned connection is reset with DISCARD ALL).
  std::vector<std::string> session_sets_;
  rewriter::SessionContext rw_session_;
  double epsilon_ = 0;
  double delta_ = 0;
  bool busy_ = false;
  std::optional<CancelKey> cancel_key_;
  std::string peer_;
  // Allowed startup parameters, re-applied when the upstream is reconnected.
  std::vector<std::pair<std::string, std::string>> session_parameters_;
  std::map<std::string, std::shared_ptr<PreparedStatement>> statements_;
  std::map<std::string, Portal> portals_;
  bool skip_until_sync_ = false;
  // The simple Query being run holds more than one statement: PostgreSQL
  // runs those in one implicit transaction block.
  bool multi_statement_query_ = false;
  // dpgate sent BEGIN for the implicit block of the Query being run, and
  // ends it with COMMIT or ROLLBACK after the Query's last statement.
  bool implicit_block_ = false;
  bool converting_block_ = false;  // the statement being run is a BEGIN inside it
  // SETs run inside a transaction block, replayed (transaction pooling)
  // only once it commits, and the savepoints made since, each with the
  // number of those SETs before it.
  std::vector<std::string> pending_session_sets_;
  std::vector<std::pair<std::string, size_t>> savepoint_marks_;
  // Cursors declared in the open transaction block: a ROLLBACK removes them,
  // WITH HOLD ones too, as PostgreSQL removes the portals of an aborted
  // transaction.
  std::set<std::string> cursors_in_block_;
  std::map<std::string, LocalCursor> local_cursors_;
  // SQL-level PREPAREd statements: name -> the PREPARE's text (REWRITER.md
  // §4.6). Same namespace as the protocol's named statements, as in
  // PostgreSQL.
  std::map<std::string, std::string> sql_prepared_;
  // Cursors over public or catalog queries, declared upstream through
  // dpgate (name -> WITH HOLD): the only names FETCH/MOVE/CLOSE are
  // forwarded for.
  std::map<std::string, bool> upstream_cursors_;
};

// An answer usually fits in the socket's send buffer: one non-blocking send
// finishes it with no reactor operation and no coroutine. (An async_write
// that completes at once still goes through the scheduler's queue, which
// wakes another I/O thread, before the coroutine resumes.) kPending: part
// of it is left at the front of the output, for Flush.
Session::FlushState Session::FlushNow() {
  if (out_.buffer().empty()) return FlushState::kDone;
  if (tls_active_) return FlushState::kPending;
  boost::system::error_code ec;
  const size_t sent = WriteAvailable(&ec);
  if (ec && ec != asio::error::would_block) return FlushState::kFailed;
  if (sent < out_.buffer().size()) {
    out_.Consume(sent);
    return FlushState::kPending;
  }
  out_.Clear();
  return FlushState::kDone;
}

awaitable<bool> Session::Flush() {
  const FlushState now = FlushNow();
  if (now != FlushState::kPending) co_return now == FlushState::kDone;
  boost::system::error_code ec;
  if (tls_active_) {
    const std::string data = out_.Take();
    co_await asio::async_write(*tls_, asio::buffer(data), asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }
  co_await asio::async_write(socket_, asio::buffer(out_.buffer()),
                             asio::redirect_error(use_awaitable, ec));
  if (ec) co_return false;
  out_.Clear();
  co_return true;
}

// Sends what the socket takes now, without blocking; returns the bytes sent.
size_t Session::WriteAvailable(boost::system::error_code* ec) {
  if (!socket_.non_blocking()) socket_.non_blocking(true, *ec);
  if (*ec) return 0;
  return socket_.write_some(asio::buffer(out_.buffer()), *ec);
}

// Reads what the plain socket holds into the decoder without blocking
// (would_block when it holds nothing). End of stream is an error (the client
// went away).
void Session::ReadAvailable(boost::system::error_code* ec) {
  if (!socket_.non_blocking()) socket_.non_blocking(true, *ec);
  if (*ec) return;
  std::array<char, 16384> buf;
  const size_t n = socket_.read_some(asio::buffer(buf), *ec);
  if (!*ec) decoder_.Append(std::string_view(buf.data(), n));
}

awaitable<bool> Session::ReadFrame(wire::Frame* frame) {
  while (true) {
    auto next = decoder_.Next(frame);
    if (!next.ok()) {
      // Malformed input ends this connection, never the process.
      co_await Fatal(next.error().code, next.error().message);
      co_return false;
    }
    if (*next) {
      client_deadline_.GotMessage();
      co_return true;
    }
    client_deadline_.StartWaiting();
    boost::system::error_code ec;
    size_t n = 0;
    if (tls_active_) {
      std::array<char, 16384> buf;
      n = co_await tls_->async_read_some(asio::buffer(buf),
                                         asio::redirect_error(use_awaitable, ec));
      if (!ec) decoder_.Append(std::string_view(buf.data(), n));
    } else {
      n = co_await socket_.async_read_some(asio::buffer(read_head_),
                                           asio::redirect_error(use_awaitable, ec));
      TakeRead(n, &ec);
    }
    if (ec) co_return false;  // closed, reset, or timed out: nothing to answer
  }
}

// The session's one timer (client_deadline.h). A timeout closes the socket,
// which ends the pending read.
void Session::ArmDeadline(ClientDeadline::Clock::time_point at) {
  deadline_.expires_at(at);
  deadline_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->OnDeadline();
  });
}

void Session::OnDeadline() {
  const ClientDeadline::Verdict verdict = client_deadline_.Check(ClientDeadline::Clock::now());
  if (verdict.expired) return DropForTimeout(*verdict.expired);
  if (verdict.check_again) ArmDeadline(*verdict.check_again);
}

// The client gets a FATAL that says which limit it ran into, as PostgreSQL
// does for its authentication_timeout and idle_session_timeout, when the
// session is waiting for it (so nothing else is being written); otherwise
// the connection is just closed.
void Session::DropForTimeout(ClientDeadline::Expired why) {
  const bool auth = why == ClientDeadline::Expired::kAuthentication;
  const std::chrono::seconds limit =
      auth ? client_deadline_.auth_timeout() : client_deadline_.idle_timeout();
  spdlog::info("session {} analyst={}: closed after {} s {} (limits.{})", peer_,
               analyst_.empty() ? "-" : analyst_, limit.count(),
               auth ? "without completing authentication" : "idle",
               auth ? "auth_timeout" : "idle_timeout");
  if (!client_deadline_.waiting()) return Close();
  const std::string seconds = std::to_string(limit.count()) + " s";
  out_.ErrorResponse(WithSeverity(
      auth ? MakeDiagnostic("57014", "canceling authentication due to timeout",
                            "dpgate allows " + seconds + " to log in (limits.auth_timeout)")
           : MakeDiagnostic("57P05", "terminating connection due to idle-session timeout",
                            "dpgate closes a session that sends nothing for " + seconds +
                                " (limits.idle_timeout); reconnect"),
      "FATAL"));
  if (!tls_active_) {
    (void)FlushNow();  // what the socket takes now; the client may not be reading
    return Close();
  }
  // Through TLS: one write beside the pending read (Asio allows one of each
  // on a stream), and a second's grace for it before the socket is closed.
  auto data = std::make_shared<std::string>(out_.Take());
  asio::async_write(*tls_, asio::buffer(*data),
                    [self = shared_from_this(), data](const boost::system::error_code&, size_t) {
                      self->Close();
                    });
  deadline_.expires_after(std::chrono::seconds(1));
  deadline_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->Close();
  });
}

// After a read of the plain socket into read_head_. A real read, not
// async_wait + read: Asio 1.74 re-arms the descriptor with an epoll_ctl on
// every async_wait. A read operation costs a syscall too when nothing is
// there yet: once a socket has signalled data, Asio tries every later read
// at once (its reactor stops doing so only at end of stream, not when a
// read comes up short), and a recv that finds nothing fails with EAGAIN
// before the read waits for the reactor (bench/RESULTS.md, proxy: the
// EAGAINs of two I/O threads). It wins when a busy client's next message is
// already here. read_head_ is small so that an idle session stays
// small (memory per idle client; docs/PROXY.md §2); when it fills, the rest
// of a pipelined batch is taken at once without blocking.
void Session::TakeRead(size_t n, boost::system::error_code* ec) {
  if (!*ec) {
    decoder_.Append(std::string_view(read_head_.data(), n));
    if (n == read_head_.size()) {
      ReadAvailable(ec);
      if (*ec == asio::error::would_block) *ec = {};
    }
  }
}

awaitable<void> Session::Run() {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown" : ep.address().to_string() + ":" + std::to_string(ep.port());
  if (state_.connections.fetch_add(1) >= state_.options.max_connections) {
    co_await Fatal("53300", "sorry, too many clients already",
                   "dpgate accepts at most " + std::to_string(state_.options.max_connections) +
                       " connections");
    state_.connections.fetch_sub(1);
    co_return;
  }
  // One deadline for the whole login, the TLS handshake included.
  ArmDeadline(client_deadline_.StartAuthentication(ClientDeadline::Clock::now()));
  const bool ready = co_await Startup();
  if (ready) {
    deadline_.cancel();
    if (auto at = client_deadline_.Authenticated(ClientDeadline::Clock::now())) ArmDeadline(*at);
    wire::Frame& frame = frame_;
    while (!state_.draining.load()) {
      if (tls_active_) {
        if (!co_await ReadFrame(&frame)) break;
      } else {
        auto next = decoder_.Next(&frame);
        if (!next.ok()) {
          // Malformed input ends this connection, never the process.
          co_await Fatal(next.error().code, next.error().message);
          break;
        }
        if (!*next) {
          // Nothing buffered: the relay path reads, runs every relayable
          // Query itself, and hands back the first message it does not run.
          const RelayExit exit = co_await RunRelayPath();
          if (exit == RelayExit::kMalformed) {
            co_await Fatal(relay_error_.code, relay_error_.message);
            break;
          }
          if (exit != RelayExit::kFrame) break;  // closed, reset, timed out, or draining
        }
      }
      if (frame.type == 'X') break;
      if (frame.type == 'Q') {
        // After an error in the extended protocol every message up to Sync
        // is discarded, a Query included, as PostgreSQL does (§55.2.3): the
        // client's batch assumed it would not run.
        if (skip_until_sync_) continue;
        auto sql = wire::ParseQueryText(frame.body);
        if (!sql.ok()) {
          co_await Fatal(sql.error().code, sql.error().message);
          break;
        }
        busy_ = true;
        query_text_.assign(sql->data(), sql->size());
        // One public or catalog statement relayed as the upstream's bytes,
        // with the relay path's steps (docs/PROXY.md §1 item 4): here for a
        // TLS client and for a Query that was buffered behind a message the
        // relay path handed back. Everything else, and anything this path
        // does not expect, goes to HandleQuery.
        const auto started = std::chrono::steady_clock::now();
        rewriter::PlanCache::Statements owner;  // a text too long for the memo
        auto classified = state_.plans.ClassifyKept(query_text_, rw_session_, &plan_memo_, &owner);
        const rewriter::StatementResult* alone =
            classified.ok() ? RelayableAlone(**classified) : nullptr;
        if (alone == nullptr) {
          co_await HandleQuery(query_text_);
        } else {
          auto sent = BeginRelayed(*alone);
          using Progress = UpstreamConnection::RelayProgress;
          Progress progress = Progress::kLost;
          // No co_await inside ?: or || : GCC 12 miscompiles those.
          bool whole = sent.ok() && *sent;
          if (sent.ok() && !whole) {
            const Status rest = co_await upstream_->SendUnsent(out_);
            whole = rest.ok();
          }
          if (whole) progress = upstream_->ContinueRelay(out_);
          while (progress == Progress::kNeedRead) {
            boost::system::error_code ec;
            const size_t n = co_await upstream_->relay_socket().async_read_some(
                upstream_->RelayReadBuffer(), asio::redirect_error(use_awaitable, ec));
            progress = upstream_->RelayReceived(ec, n, out_);
          }
          EndRelayed(*alone, sent.ok() ? nullptr : &sent.error(), started);
        }
        busy_ = false;
        const FlushState flushed = FlushNow();
        if (flushed == FlushState::kFailed) break;
        if (flushed == FlushState::kPending && !co_await Flush()) break;
        continue;
      }
      if (std::string_view("PBDESCHF").find(frame.type) != std::string_view::npos) {
        busy_ = true;
        const bool keep = co_await HandleExtended(frame);
        busy_ = false;
        if (!keep) {
          co_await Flush();
          break;
        }
        continue;
      }
      co_await Fatal("08P01", std::string("unexpected message type '") + frame.type + "'");
      break;
    }
  }
  Close();
  deadline_.cancel();  // its handler holds the session
  upstream_.Release();
  if (cancel_key_) {
    std::lock_guard lock(state_.sessions_mutex);
    state_.sessions.erase(*cancel_key_);
  }
  state_.connections.fetch_sub(1);
}

awaitable<bool> Session::Startup() {
  wire::StartupMessage startup;
  while (true) {
    wire::Frame frame;
    if (!co_await ReadFrame(&frame)) co_return false;
    auto packet = wire::ParseStartupPacket(frame.body);
    if (!packet.ok()) {
      co_await Fatal(packet.error().code, packet.error().message);
      co_return false;
    }
    if (std::holds_alternative<wire::SslRequest>(*packet)) {
      if (tls_active_) {
        co_await Fatal("08P01", "SSLRequest received twice");
        co_return false;
      }
      out_.SslResponse(state_.tls.has_value());
      if (!co_await Flush()) co_return false;
      if (state_.tls) {
        if (decoder_.buffered() != 0) {
          // Bytes after SSLRequest before the handshake: a buffer-stuffing
          // attempt (CVE-2021-23214 class). Refuse.
          Close();
          co_return false;
        }
        boost::system::error_code ec;
        tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *state_.tls);
        co_await tls_->async_handshake(asio::ssl::stream_base::server,
                                       asio::redirect_error(use_awaitable, ec));
        if (ec) {
          Close();
          co_return false;
        }
        tls_active_ = true;
      }
      continue;
    }
    if (std::holds_alternative<wire::GssEncRequest>(*packet)) {
      out_.SslResponse(false);  // 'N': GSSAPI encryption is not offered
      if (!co_await Flush()) co_return false;
      continue;
    }
    if (const auto* cancel = std::get_if<wire::CancelRequest>(&*packet)) {
      std::shared_ptr<Session> target;
      {
        std::lock_guard lock(state_.sessions_mutex);
        auto it = state_.sessions.find(CancelKey{cancel->process_id, cancel->secret_key});
        if (it != state_.sessions.end()) target = it->second.lock();
      }
      if (target) {
        asio::post(target->executor(), [target] { target->CancelUpstream(); });
      }
      Close();  // the protocol sends no reply to a CancelRequest
      co_return false;
    }
    startup = std::get<wire::StartupMessage>(std::move(*packet));
    break;
  }
  decoder_.EndStartupPhase();
  if (state_.tls && !tls_active_) {
    co_await Fatal("28000", "dpgate requires an encrypted connection",
                   "connect with sslmode=require");
    co_return false;
  }
  const std::string* user = startup.Find("user");
  if (user == nullptr || user->empty()) {
    co_await Fatal("28000", "no PostgreSQL user name specified in startup packet");
    co_return false;
  }
  const std::string* database = startup.Find("database");
  if (database != nullptr && !database->empty() && *database != state_.upstream_database) {
    co_await Fatal("3D000", "database \"" + *database + "\" does not exist",
                   "dpgate serves the database \"" + state_.upstream_database + "\"");
    co_return false;
  }
  if (!co_await Authenticate(*user)) co_return false;
  analyst_ = *user;
  audit_head_.clear();  // Audit's cached start holds the analyst
  rw_session_.user = analyst_;
  epsilon_ = state_.config.query.epsilon;
  delta_ = state_.config.query.delta;

  // Startup parameters a client may set: an allow-list (DESIGN.md §2).
  static constexpr const char* kForwarded[] = {"application_name",   "client_encoding",
                                               "DateStyle",          "TimeZone",
                                               "extra_float_digits", "IntervalStyle"};
  for (const auto& [name, value] : startup.parameters) {
    for (const char* allowed : kForwarded) {
      if (name == allowed) session_parameters_.emplace_back(name, value);
    }
  }
  // No upstream connection is taken until a statement needs one: the server
  // parameters come from the pool (cached from its newest connection), and
  // the client's own startup values are reported as the client set them.
  auto server_parameters = co_await state_.pool->GetServerParameters();
  if (!server_parameters.ok()) {
    spdlog::warn("session {} analyst={}: upstream unavailable ({})", peer_, analyst_,
                 server_parameters.error().code);
    co_await Fatal("08006", "the upstream database is unavailable; try again later");
    co_return false;
  }
  out_.AuthenticationOk();
  for (const char* p :
       {"server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone",
        "IntervalStyle", "integer_datetimes", "standard_conforming_strings", "application_name"}) {
    std::string value;
    for (const auto& [name, v] : *server_parameters) {
      if (name == p) value = v;
    }
    for (const auto& [name, v] : session_parameters_) {
      if (name == p) value = v;
    }
    out_.ParameterStatus(p, value);
  }
  out_.ParameterStatus("is_superuser", "off");
  out_.ParameterStatus("session_authorization", analyst_);
  CancelKey key{};
  RAND_bytes(reinterpret_cast<unsigned char*>(&key.pid), sizeof key.pid);
  RAND_bytes(reinterpret_cast<unsigned char*>(&key.key), sizeof key.key);
  key.pid &= 0x3fffffff;
  {
    std::lock_guard lock(state_.sessions_mutex);
    state_.sessions[key] = weak_from_this();
  }
  cancel_key_ = key;
  out_.BackendKeyData(key.pid, key.key);
  out_.ReadyForQuery('I');
  spdlog::info("session {} analyst={} connected tls={}", peer_, analyst_, tls_active_);
  co_return co_await Flush();
}

awaitable<bool> Session::Authenticate(const std::string& user) {
  const config::Analyst* analyst = state_.config.FindAnalyst(user);
  if (state_.config.auth == config::AuthMode::kTrust) {
    if (analyst == nullptr) {
      co_await Fatal("28000", "role \"" + user + "\" is not an analyst in the dpgate config");
      co_return false;
    }
    co_return true;
  }
  std::optional<ScramVerifier> verifier;
  if (analyst != nullptr) {
    auto v = ScramVerifier::Parse(analyst->scram);
    if (v.ok()) verifier = *v;
  }
  ScramServerExchange exchange(verifier, user, state_.mock_secret);
  out_.AuthenticationSasl({"SCRAM-SHA-256"});
  if (!co_await Flush()) co_return false;
  wire::Frame frame;
  if (!co_await ReadFrame(&frame)) co_return false;
  if (frame.type != 'p') {
    co_await Fatal("08P01", "expected a SASL response");
    co_return false;
  }
  auto initial = wire::ParseSaslInitialResponse(frame.body);
  if (!initial.ok() || initial->mechanism != "SCRAM-SHA-256") {
    co_await Fatal("28000", "SCRAM-SHA-256 authentication is required");
    co_return false;
  }
  auto server_first = exchange.HandleClientFirst(initial->data);
  if (!server_first.ok()) {
    co_await Fatal(server_first.error().code, server_first.error().message);
    co_return false;
  }
  out_.AuthenticationSaslContinue(*server_first);
  if (!co_await Flush()) co_return false;
  if (!co_await ReadFrame(&frame)) co_return false;
  if (frame.type != 'p') {
    co_await Fatal("08P01", "expected a SASL response");
    co_return false;
  }
  auto server_final = exchange.HandleClientFinal(frame.body);
  if (!server_final.ok()) {
    spdlog::warn("session {}: authentication failed for \"{}\"", peer_, user);
    co_await Fatal("28P01", "password authentication failed for user \"" + user + "\"");
    co_return false;
  }
  out_.AuthenticationSaslFinal(*server_final);
  co_return true;
}

void Session::Audit(const rewriter::StatementResult& st, std::string_view outcome, double epsilon,
                    double delta, size_t rows,
                    std::chrono::steady_clock::time_point started) const {
  spdlog::logger* log = spdlog::default_logger_raw();
  if (!log->should_log(spdlog::level::info)) return;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  using namespace std::string_view_literals;
  // One structured line per statement. Never the SQL's values or any row:
  // the fingerprint identifies the query shape (DESIGN.md §1, "logs").
  // Built by hand into storage the session keeps (the line is written once
  // per statement, also on the relay's hot path); numbers as fmt's "{}"
  // writes them, so the line reads as it always has.
  if (audit_head_.empty() || st.statement_class != audit_head_class_ ||
      st.fingerprint_hex != audit_head_fingerprint_ || st.dataset != audit_head_dataset_) {
    std::string& head = audit_head_;
    head.assign("audit analyst="sv);
    head += analyst_;
    head += " class="sv;
    head += rewriter::ToString(st.statement_class);
    head += " fingerprint="sv;
    head += st.fingerprint_hex;
    head += " dataset="sv;
    head += st.dataset.empty() ? std::string_view("-") : std::string_view(st.dataset);
    audit_head_class_ = st.statement_class;
    audit_head_fingerprint_ = st.fingerprint_hex;
    audit_head_dataset_ = st.dataset;
  }
  std::string& line = audit_line_;
  line.assign(audit_head_);
  const auto number = [&line](double v) {
    if (v == 0 && !std::signbit(v)) {
      line += '0';
    } else {
      fmt::format_to(std::back_inserter(line), "{}", v);
    }
  };
  const auto integer = [&line](long long v) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    line.append(digits, end);
  };
  line += " epsilon="sv;
  number(epsilon);
  line += " delta="sv;
  number(delta);
  line += " rows="sv;
  integer(static_cast<long long>(rows));
  line += " duration_ms="sv;
  integer(static_cast<long long>(ms));
  line += " outcome="sv;
  line += outcome;
  log->log(spdlog::level::info, spdlog::string_view_t(line.data(), line.size()));
}

awaitable<Status> Session::ConnectUpstream() {
  auto lease = co_await state_.pool->Acquire();
  if (!lease.ok()) {
    spdlog::warn("session {} analyst={}: no upstream connection ({})", peer_, analyst_,
                 lease.error().code);
    if (lease.error().code == "53300") co_return lease.error();
    co_return MakeError("08006", "the upstream database is unavailable; try again later");
  }
  // A pooled connection comes back reset: apply this client's settings.
  for (const auto& [name, value] : session_parameters_) {
    // The value goes in as a quoted literal through set_config, never spliced.
    std::string literal = "'";
    for (char c : value) literal += (c == '\'') ? std::string("''") : std::string(1, c);
    literal += "'";
    auto r = co_await (*lease)->Execute("SELECT pg_catalog.set_config('" + name + "', " + literal +
                                        ", false)");
    if (!r.ok() || r->error.has_value()) {
      co_return MakeError("22023", "invalid value for startup parameter \"" + name + "\"");
    }
  }
  for (const auto& sql : session_sets_) {
    auto r = co_await (*lease)->Execute(sql);
    if (!r.ok() || r->error.has_value()) {
      co_return MakeError("08006", "could not restore this session's settings upstream");
    }
  }
  (*lease)->TakeNotices();
  upstream_ = std::move(*lease);
  co_return Status::Ok();
}

// Gives the connection back to the pool when the pool's mode says so (after a
// statement that left no transaction open, in transaction pooling) or when it
// broke.
void Session::MaybeReleaseUpstream() {
  // An upstream cursor (WITH HOLD) lives on its connection: keep it.
  if (upstream_ && portals_.empty() && upstream_cursors_.empty() &&
      state_.pool->ShouldReleaseAfterStatement(upstream_)) {
    upstream_.Release();
  }
}

// Session statements about state dpgate keeps itself. The protocol-level
// prepared statements live in dpgate (SQL-level PREPARE is refused), so
// DEALLOCATE is answered here — psqlODBC frees its statements this way — and
// DISCARD ALL also hands the upstream connection back to the pool, whose
// reset restores dpgate's pins (forwarding it would drop them). Returns
// nullopt when the statement is not one of these; an inner nullopt when an
// error was sent.
std::optional<std::optional<StatementReply>> Session::RunLocalSessionStatement(
    const rewriter::StatementResult& st) {
  const std::string& sql = st.rewritten_sql;
  StatementReply reply;
  if (sql.rfind("DEALLOCATE ", 0) == 0) {
    const auto name = DeallocatedName(sql);
    if (!name.has_value()) {
      statements_.clear();
      sql_prepared_.clear();
    } else if (statements_.erase(*name) == 0 && sql_prepared_.erase(*name) == 0) {
      SendError(MakeDiagnostic("26000", "prepared statement \"" + *name + "\" does not exist"));
      return std::optional<StatementReply>();
    }
    reply.tag = name.has_value() ? "DEALLOCATE" : "DEALLOCATE ALL";
    return reply;
  }
  if (sql == "DISCARD ALL") {
    // As PostgreSQL, also within a multi-statement Query (an implicit
    // transaction block): handing the upstream back mid-Query would leave
    // the statements after it without one.
    if (TransactionStatus() != 'I' || multi_statement_query_) {
      SendError(MakeDiagnostic("25001", "DISCARD ALL cannot run inside a transaction block"));
      return std::optional<StatementReply>();
    }
    statements_.clear();
    sql_prepared_.clear();
    portals_.clear();
    local_cursors_.clear();     // DISCARD ALL closes every cursor, as CLOSE ALL
    upstream_cursors_.clear();  // (the pool's reset closes the upstream's)
    session_sets_.clear();
    rw_session_.search_path = rewriter::SessionContext{}.search_path;
    upstream_.Release();  // reset by the pool; the next statement takes one
    reply.tag = "DISCARD ALL";
    return reply;
  }
  return std::nullopt;
}

// An upstream that broke (restart, terminated backend) is replaced before the
// next statement: the client saw an error for the statement that was running,
// and the session goes on once the upstream is back.
awaitable<bool> Session::EnsureUpstream() {
  if (upstream_ && !upstream_->broken()) co_return true;
  if (upstream_) upstream_.Discard();
  // An open block died with the connection, and what was made in it.
  implicit_block_ = false;
  EndTransaction(false);
  Status st = co_await ConnectUpstream();
  if (!st.ok()) {
    SendError(MakeDiagnostic(st.error().code, st.error().message));
    co_return false;
  }
  spdlog::debug("session {} analyst={}: upstream connection taken", peer_, analyst_);
  co_return true;
}

char Session::TransactionStatus() const {
  return upstream_ && !upstream_->broken() ? upstream_->TransactionStatus() : 'I';
}

awaitable<void> Session::HandleQuery(const std::string& sql) {
  const auto started = std::chrono::steady_clock::now();
  // A simple Query ends the unnamed statement and portal (§55.2.2).
  statements_.erase("");
  portals_.erase("");
  auto classified_ptr = state_.plans.Classify(sql, rw_session_, &plan_memo_);
  if (!classified_ptr.ok()) {
    SendError(MakeDiagnostic("XX000", "dpgate could not analyse this query",
                             "the statement was not run; report it to the administrator"));
    spdlog::error("session {} analyst={}: internal rewriter error", peer_, analyst_);
    out_.ReadyForQuery(TransactionStatus());
    co_return;
  }
  const rewriter::PlanCache::Statements classified = *classified_ptr;
  if (classified->empty()) {
    out_.EmptyQueryResponse();
    out_.ReadyForQuery(TransactionStatus());
    co_return;
  }
  // A string with any refused statement is refused whole: nothing runs.
  for (const auto& st : *classified) {
    if (st.statement_class == rewriter::StatementClass::kRefused) {
      SendRefusal(st, started);
      out_.ReadyForQuery(TransactionStatus());
      co_return;
    }
  }
  if (!co_await EnsureUpstream()) {
    out_.ReadyForQuery('I');
    co_return;
  }
  multi_statement_query_ = classified->size() > 1;
  bool failed = false;
  for (const auto& st : *classified) {
    using Control = rewriter::TransactionControl;
    bool converts_block = false;  // a BEGIN that takes over the implicit block
    bool ends_block = false;      // a COMMIT or ROLLBACK that ends it
    if (multi_statement_query_) {
      // PostgreSQL runs the statements of one Query in an implicit
      // transaction block (§55.2.2): an error rolls back what came before
      // it, and a cursor lives to the end of the Query. dpgate opens the
      // block upstream with BEGIN before a statement that finds no
      // transaction, and ends it after the last (docs/PROXY.md §1 item 10).
      if (TransactionStatus() == 'I' && !implicit_block_) {
        if (!co_await OpenImplicitBlock()) {
          failed = true;
          break;
        }
      }
      if (implicit_block_) {
        if (const char* what = OutsideBlockOnly(st)) {
          // As PostgreSQL: these need a block the client opened.
          SendError(MakeDiagnostic("25P01",
                                   std::string(what) + " can only be used in transaction blocks"));
          failed = true;
          break;
        }
        converts_block = st.transaction == Control::kBegin;
        ends_block = st.transaction == Control::kCommit || st.transaction == Control::kRollback;
      }
    }
    converting_block_ = converts_block;
    auto reply = co_await RunStatement(st, nullptr, 0, Route::kRelay);
    converting_block_ = false;
    if (!reply.has_value()) {
      failed = true;
      break;
    }
    if (ends_block) {
      // As PostgreSQL (xact.c, EndTransactionBlock): the implicit block is
      // ended, with the warning a COMMIT outside a block gets.
      reply->notices_before.insert(
          reply->notices_before.begin(),
          WithSeverity(MakeDiagnostic("25P01", "there is no transaction in progress"), "WARNING"));
    }
    if (st.transaction != Control::kNone) {
      // BEGIN made the implicit block the client's own; COMMIT and
      // ROLLBACK ended it. Either way dpgate no longer ends it.
      if (st.transaction != Control::kSavepoint && st.transaction != Control::kRelease &&
          st.transaction != Control::kRollbackTo) {
        implicit_block_ = false;
      }
      DropEndedCursors();
    }
    if (reply->relayed) continue;
    for (const auto& n : reply->notices_before) out_.NoticeResponse(n);
    if (reply->has_rows) {
      out_.RowDescription(reply->fields);
      for (const auto& r : reply->rows) out_.DataRow(r);
    }
    out_.CommandComplete(reply->tag);
    for (const auto& n : reply->notices_after) out_.NoticeResponse(n);
  }
  if (implicit_block_) co_await CloseImplicitBlock(failed);
  multi_statement_query_ = false;
  DropEndedCursors();
  out_.ReadyForQuery(TransactionStatus());
  MaybeReleaseUpstream();
}

// Opens a multi-statement Query's implicit transaction block upstream. False
// (the error sent) when the upstream could not be reached.
awaitable<bool> Session::OpenImplicitBlock() {
  if (!upstream_ || upstream_->broken()) {
    if (!co_await EnsureUpstream()) co_return false;
  }
  auto begun = co_await upstream_->Execute("BEGIN");
  if (!begun.ok() || begun->error.has_value() || upstream_->TransactionStatus() != 'T') {
    SendError(MakeDiagnostic("08006", "the connection to the upstream database was lost"));
    co_return false;
  }
  upstream_->TakeNotices();
  implicit_block_ = true;
  co_return true;
}

// Ends the implicit block after the Query's last statement: COMMIT when every
// statement succeeded, ROLLBACK after an error, as PostgreSQL does.
awaitable<void> Session::CloseImplicitBlock(bool failed) {
  implicit_block_ = false;
  if (!upstream_ || upstream_->broken()) {
    EndTransaction(false);
    co_return;
  }
  auto ended = co_await upstream_->Execute(failed ? "ROLLBACK" : "COMMIT");
  for (const auto& n : upstream_->TakeNotices()) {
    if (!failed) out_.NoticeResponse(n);
  }
  std::string tag = "ROLLBACK";
  if (!ended.ok()) {
    if (!failed)
      SendError(MakeDiagnostic("08006", "the connection to the upstream database was lost"));
  } else if (ended->error.has_value()) {
    if (!failed) SendError(*ended->error);
  } else {
    tag = ended->command_tag;
  }
  EndTransaction(tag == "COMMIT");
}

// The transaction-control statements PostgreSQL refuses in an implicit
// block (xact.c: DefineSavepoint, ReleaseSavepoint, RollbackToSavepoint,
// EndTransactionBlock and UserAbortTransactionBlock with chain), by the name
// its error gives them; nullptr for the others.
const char* Session::OutsideBlockOnly(const rewriter::StatementResult& st) {
  using Control = rewriter::TransactionControl;
  switch (st.transaction) {
    case Control::kSavepoint:
      return "SAVEPOINT";
    case Control::kRelease:
      return "RELEASE SAVEPOINT";
    case Control::kRollbackTo:
      return "ROLLBACK TO SAVEPOINT";
    case Control::kCommit:
      return st.transaction_chain ? "COMMIT AND CHAIN" : nullptr;
    case Control::kRollback:
      return st.transaction_chain ? "ROLLBACK AND CHAIN" : nullptr;
    default:
      return nullptr;
  }
}

// After a transaction-control statement the client ran: a SET made inside a
// transaction block is replayed on the next pooled connection (transaction
// pooling) only once that block commits; a ROLLBACK, or ROLLBACK TO a
// savepoint made before it, undoes it as the upstream did.
void Session::SettleTransaction(const rewriter::StatementResult& st, const std::string& tag) {
  using Control = rewriter::TransactionControl;
  switch (st.transaction) {
    case Control::kSavepoint:
      savepoint_marks_.push_back({st.savepoint, pending_session_sets_.size()});
      return;
    case Control::kRelease:
    case Control::kRollbackTo: {
      for (size_t i = savepoint_marks_.size(); i-- > 0;) {
        if (savepoint_marks_[i].first != st.savepoint) continue;
        if (st.transaction == Control::kRollbackTo) {
          pending_session_sets_.resize(savepoint_marks_[i].second);
          savepoint_marks_.resize(i + 1);  // the savepoint stays
        } else {
          savepoint_marks_.resize(i);
        }
        break;
      }
      return;
    }
    case Control::kCommit:
    case Control::kRollback:
      // A COMMIT of a failed block answers ROLLBACK.
      EndTransaction(st.transaction == Control::kCommit && tag == "COMMIT");
      return;
    default:
      return;
  }
}

// The open transaction block ended: its SETs join the replayed ones if it
// committed; if it rolled back (or died with its connection), the cursors it
// declared go, WITH HOLD ones too, as PostgreSQL drops an aborted
// transaction's portals.
void Session::EndTransaction(bool committed) {
  if (committed) {
    session_sets_.insert(session_sets_.end(), pending_session_sets_.begin(),
                         pending_session_sets_.end());
  } else {
    for (const auto& name : cursors_in_block_) {
      local_cursors_.erase(name);
      upstream_cursors_.erase(name);
    }
  }
  pending_session_sets_.clear();
  savepoint_marks_.clear();
  cursors_in_block_.clear();
}

void Session::SendRefusal(const rewriter::StatementResult& st,
                          std::chrono::steady_clock::time_point started) {
  SendError(MakeDiagnostic(st.reason.code.empty() ? "42501" : st.reason.code, st.reason.message));
  Audit(st, "refused", 0, 0, 0, started);
}

// GCC 12 reports -Wmismatched-new-delete on these coroutines' frames (Asio's
// class-specific frame operators paired wrongly by the inliner, wherever
// Forward and RunPrivateAggregate are inlined into a caller: a false
// positive, as in upstream.cpp's Describe).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
awaitable<std::optional<StatementReply>> Session::Forward(const std::string& sql,
                                                          const BoundParameters* parameters,
                                                          int result_format) {
  // Not a conditional expression: GCC 12 miscompiles co_await inside ?:
  // (the result is destroyed twice).
  Result<StatementOutcome> outcome = MakeError("08006", "not run");
  if (parameters == nullptr) {
    outcome = co_await upstream_->Execute(sql);
  } else {
    outcome = co_await upstream_->ExecuteWithParameters(sql, *parameters, result_format);
  }
  StatementReply reply;
  reply.notices_before = upstream_->TakeNotices();
  if (converting_block_) {
    // PostgreSQL turns an implicit block into the client's silently; the
    // upstream, inside dpgate's BEGIN, warns "already in progress".
    std::erase_if(reply.notices_before, [](const wire::Diagnostic& n) {
      return n.sqlstate == "25001" && n.severity == "WARNING";
    });
  }
  if (!outcome.ok()) {
    for (const auto& n : reply.notices_before) out_.NoticeResponse(n);
    SendError(MakeDiagnostic("08006", "the connection to the upstream database was lost"));
    co_return std::nullopt;
  }
  if (outcome->error.has_value()) {
    for (const auto& n : reply.notices_before) out_.NoticeResponse(n);
    SendError(*outcome->error);
    co_return std::nullopt;
  }
  reply.has_rows = outcome->has_rows;
  reply.fields = std::move(outcome->fields);
  reply.rows = std::move(outcome->rows);
  reply.tag = outcome->command_tag;
  co_return reply;
}

// A public or catalog statement's answer, relayed as the upstream's bytes
// into the output (docs/PROXY.md §1 item 4): no libpq parse and re-encoding of every
// row. Errors are reported exactly as Forward reports them.
awaitable<std::optional<StatementReply>> Session::Relay(const std::string& sql) {
  // Notices libpq kept from before this statement come first, as Forward
  // sends them; Relay writes this statement's own where they arrive.
  for (const auto& n : upstream_->TakeNotices()) out_.NoticeResponse(n);
  auto relayed = co_await upstream_->Relay(sql, out_);
  ReportRelayed(relayed);
  if (!relayed.ok() || relayed->error.has_value()) co_return std::nullopt;
  StatementReply reply;
  reply.relayed = true;
  reply.tag = std::move(relayed->command_tag);
  co_return reply;
}

// After a relayed statement: on an error, the notices the upstream sent with
// it and the error itself, as Forward reports them (the answer's rows were
// already taken back out of the output).
void Session::ReportRelayed(const Result<RelayedStatement>& relayed) {
  const auto notices = upstream_->TakeNotices();
  if (relayed.ok() && !relayed->error.has_value()) return;
  for (const auto& n : notices) out_.NoticeResponse(n);
  if (relayed.ok()) {
    SendError(*relayed->error);
  } else {
    SendError(MakeDiagnostic("08006", "the connection to the upstream database was lost"));
  }
}

Result<bool> Session::BeginRelayed(const rewriter::StatementResult& alone) {
  // As HandleQuery: a simple Query ends the unnamed statement and portal
  // (§55.2.2).
  statements_.erase("");
  portals_.erase("");
  for (const auto& n : upstream_->TakeNotices()) out_.NoticeResponse(n);
  const std::string& text = alone.rewritten_sql.empty() ? alone.original_sql : alone.rewritten_sql;
  return upstream_->StartRelay(text, out_);
}

void Session::EndRelayed(const rewriter::StatementResult& alone, const Error* send_error,
                         std::chrono::steady_clock::time_point started) {
  const Result<RelayedStatement> relayed =
      send_error == nullptr ? upstream_->TakeRelayed() : Result<RelayedStatement>(*send_error);
  ReportRelayed(relayed);
  Audit(alone, relayed.ok() && !relayed->error.has_value() ? "forwarded" : "upstream_error", 0, 0,
        0, started);
  DropEndedCursors();
  out_.ReadyForQuery(TransactionStatus());
  MaybeReleaseUpstream();
}

// Called with nothing buffered (Run checked), so the first step is a read
// and no handler runs before this coroutine is suspended.
awaitable<Session::RelayExit> Session::RunRelayPath() {
  co_await asio::async_initiate<decltype(use_awaitable), void()>(
      [this](auto handler) {
        relay_resume_.Hold(std::move(handler));
        Guarded([this] { RelayReadClient(); });
      },
      use_awaitable);
  co_return relay_exit_;
}

// Each handler's work runs here: an exception (from these steps only
// std::bad_alloc) must not leave the I/O thread's run(), which would end
// the process. It ends this session, as one thrown in its coroutine does.
// Every step starts its next operation or exit last, so none is pending.
template <typename Work>
void Session::Guarded(Work&& work) {
  try {
    work();
  } catch (const std::exception& e) {
    spdlog::error("session {} analyst={}: the relay path failed ({}); closing the connection",
                  peer_, analyst_, e.what());
    busy_ = false;
    Close();
    try {
      RelayExitWith(RelayExit::kClosed);
    } catch (const std::exception&) {
      // Out of memory for the exit too: the session stays suspended with
      // its socket closed rather than take the process down.
    }
  }
}

void Session::RelayExitWith(RelayExit why) {
  relay_exit_ = why;
  relay_plan_.reset();
  // Posted, not called: the coroutine resumes on its own stack frame, after
  // the handler that decided this has returned.
  asio::post(socket_.get_executor(), [this] { relay_resume_.Resume(); });
}

void Session::RelayReadClient() {
  client_deadline_.StartWaiting();
  socket_.async_read_some(asio::buffer(read_head_),
                          [this](const boost::system::error_code& error, size_t n) {
                            Guarded([&] {
                              boost::system::error_code ec = error;
                              TakeRead(n, &ec);
                              // Closed, reset, or timed out: nothing to answer.
                              if (ec) return RelayExitWith(RelayExit::kClosed);
                              RelayNextFrames();
                            });
                          });
}

// Every whole message buffered, in order, until one needs a read (of the
// client or of the upstream) or is not the relay path's to run. The checks
// are Run's, in Run's order, so that a message handed back is handled as if
// Run had read it.
void Session::RelayNextFrames() {
  while (true) {
    if (state_.draining.load()) return RelayExitWith(RelayExit::kDraining);
    auto next = decoder_.Next(&frame_);
    if (!next.ok()) {
      relay_error_ = next.error();
      return RelayExitWith(RelayExit::kMalformed);
    }
    if (!*next) return RelayReadClient();
    client_deadline_.GotMessage();
    if (frame_.type != 'Q' || skip_until_sync_) return RelayExitWith(RelayExit::kFrame);
    auto sql = wire::ParseQueryText(frame_.body);
    if (!sql.ok()) return RelayExitWith(RelayExit::kFrame);
    query_text_.assign(sql->data(), sql->size());
    relay_started_ = std::chrono::steady_clock::now();
    auto classified =
        state_.plans.ClassifyKept(query_text_, rw_session_, &plan_memo_, &relay_plan_);
    const rewriter::StatementResult* alone =
        classified.ok() ? RelayableAlone(**classified) : nullptr;
    if (alone == nullptr) return RelayExitWith(RelayExit::kFrame);
    busy_ = true;
    relay_statement_ = alone;
    auto sent = BeginRelayed(*alone);
    if (!sent.ok()) {
      relay_send_error_ = sent.error();
      if (RelayFinishStatement()) continue;
      return;
    }
    relay_send_error_.reset();
    if (!*sent) {
      const std::string_view rest = upstream_->UnsentQuery();
      asio::async_write(upstream_->relay_socket(), asio::buffer(rest.data(), rest.size()),
                        [this](const boost::system::error_code& ec, size_t) {
                          Guarded([&] {
                            if (upstream_->UnsentWritten(ec, out_).ok()) return RelayContinue();
                            if (RelayFinishStatement()) RelayNextFrames();
                          });
                        });
      return;
    }
    return RelayContinue();
  }
}

void Session::RelayContinue() {
  if (upstream_->ContinueRelay(out_) == UpstreamConnection::RelayProgress::kNeedRead) {
    return RelayReadUpstream();
  }
  if (RelayFinishStatement()) RelayNextFrames();
}

void Session::RelayReadUpstream() {
  const asio::mutable_buffer into = upstream_->RelayReadBuffer();
  upstream_->relay_socket().async_read_some(into, [this](const boost::system::error_code& ec,
                                                         size_t n) {
    Guarded([&] {
      if (upstream_->RelayReceived(ec, n, out_) == UpstreamConnection::RelayProgress::kNeedRead) {
        return RelayReadUpstream();
      }
      if (RelayFinishStatement()) RelayNextFrames();
    });
  });
}

// The statement's end and its answer's send. True when the answer is sent
// and the caller goes on with the next message; false when a write or the
// exit took over.
bool Session::RelayFinishStatement() {
  EndRelayed(*relay_statement_, relay_send_error_ ? &*relay_send_error_ : nullptr, relay_started_);
  relay_statement_ = nullptr;
  relay_plan_.reset();  // an idle session keeps no long text
  busy_ = false;
  switch (FlushNow()) {
    case FlushState::kDone:
      return true;
    case FlushState::kFailed:
      RelayExitWith(RelayExit::kClosed);
      return false;
    case FlushState::kPending:
      break;
  }
  asio::async_write(socket_, asio::buffer(out_.buffer()),
                    [this](const boost::system::error_code& ec, size_t) {
                      Guarded([&] {
                        if (ec) return RelayExitWith(RelayExit::kClosed);
                        out_.Clear();
                        RelayNextFrames();
                      });
                    });
  return false;
}

// The one statement of a simple Query that Run and the relay path may relay:
// public or catalog, nothing RunStatement would treat otherwise (a cursor,
// SQL PREPARE/EXECUTE, an unmaskable size read), on an upstream connection
// the session holds and that can relay. Anything else is nullptr, and
// HandleQuery runs the Query.
const rewriter::StatementResult* Session::RelayableAlone(
    const std::vector<rewriter::StatementResult>& classified) {
  if (classified.size() != 1) return nullptr;
  const rewriter::StatementResult& st = classified.front();
  if (st.statement_class != rewriter::StatementClass::kPublic &&
      st.statement_class != rewriter::StatementClass::kCatalog) {
    return nullptr;
  }
  if (st.cursor.has_value() || st.sql_prepare.has_value() || st.sql_execute.has_value() ||
      st.reads_size_catalog || st.new_search_path.has_value()) {
    return nullptr;
  }
  if (!upstream_ || upstream_->broken() || !upstream_->CanRelay()) return nullptr;
  return &st;
}

awaitable<std::optional<StatementReply>> Session::RunStatement(const rewriter::StatementResult& st,
                                                               const BoundParameters* parameters,
                                                               int result_format, Route route) {
  const auto started = std::chrono::steady_clock::now();
  // Every statement below may use the upstream; one that gave it back
  // earlier (DISCARD ALL) or saw it break must not leave the next without.
  if (!upstream_ || upstream_->broken()) {
    if (!co_await EnsureUpstream()) co_return std::nullopt;
  }
  if (st.cursor.has_value() && st.statement_class != rewriter::StatementClass::kRefused) {
    co_return co_await RunCursorStatement(st, parameters);
  }
  if (st.sql_prepare.has_value() || st.sql_execute.has_value()) {
    co_return co_await RunSqlPrepared(st);
  }
  switch (st.statement_class) {
    case rewriter::StatementClass::kPublic:
    case rewriter::StatementClass::kCatalog:
    case rewriter::StatementClass::kSession: {
      if (st.reads_size_catalog) {
        // The rewriter masks the size reads it can and refuses the rest; a
        // statement still flagged here would show real sizes: refuse it
        // (DESIGN.md §2, docs/REWRITER.md §3.3).
        SendError(MakeDiagnostic(
            "0A000", "dpgate cannot mask the table sizes this catalog query reads",
            "name the pg_class columns you need instead of *, and qualify size columns"));
        Audit(st, "refused", 0, 0, 0, started);
        co_return std::nullopt;
      }
      if (st.statement_class == rewriter::StatementClass::kSession) {
        if (auto local = RunLocalSessionStatement(st); local.has_value()) {
          Audit(st, local->has_value() ? "local" : "refused", 0, 0, 0, started);
          co_return std::move(*local);
        }
      }
      if (st.new_search_path.has_value()) {
        // dpgate keeps the session's search_path itself and resolves names
        // with it; the upstream's stays pinned (DESIGN.md §2).
        rw_session_.search_path = *st.new_search_path;
        Audit(st, "local", 0, 0, 0, started);
        StatementReply reply;
        reply.tag = "SET";
        co_return reply;
      }
      const std::string& sql = st.rewritten_sql.empty() ? st.original_sql : st.rewritten_sql;
      // Session statements (SET, BEGIN, ...) stay on libpq, which must see
      // the settings and transaction state they change.
      std::optional<StatementReply> reply;
      if (route == Route::kRelay && parameters == nullptr &&
          st.statement_class != rewriter::StatementClass::kSession && upstream_->CanRelay()) {
        reply = co_await Relay(sql);
      } else {
        reply = co_await Forward(sql, parameters, result_format);
      }
      if (reply.has_value() && st.statement_class == rewriter::StatementClass::kSession &&
          state_.config.upstream.pool_mode == config::PoolMode::kTransaction &&
          (reply->tag == "SET" || reply->tag == "RESET") && sql.rfind("SET LOCAL", 0) != 0) {
        // Replayed on the next pooled connection (docs/CONFIG.md, pooling).
        if (session_sets_.size() + pending_session_sets_.size() >= kMaxSessionSets) {
          SendError(MakeDiagnostic("54000", "too many SET statements in one session",
                                   "with upstream.pool_mode: transaction dpgate replays at most " +
                                       std::to_string(kMaxSessionSets)));
          co_return std::nullopt;
        }
        // Inside a transaction block it waits for the block's COMMIT.
        if (TransactionStatus() == 'I') {
          session_sets_.push_back(sql);
        } else {
          pending_session_sets_.push_back(sql);
        }
      }
      if (reply.has_value() && st.transaction != rewriter::TransactionControl::kNone) {
        SettleTransaction(st, reply->tag);
      }
      Audit(st, reply.has_value() ? "forwarded" : "upstream_error", 0, 0, 0, started);
      co_return reply;
    }
    case rewriter::StatementClass::kDpgateCommand:
      co_return co_await RunDpgateCommand(st);
    case rewriter::StatementClass::kPrivateAggregate:
      co_return co_await RunPrivateAggregate(st, parameters);
    case rewriter::StatementClass::kRefused:
      SendRefusal(st, started);
      co_return std::nullopt;
  }
  co_return std::nullopt;
}

// DECLARE, FETCH, MOVE and CLOSE (docs/PROXY.md §1 item 9). A cursor
// over a private aggregate is dpgate's: the aggregate is charged and
// released once, at DECLARE, and FETCH reads the released rows. Cursors
// over public or catalog queries are the upstream's, and FETCH/MOVE/CLOSE
// are forwarded only for names declared through dpgate.
awaitable<std::optional<StatementReply>> Session::RunCursorStatement(
    const rewriter::StatementResult& st, const BoundParameters* parameters) {
  using Kind = rewriter::StatementResult::Cursor::Kind;
  const auto started = std::chrono::steady_clock::now();
  const auto& cursor = *st.cursor;
  const auto exists = [this](const std::string& name) {
    return local_cursors_.count(name) > 0 || upstream_cursors_.count(name) > 0;
  };
  if (cursor.kind == Kind::kDeclare) {
    if (exists(cursor.name)) {
      SendError(MakeDiagnostic("42P03", "cursor \"" + cursor.name + "\" already exists"));
      co_return std::nullopt;
    }
    if (local_cursors_.size() + upstream_cursors_.size() >= kMaxCursorsPerSession) {
      SendError(MakeDiagnostic("54000", "too many open cursors in this session",
                               "CLOSE the cursors you no longer need"));
      co_return std::nullopt;
    }
    if (st.statement_class != rewriter::StatementClass::kPrivateAggregate) {
      auto reply = co_await Forward(st.rewritten_sql, parameters, 0);
      if (reply.has_value()) {
        upstream_cursors_[cursor.name] = cursor.hold;
        if (TransactionStatus() != 'I') cursors_in_block_.insert(cursor.name);
      }
      Audit(st, reply.has_value() ? "forwarded" : "upstream_error", 0, 0, 0, started);
      co_return reply;
    }
    if (!cursor.hold && TransactionStatus() == 'I') {
      // As PostgreSQL: without a transaction the cursor would end at once.
      SendError(MakeDiagnostic("25P01", "DECLARE CURSOR can only be used in transaction blocks",
                               "run BEGIN first, or declare it WITH HOLD"));
      co_return std::nullopt;
    }
    auto released = co_await RunPrivateAggregate(st, parameters);
    if (!released.has_value()) co_return std::nullopt;
    LocalCursor local;
    local.fields = std::move(released->fields);
    local.rows = std::move(released->rows);
    local.hold = cursor.hold;
    local_cursors_[cursor.name] = std::move(local);
    if (TransactionStatus() != 'I') cursors_in_block_.insert(cursor.name);
    StatementReply reply;
    reply.tag = "DECLARE CURSOR";
    reply.notices_before = std::move(released->notices_before);
    reply.notices_after = std::move(released->notices_after);  // the privacy receipt
    co_return reply;
  }
  if (cursor.kind == Kind::kClose && cursor.name.empty()) {  // CLOSE ALL
    local_cursors_.clear();
    std::optional<StatementReply> reply = StatementReply{};
    if (!upstream_cursors_.empty()) {
      reply = co_await Forward(st.rewritten_sql, parameters, 0);
      upstream_cursors_.clear();
    }
    if (reply.has_value()) reply->tag = "CLOSE CURSOR";
    Audit(st, "local", 0, 0, 0, started);
    co_return reply;
  }
  auto local = local_cursors_.find(cursor.name);
  if (local == local_cursors_.end()) {
    if (upstream_cursors_.count(cursor.name) == 0) {
      SendError(MakeDiagnostic("34000", "cursor \"" + cursor.name + "\" does not exist"));
      co_return std::nullopt;
    }
    if (cursor.kind == Kind::kClose) upstream_cursors_.erase(cursor.name);
    auto reply = co_await Forward(st.rewritten_sql, parameters, 0);
    Audit(st, reply.has_value() ? "forwarded" : "upstream_error", 0, 0, 0, started);
    co_return reply;
  }
  StatementReply reply;
  if (cursor.kind == Kind::kClose) {
    local_cursors_.erase(local);
    reply.tag = "CLOSE CURSOR";
    Audit(st, "local", 0, 0, 0, started);
    co_return reply;
  }
  if (!cursor.forward || cursor.count < -1) {
    SendError(MakeDiagnostic(
        "55000", "cursor \"" + cursor.name + "\" over a private aggregate can only move forward",
        "use FETCH [FORWARD] n, FETCH NEXT or FETCH ALL"));
    co_return std::nullopt;
  }
  LocalCursor& c = local->second;
  const size_t left = c.rows.size() - c.next_row;
  const size_t n = cursor.count < 0 ? left : std::min(left, static_cast<size_t>(cursor.count));
  const bool fetch = cursor.kind == Kind::kFetch;
  if (fetch) {
    reply.has_rows = true;
    reply.fields = c.fields;
    reply.rows.assign(c.rows.begin() + static_cast<std::ptrdiff_t>(c.next_row),
                      c.rows.begin() + static_cast<std::ptrdiff_t>(c.next_row + n));
  }
  c.next_row += n;
  reply.tag = std::string(fetch ? "FETCH " : "MOVE ") + std::to_string(n);
  Audit(st, "local", 0, 0, fetch ? n : 0, started);
  co_return reply;
}

// SQL-level PREPARE and EXECUTE (docs/REWRITER.md §4.6): PREPARE keeps the
// statement's text; EXECUTE binds the arguments into the prepared query on
// the parse trees and runs the result like any statement the client sends
// (classified, and for a private aggregate charged, each time).
awaitable<std::optional<StatementReply>> Session::RunSqlPrepared(
    const rewriter::StatementResult& st) {
  const auto started = std::chrono::steady_clock::now();
  if (st.sql_prepare.has_value()) {
    const std::string& name = *st.sql_prepare;
    if (sql_prepared_.count(name) > 0 || statements_.count(name) > 0) {
      SendError(MakeDiagnostic("42P05", "prepared statement \"" + name + "\" already exists"));
      co_return std::nullopt;
    }
    if (sql_prepared_.size() + statements_.size() >= kMaxPreparedPerSession) {
      SendError(MakeDiagnostic("54000", "too many prepared statements in this session",
                               "DEALLOCATE the ones you no longer need"));
      co_return std::nullopt;
    }
    sql_prepared_[name] = st.original_sql;
    Audit(st, "local", 0, 0, 0, started);
    StatementReply reply;
    reply.tag = "PREPARE";
    co_return reply;
  }
  const auto found = sql_prepared_.find(*st.sql_execute);
  if (found == sql_prepared_.end()) {
    SendError(
        MakeDiagnostic("26000", "prepared statement \"" + *st.sql_execute + "\" does not exist"));
    co_return std::nullopt;
  }
  auto bound = rewriter::BindSqlExecute(found->second, st.original_sql);
  if (!bound.ok()) {
    SendError(MakeDiagnostic(bound.error().code, bound.error().message));
    co_return std::nullopt;
  }
  auto classified = state_.plans.Classify(*bound, rw_session_);
  if (!classified.ok() || (*classified)->size() != 1) {
    SendError(MakeDiagnostic("XX000", "dpgate could not analyse this query",
                             "the statement was not run; report it to the administrator"));
    co_return std::nullopt;
  }
  const rewriter::StatementResult& run = (*classified)->front();
  if (run.statement_class == rewriter::StatementClass::kRefused) {
    SendRefusal(run, started);
    co_return std::nullopt;
  }
  co_return co_await RunStatement(run, nullptr, 0);
}

// A cursor declared without HOLD ends with its transaction, as in
// PostgreSQL (upstream ones end there by themselves: forget their names).
void Session::DropEndedCursors() {
  if (TransactionStatus() != 'I') return;
  for (auto it = local_cursors_.begin(); it != local_cursors_.end();) {
    it = it->second.hold ? std::next(it) : local_cursors_.erase(it);
  }
  for (auto it = upstream_cursors_.begin(); it != upstream_cursors_.end();) {
    it = it->second ? std::next(it) : upstream_cursors_.erase(it);
  }
}

awaitable<std::optional<StatementReply>> Session::RunDpgateCommand(
    const rewriter::StatementResult& st) {
  const auto started = std::chrono::steady_clock::now();
  StatementReply reply;
  using K = rewriter::DpgateCommandKind;
  switch (st.command) {
    case K::kSetEpsilon: {
      const double v = st.command_value.value_or(-1);
      if (!(v > 0) || v > state_.config.query.max_epsilon) {
        SendError(MakeDiagnostic("22023",
                                 "dp.epsilon must be greater than 0 and at most " +
                                     FormatDouble(state_.config.query.max_epsilon),
                                 "the maximum is query.max_epsilon in the dpgate config"));
        co_return std::nullopt;
      }
      epsilon_ = v;
      reply.tag = "SET";
      break;
    }
    case K::kSetDelta: {
      const double v = st.command_value.value_or(-1);
      if (!(v >= 0) || !(v < 1)) {
        SendError(MakeDiagnostic("22023", "dp.delta must be in [0, 1)"));
        co_return std::nullopt;
      }
      delta_ = v;
      reply.tag = "SET";
      break;
    }
    case K::kResetEpsilon:
      epsilon_ = state_.config.query.epsilon;
      reply.tag = "RESET";
      break;
    case K::kResetDelta:
      delta_ = state_.config.query.delta;
      reply.tag = "RESET";
      break;
    case K::kShowEpsilon:
      reply = TextReply(LocalColumns(st.command), {{FormatDouble(epsilon_)}}, "SHOW");
      break;
    case K::kShowDelta:
      reply = TextReply(LocalColumns(st.command), {{FormatDouble(delta_)}}, "SHOW");
      break;
    case K::kShowBudget: {
      using Budgets = Result<std::vector<accountant::BudgetState>>;
      // Captures only `this`: GCC 12 mis-destroys non-trivial captures of a
      // lambda temporary inside a co_await expression.
      auto budgets = co_await OnBlockingPool<Budgets>(state_, [this]() -> Budgets {
        std::lock_guard lock(state_.budget_ledger_mutex);
        if (!state_.budget_ledger || state_.budget_ledger->broken()) {
          accountant::LedgerOptions o;
          o.dsn = state_.config.ledger.dsn;
          o.schema = state_.config.ledger.schema;
          o.migrate = false;
          auto l = accountant::Ledger::Open(o);
          if (!l.ok()) return l.error();
          state_.budget_ledger = std::move(*l);
        }
        // The analyst's own budgets and every dataset's global budget.
        accountant::BudgetFilter mine;
        mine.analyst = analyst_;
        return state_.budget_ledger->Budgets(mine);
      });
      if (!budgets.ok()) {
        SendError(MakeDiagnostic("58000", "the privacy ledger is unavailable; try again later"));
        co_return std::nullopt;
      }
      std::vector<std::vector<std::optional<std::string>>> rows;
      for (const auto& b : *budgets) {
        rows.push_back({b.dataset, std::string(accountant::ToString(b.kind)), b.principal,
                        b.period_label, FormatDouble(b.remaining_epsilon()),
                        FormatDouble(b.remaining_delta()), FormatDouble(b.spent_epsilon),
                        FormatDouble(b.granted_epsilon)});
      }
      reply = TextReply(LocalColumns(st.command), rows, "SHOW");
      break;
    }
    case K::kExplainDp: {
      if (!st.plan.has_value()) {
        SendError(MakeDiagnostic("0A000", "EXPLAIN (DP) needs a private aggregate"));
        co_return std::nullopt;
      }
      auto planned = PlanRelease(*st.plan, Budget());
      if (!planned.ok()) {
        SendError(MakeDiagnostic("22023", planned.error().message));
        co_return std::nullopt;
      }
      std::vector<std::vector<std::optional<std::string>>> rows;
      auto add = [&rows](const std::string& s) { rows.push_back({s}); };
      std::istringstream text(rewriter::ToText(st));
      for (std::string line; std::getline(text, line);) add(line);
      add("budget: epsilon=" + FormatDouble(planned->epsilon) +
          " delta=" + FormatDouble(planned->delta) + " (nothing is spent by EXPLAIN)");
      for (const auto& r : planned->receipts) {
        std::string line = "column " + r.name + ": " + r.role + ", " + r.mechanism +
                           ", epsilon=" + FormatDouble(r.epsilon) +
                           ", scale=" + FormatDouble(r.noise_scale);
        if (r.error_bound_95) line += ", 95% error bound ±" + FormatDouble(*r.error_bound_95);
        if (!r.clamp.empty()) line += ", " + r.clamp;
        add(line);
      }
      add("partition selection: " + planned->selection);
      reply = TextReply(LocalColumns(st.command), rows, "EXPLAIN");
      break;
    }
    case K::kNone:
      SendError(MakeDiagnostic("0A000", "unknown dpgate command"));
      co_return std::nullopt;
  }
  Audit(st, "local", 0, 0, 0, started);
  co_return reply;
}

awaitable<std::optional<StatementReply>> Session::RunPrivateAggregate(
    const rewriter::StatementResult& st, const BoundParameters* parameters) {
  const auto started = std::chrono::steady_clock::now();
  if (!st.plan.has_value()) {
    SendError(MakeDiagnostic("XX000", "internal error: a private aggregate without a plan"));
    co_return std::nullopt;
  }
  const QueryBudget budget = Budget();
  auto planned = PlanRelease(*st.plan, budget);
  if (!planned.ok()) {
    SendError(MakeDiagnostic("22023",
                             "this query cannot be released with the current "
                             "settings: " +
                                 planned.error().message,
                             "check SET dp.epsilon / dp.delta"));
    Audit(st, "refused", 0, 0, 0, started);
    co_return std::nullopt;
  }
  const std::string cache_key = CacheKey(analyst_, st, budget, parameters);
  const auto ttl = state_.config.query.cache_ttl;
  if (ttl.count() > 0) {
    std::optional<Released> hit;
    {
      std::lock_guard lock(state_.cache_mutex);
      auto it = state_.cache.find(cache_key);
      if (it != state_.cache.end()) {
        if (std::chrono::steady_clock::now() - it->second.at < ttl) {
          hit = it->second.released;
        } else {
          state_.cache.erase(it);
        }
      }
    }
    if (hit.has_value()) {
      StatementReply reply = ReleasedReply(*hit);
      reply.notices_after.push_back(WithSeverity(
          MakeDiagnostic("00000",
                         "dpgate: cached answer (the same noisy rows as before), 0 charged"),
          "NOTICE"));
      Audit(st, "cached", 0, 0, hit->rows.size(), started);
      co_return reply;
    }
  }
  // A statement the upstream would reject before running it (a parameter
  // that is missing or does not fit its type) must not cost budget: EXPLAIN
  // binds and plans the rewritten SQL with the same values and runs nothing.
  // Only for statements with parameters, where such errors are possible.
  if ((parameters != nullptr && !parameters->values.empty()) ||
      MentionsParameter(st.rewritten_sql)) {
    Result<StatementOutcome> check = MakeError("08006", "not run");
    const std::string explain = "EXPLAIN " + st.rewritten_sql;
    if (parameters == nullptr) {
      check = co_await upstream_->Execute(explain);
    } else {
      check = co_await upstream_->ExecuteWithParameters(explain, *parameters, 0);
    }
    upstream_->TakeNotices();
    if (!check.ok()) {
      SendError(MakeDiagnostic("08006", "the connection to the upstream database was lost"));
      co_return std::nullopt;
    }
    if (check->error.has_value()) {
      // Nothing ran, so the message is about the query and its parameters,
      // never about data.
      SendError(*check->error);
      Audit(st, "refused:" + check->error->sqlstate, 0, 0, 0, started);
      co_return std::nullopt;
    }
  }
  // The charge is durable before anything runs upstream (DESIGN.md §1 step 3).
  accountant::ChargeRequest request;
  request.analyst = analyst_;
  request.dataset = st.dataset;
  request.epsilon = planned->epsilon;
  request.delta = planned->delta;
  request.fingerprint = st.fingerprint_hex;
  request.original_sql = st.original_sql;
  request.rewritten_sql = st.rewritten_sql;
  auto receipt = co_await ChargeLedger(*state_.ledger, request);
  if (!receipt.ok()) {
    // accountant/ refuses an over-budget charge with "ledger.refused"; any
    // other error means the ledger could not charge: fail closed either way.
    const bool refused = receipt.error().code == "ledger.refused";
    SendError(MakeDiagnostic(refused ? "53400" : "58000",
                             refused ? receipt.error().message
                                     : "the privacy ledger is unavailable, so nothing was run: " +
                                           receipt.error().message));
    Audit(st, refused ? "budget_refused" : "ledger_unavailable", 0, 0, 0, started);
    co_return std::nullopt;
  }
  // Not a conditional expression: GCC 12 miscompiles co_await inside ?:.
  Result<StatementOutcome> outcome = MakeError("08006", "not run");
  if (parameters == nullptr) {
    outcome = co_await upstream_->Execute(st.rewritten_sql);
  } else {
    outcome = co_await upstream_->ExecuteWithParameters(st.rewritten_sql, *parameters, 0);
  }
  upstream_->TakeNotices();  // upstream notices may quote data: never relayed here
  if (!outcome.ok() || outcome->error.has_value()) {
    // The error text may carry a data value: the client gets a generic error,
    // the audit log only the SQLSTATE, and the charge stands (DESIGN.md §2).
    SendError(MakeDiagnostic("XX000",
                             "the private query failed upstream; the charge of epsilon=" +
                                 FormatDouble(planned->epsilon) + " stands",
                             "ask the administrator to look up this query's fingerprint " +
                                 st.fingerprint_hex + " in the audit log"));
    Audit(st, "upstream_error:" + (outcome.ok() ? outcome->error->sqlstate : std::string("08006")),
          planned->epsilon, planned->delta, 0, started);
    co_return std::nullopt;
  }
  UpstreamRows rows;
  for (const auto& f : outcome->fields) {
    rows.column_names.push_back(f.name);
    rows.type_oids.push_back(f.type_oid);
  }
  rows.rows = std::move(outcome->rows);
  auto released = ApplyReleasePlan(*st.plan, budget, rows, mechanisms::SecureRandom());
  if (!released.ok()) {
    SendError(MakeDiagnostic("XX000", "dpgate could not release this result; the charge stands"));
    Audit(st, "release_error", planned->epsilon, planned->delta, 0, started);
    co_return std::nullopt;
  }
  if (ttl.count() > 0) {
    std::lock_guard lock(state_.cache_mutex);
    const auto now = std::chrono::steady_clock::now();
    // Bounded memory: drop expired answers, then arbitrary ones, past the cap.
    // Dropping an entry only means a later identical query is charged again.
    if (state_.cache.size() >= ServerState::kCacheCapacity) {
      std::erase_if(state_.cache, [&](const auto& e) { return now - e.second.at >= ttl; });
      while (state_.cache.size() >= ServerState::kCacheCapacity)
        state_.cache.erase(state_.cache.begin());
    }
    state_.cache[cache_key] = ServerState::CachedRelease{*released, now};
  }
  StatementReply reply = ReleasedReply(*released);
  // The privacy receipt: data-independent facts only (never how many groups
  // were suppressed).
  std::ostringstream n;
  n << "dpgate: charged epsilon=" << FormatDouble(planned->epsilon)
    << " delta=" << FormatDouble(planned->delta) << "; remaining: analyst " << analyst_
    << " epsilon=" << FormatDouble(receipt->analyst.remaining_epsilon()) << ", dataset "
    << st.dataset << " epsilon=" << FormatDouble(receipt->dataset.remaining_epsilon());
  for (const auto& c : released->receipts) {
    n << "; " << c.name << ": " << c.mechanism << " scale " << FormatDouble(c.noise_scale);
    if (c.error_bound_95) n << " (95% within ±" << FormatDouble(*c.error_bound_95) << ")";
    if (!c.clamp.empty()) n << ", " << c.clamp;
  }
  n << "; partition selection: " << released->selection;
  reply.notices_after.push_back(WithSeverity(MakeDiagnostic("00000", n.str()), "NOTICE"));
  Audit(st, "released", planned->epsilon, planned->delta, released->rows.size(), started);
  co_return reply;
}

#pragma GCC diagnostic pop

// ---- Extended query protocol (§55.2.3) -------------------------------------
//
// Private aggregates are classified and rewritten at Parse, where the
// rewritten SQL is also described upstream (nothing runs) so that a bad
// parameter or type fails before any charge. The charge is taken once per
// portal, at its first Execute; later Executes of a suspended portal only
// hand out the rest of the released rows.

awaitable<bool> Session::HandleExtended(const wire::Frame& frame) {
  if (frame.type == 'S') {
    // Sync ends error recovery and the implicit transaction; portals live
    // until then unless a transaction block is open (§55.2.3).
    skip_until_sync_ = false;
    if (TransactionStatus() == 'I') portals_.clear();
    DropEndedCursors();
    out_.ReadyForQuery(TransactionStatus());
    MaybeReleaseUpstream();
    co_return co_await Flush();
  }
  if (frame.type == 'H') co_return co_await Flush();
  // After an error every message up to Sync is discarded.
  if (skip_until_sync_) co_return true;
  Step step = Step::kOk;
  switch (frame.type) {
    case 'P':
      step = co_await HandleParse(frame.body);
      break;
    case 'B':
      step = HandleBind(frame.body);
      break;
    case 'D':
      step = co_await HandleDescribe(frame.body);
      break;
    case 'E':
      step = co_await HandleExecute(frame.body);
      break;
    case 'C':
      step = HandleClose(frame.body);
      break;
    default:
      break;
  }
  if (step == Step::kClose) co_return false;
  if (step == Step::kError) skip_until_sync_ = true;
  // Large results go out as they are produced, not all at Sync.
  if (out_.buffer().size() > kFlushThreshold) co_return co_await Flush();
  co_return true;
}

awaitable<Session::Step> Session::ProtocolViolation(const Error& error) {
  co_await Fatal(error.code.empty() ? "08P01" : error.code, error.message);
  co_return Step::kClose;
}

awaitable<Session::Step> Session::HandleParse(std::string_view body) {
  const auto started = std::chrono::steady_clock::now();
  auto message = wire::ParseParse(body);
  if (!message.ok()) co_return co_await ProtocolViolation(message.error());
  if (!message->statement.empty() && statements_.count(message->statement) != 0) {
    SendError(MakeDiagnostic("42P05",
                             "prepared statement \"" + message->statement + "\" already exists"));
    co_return Step::kError;
  }
  if (statements_.size() >= kMaxPreparedPerSession && !message->statement.empty()) {
    SendError(MakeDiagnostic("54000", "too many prepared statements in this session",
                             "close prepared statements the client no longer needs"));
    co_return Step::kError;
  }
  auto classified = state_.plans.Classify(message->query, rw_session_, &plan_memo_);
  if (!classified.ok()) {
    SendError(MakeDiagnostic("XX000", "dpgate could not analyse this query",
                             "the statement was not run; report it to the administrator"));
    spdlog::error("session {} analyst={}: internal rewriter error", peer_, analyst_);
    co_return Step::kError;
  }
  auto statement = std::make_shared<PreparedStatement>();
  statement->classified = *classified;
  for (int32_t t : message->parameter_types) {
    statement->parameter_types.push_back(static_cast<uint32_t>(t));
  }
  if (statement->classified->size() > 1) {
    SendError(MakeDiagnostic("42601", "cannot insert multiple commands into a prepared statement",
                             "send one statement per Parse message"));
    co_return Step::kError;
  }
  if (statement->classified->size() == 1) {
    const rewriter::StatementResult& st = statement->classified->front();
    if (st.statement_class == rewriter::StatementClass::kRefused) {
      SendRefusal(st, started);
      co_return Step::kError;
    }
    if (st.sql_prepare.has_value() || st.sql_execute.has_value()) {
      SendError(MakeDiagnostic("0A000",
                               "SQL-level PREPARE/EXECUTE inside the extended query protocol is "
                               "not supported by dpgate",
                               "send it as a simple query, or use the protocol's own prepared "
                               "statements (Parse/Bind/Execute)"));
      co_return Step::kError;
    }
    if (st.statement_class == rewriter::StatementClass::kPrivateAggregate) {
      if (!co_await EnsureUpstream()) co_return Step::kError;
      if (!co_await DescribeUpstream(*statement)) co_return Step::kError;
      const auto& description = *statement->description;
      std::vector<int32_t> types;
      for (const auto& f : description.fields) types.push_back(f.type_oid);
      if (!st.plan.has_value() || !ReleasedFields(*st.plan, types).ok()) {
        SendError(MakeDiagnostic("XX000", "dpgate could not plan the release of this query"));
        co_return Step::kError;
      }
    }
  }
  statements_[message->statement] = std::move(statement);
  out_.ParseComplete();
  co_return Step::kOk;
}

// Describes the statement's SQL upstream once and keeps the answer. False when
// an error was sent.
awaitable<bool> Session::DescribeUpstream(PreparedStatement& statement) {
  if (statement.description.has_value()) co_return true;
  const rewriter::StatementResult& st = statement.classified->front();
  const std::string& sql = st.rewritten_sql.empty() ? st.original_sql : st.rewritten_sql;
  auto description = co_await upstream_->Describe(sql, statement.parameter_types);
  upstream_->TakeNotices();
  if (!description.ok()) {
    SendError(MakeDiagnostic("08006", "the connection to the upstream database was lost"));
    co_return false;
  }
  if (description->error.has_value()) {
    // A describe error is about names and types, never data: nothing ran.
    SendError(*description->error);
    co_return false;
  }
  statement.description = std::move(*description);
  co_return true;
}

// A malformed message is a protocol violation: the FATAL is queued and the
// connection ends (Run flushes and closes on kClose).
Session::Step Session::QueueViolation(const Error& error) {
  out_.ErrorResponse(WithSeverity(
      MakeDiagnostic(error.code.empty() ? "08P01" : error.code, error.message), "FATAL"));
  return Step::kClose;
}

Session::Step Session::HandleBind(std::string_view body) {
  auto message = wire::ParseBind(body);
  if (!message.ok()) return QueueViolation(message.error());
  auto it = statements_.find(message->statement);
  if (it == statements_.end()) {
    SendError(MakeDiagnostic("26000",
                             "prepared statement \"" + message->statement + "\" does not exist"));
    return Step::kError;
  }
  if (!message->portal.empty() && portals_.count(message->portal) != 0) {
    SendError(MakeDiagnostic("42P03", "portal \"" + message->portal + "\" already exists"));
    return Step::kError;
  }
  if (portals_.size() >= kMaxPreparedPerSession) {
    SendError(MakeDiagnostic("54000", "too many open portals in this session"));
    return Step::kError;
  }
  const PreparedStatement& statement = *it->second;
  const size_t n = message->parameters.size();
  if (statement.description.has_value() && statement.description->parameter_types.size() != n) {
    SendError(
        MakeDiagnostic("08P01", "bind message supplies " + std::to_string(n) +
                                    " parameters, but prepared statement \"" + message->statement +
                                    "\" requires " +
                                    std::to_string(statement.description->parameter_types.size())));
    return Step::kError;
  }
  Portal portal;
  portal.statement = it->second;
  portal.parameters.types = statement.parameter_types;
  if (portal.parameters.types.size() > n) portal.parameters.types.resize(n);
  portal.parameters.values = std::move(message->parameters);
  for (size_t i = 0; i < n; ++i) {
    const auto& f = message->parameter_formats;
    portal.parameters.formats.push_back(f.empty() ? 0 : (f.size() == 1 ? f[0] : f[i]));
  }
  portal.result_formats = std::move(message->result_formats);
  portals_[message->portal] = std::move(portal);
  out_.BindComplete();
  return Step::kOk;
}

// The columns a statement returns, without running it. nullopt: an error
// was sent.
awaitable<std::optional<RowShape>> Session::DescribeRows(PreparedStatement& statement) {
  RowShape shape;
  if (statement.classified->empty()) co_return shape;
  const rewriter::StatementResult& st = statement.classified->front();
  if (st.cursor.has_value() && st.statement_class != rewriter::StatementClass::kRefused) {
    // DECLARE, MOVE and CLOSE return no rows; FETCH from dpgate's own cursor
    // returns its released columns, FETCH from an upstream cursor whatever
    // the upstream describes.
    using Kind = rewriter::StatementResult::Cursor::Kind;
    if (st.cursor->kind != Kind::kFetch) co_return shape;
    auto local = local_cursors_.find(st.cursor->name);
    if (local != local_cursors_.end()) {
      shape.fields = local->second.fields;
      shape.has_rows = true;
      co_return shape;
    }
    if (upstream_cursors_.count(st.cursor->name) == 0) {
      SendError(MakeDiagnostic("34000", "cursor \"" + st.cursor->name + "\" does not exist"));
      co_return std::nullopt;
    }
  }
  switch (st.statement_class) {
    case rewriter::StatementClass::kDpgateCommand:
      for (const auto& name : LocalColumns(st.command)) {
        wire::FieldDescription f;
        f.name = name;
        shape.fields.push_back(f);
      }
      shape.has_rows = !shape.fields.empty();
      co_return shape;
    case rewriter::StatementClass::kPrivateAggregate: {
      std::vector<int32_t> types;
      for (const auto& f : statement.description->fields) types.push_back(f.type_oid);
      auto fields = ReleasedFields(*st.plan, types);
      if (!fields.ok()) {
        SendError(MakeDiagnostic("XX000", "dpgate could not plan the release of this query"));
        co_return std::nullopt;
      }
      shape.fields = ToFieldDescriptions(*fields);
      shape.has_rows = true;
      co_return shape;
    }
    case rewriter::StatementClass::kRefused:
      SendRefusal(st, std::chrono::steady_clock::now());
      co_return std::nullopt;
    default:
      break;
  }
  if (st.new_search_path.has_value()) co_return shape;  // answered locally: no rows
  if (!co_await EnsureUpstream()) co_return std::nullopt;
  if (!co_await DescribeUpstream(statement)) co_return std::nullopt;
  shape.fields = statement.description->fields;
  shape.has_rows = statement.description->has_rows;
  co_return shape;
}

awaitable<Session::Step> Session::HandleDescribe(std::string_view body) {
  auto message = wire::ParseDescribe(body);
  if (!message.ok()) co_return co_await ProtocolViolation(message.error());
  if (message->kind == 'S') {
    auto it = statements_.find(message->name);
    if (it == statements_.end()) {
      SendError(
          MakeDiagnostic("26000", "prepared statement \"" + message->name + "\" does not exist"));
      co_return Step::kError;
    }
    std::shared_ptr<PreparedStatement> statement = it->second;
    auto shape = co_await DescribeRows(*statement);
    if (!shape.has_value()) co_return Step::kError;
    std::vector<int32_t> parameter_types;
    if (statement->description.has_value()) {
      parameter_types = statement->description->parameter_types;
    } else {
      for (uint32_t t : statement->parameter_types) {
        parameter_types.push_back(static_cast<int32_t>(t));
      }
    }
    out_.ParameterDescription(parameter_types);
    if (shape->has_rows) {
      for (auto& f : shape->fields) f.format = 0;  // formats are not known before Bind
      out_.RowDescription(shape->fields);
    } else {
      out_.NoData();
    }
    co_return Step::kOk;
  }
  auto it = portals_.find(message->name);
  if (it == portals_.end()) {
    SendError(MakeDiagnostic("34000", "portal \"" + message->name + "\" does not exist"));
    co_return Step::kError;
  }
  std::shared_ptr<PreparedStatement> statement = it->second.statement;
  auto shape = co_await DescribeRows(*statement);
  if (!shape.has_value()) co_return Step::kError;
  if (!shape->has_rows) {
    out_.NoData();
    co_return Step::kOk;
  }
  // The portal may have been closed by a nested step: look it up again.
  it = portals_.find(message->name);
  if (it == portals_.end()) co_return Step::kError;
  if (!ApplyResultFormats(it->second.result_formats, &shape->fields)) co_return Step::kError;
  out_.RowDescription(shape->fields);
  co_return Step::kOk;
}

// Sets each field's format from the Bind's result format codes (none: all
// text; one: all columns; else one per column). False when an error was sent.
bool Session::ApplyResultFormats(const std::vector<int16_t>& formats,
                                 std::vector<wire::FieldDescription>* fields) {
  if (formats.size() > 1 && formats.size() != fields->size()) {
    SendError(MakeDiagnostic("08P01", "bind message has " + std::to_string(formats.size()) +
                                          " result formats but query has " +
                                          std::to_string(fields->size()) + " columns"));
    return false;
  }
  for (size_t i = 0; i < fields->size(); ++i) {
    const int16_t want = formats.empty() ? 0 : (formats.size() == 1 ? formats[0] : formats[i]);
    if (want == 1 && !HasBinaryConversion((*fields)[i].type_oid)) {
      SendError(MakeDiagnostic("0A000",
                               "dpgate cannot send column \"" + (*fields)[i].name +
                                   "\" (type oid " + std::to_string((*fields)[i].type_oid) +
                                   ") in binary format",
                               "request the text format for this column"));
      return false;
    }
    (*fields)[i].format = want;
  }
  return true;
}

awaitable<Session::Step> Session::HandleExecute(std::string_view body) {
  auto message = wire::ParseExecute(body);
  if (!message.ok()) co_return co_await ProtocolViolation(message.error());
  auto it = portals_.find(message->portal);
  if (it == portals_.end()) {
    SendError(MakeDiagnostic("34000", "portal \"" + message->portal + "\" does not exist"));
    co_return Step::kError;
  }
  if (!it->second.ran) {
    // Copies: the awaits below may run other steps of this session.
    std::shared_ptr<PreparedStatement> statement = it->second.statement;
    const BoundParameters parameters = it->second.parameters;
    const std::vector<int16_t> formats = it->second.result_formats;
    if (statement->classified->empty()) {
      out_.EmptyQueryResponse();
      co_return Step::kOk;
    }
    const rewriter::StatementResult& st = statement->classified->front();
    const bool all_binary = !formats.empty() && std::all_of(formats.begin(), formats.end(),
                                                            [](int16_t f) { return f == 1; });
    if (st.statement_class == rewriter::StatementClass::kPrivateAggregate) {
      // Everything that could fail after the charge is checked before it.
      auto shape = co_await DescribeRows(*statement);
      if (!shape.has_value() || !ApplyResultFormats(formats, &shape->fields)) {
        co_return Step::kError;
      }
    }
    if (!co_await EnsureUpstream()) co_return Step::kError;
    // Forwarded statements whose every column is wanted in binary are asked
    // of the upstream in binary (exact for every type); otherwise text, and
    // the binary columns are converted here.
    const int upstream_format =
        all_binary && st.statement_class != rewriter::StatementClass::kPrivateAggregate ? 1 : 0;
    auto reply = co_await RunStatement(st, &parameters, upstream_format);
    if (!reply.has_value()) co_return Step::kError;
    if (reply->has_rows) {
      std::vector<wire::FieldDescription> wanted = reply->fields;
      if (upstream_format == 0) {
        if (!ApplyResultFormats(formats, &wanted)) co_return Step::kError;
        for (size_t c = 0; c < wanted.size(); ++c) {
          if (wanted[c].format != 1) continue;
          for (auto& row : reply->rows) {
            if (!row[c].has_value()) continue;
            auto binary = TextToBinary(wanted[c].type_oid, *row[c]);
            if (!binary.ok()) {
              SendError(MakeDiagnostic(binary.error().code, binary.error().message));
              co_return Step::kError;
            }
            row[c] = std::move(*binary);
          }
        }
      } else if (formats.size() > 1 && formats.size() != wanted.size()) {
        ApplyResultFormats(formats, &wanted);  // sends the count error
        co_return Step::kError;
      }
      reply->fields = std::move(wanted);
    }
    it = portals_.find(message->portal);
    if (it == portals_.end()) {
      // The statement itself closed the portal (DISCARD ALL): it still
      // completed.
      out_.CommandComplete(reply->tag);
      co_return Step::kOk;
    }
    it->second.reply = std::move(*reply);
    it->second.ran = true;
    for (const auto& n : it->second.reply.notices_before) out_.NoticeResponse(n);
  }
  Portal& portal = it->second;
  StatementReply& reply = portal.reply;
  if (portal.completed) {
    // A finished portal has no more rows (§55.2.3).
    out_.CommandComplete(reply.has_rows ? "SELECT 0" : reply.tag);
    co_return Step::kOk;
  }
  const size_t limit =
      message->max_rows > 0 ? static_cast<size_t>(message->max_rows) : reply.rows.size();
  size_t sent = 0;
  while (sent < limit && portal.next_row < reply.rows.size()) {
    out_.DataRow(reply.rows[portal.next_row++]);
    ++sent;
  }
  if (portal.next_row < reply.rows.size()) {
    out_.PortalSuspended();
    co_return Step::kOk;
  }
  out_.CommandComplete(reply.tag);
  for (const auto& n : reply.notices_after) out_.NoticeResponse(n);
  portal.completed = true;
  reply.rows.clear();
  reply.rows.shrink_to_fit();
  co_return Step::kOk;
}

Session::Step Session::HandleClose(std::string_view body) {
  auto message = wire::ParseClose(body);
  if (!message.ok()) return QueueViolation(message.error());
  // Closing a name that does not exist is not an error (§55.7, Close).
  if (message->kind == 'S') {
    statements_.erase(message->name);
  } else {
    portals_.erase(message->name);
  }
  out_.CloseComplete();
  return Step::kOk;
}

awaitable<void> AcceptLoop(ServerState& state, tcp::acceptor& acceptor) {
  while (true) {
    boost::system::error_code ec;
    // Each session lives on one I/O thread's event loop, taken round robin.
    // That loop is run by exactly one thread (RunServer), so the session's
    // socket, timers, upstream socket and ledger completions never run
    // concurrently without a strand, whose lock and queue would cost every
    // completion of every statement; its wake-ups never hop threads.
    const asio::any_io_executor executor =
        state.io_contexts[state.next_context.fetch_add(1) % state.io_contexts.size()]
            ->get_executor();
    tcp::socket socket =
        co_await acceptor.async_accept(executor, asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (!acceptor.is_open()) co_return;
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto session = std::make_shared<Session>(state, std::move(socket));
    asio::co_spawn(
        executor, [session]() -> awaitable<void> { co_await session->Run(); }, asio::detached);
  }
}

std::string UpstreamDatabase(const std::string& dsn) {
  std::string db;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (err != nullptr) PQfreemem(err);
  if (opts == nullptr) return db;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (std::string(o->keyword) == "dbname" && o->val != nullptr) db = o->val;
  }
  PQconninfoFree(opts);
  return db;
}

// The cores this process may run on: its CPU affinity mask, which taskset,
// a cgroup cpuset or a container's --cpuset-cpus narrow, not the machine's
// count (std::thread::hardware_concurrency): more I/O threads than usable
// cores only share those cores and add context switches (bench/RESULTS.md,
// proxy).
int UsableCores() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    const int n = CPU_COUNT(&allowed);
    if (n > 0) return n;
  }
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

Status RunServer(const config::Config& config, const ServerOptions& options) {
  // One io_context per I/O thread rather than one shared by all threads: a
  // shared one hands every completion to whichever thread is free, so each
  // statement's several wake-ups cost futex calls, epoll interrupts and
  // context switches between the threads (most of the proxy's per-statement
  // cost is in the kernel; bench/RESULTS.md, proxy). A single-threaded loop
  // runs its completions inline. Cross-thread work (the pool, the ledger,
  // cancels) is posted to a session's executor, which is thread-safe.
  const int threads = options.io_threads > 0 ? options.io_threads : UsableCores();
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (int i = 0; i < threads; ++i) contexts.push_back(std::make_unique<asio::io_context>(1));
  asio::io_context& io = *contexts.front();
  const auto stop_all = [&contexts] {
    for (auto& c : contexts) c->stop();
  };
  ServerState state(config, options, contexts);
  state.upstream_database = UpstreamDatabase(config.upstream.dsn);
  unsigned char secret[32];
  RAND_bytes(secret, sizeof secret);
  state.mock_secret.assign(reinterpret_cast<char*>(secret), sizeof secret);

  if (config.tls.has_value()) {
    state.tls.emplace(asio::ssl::context::tls_server);
    boost::system::error_code ec;
    state.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1);
    state.tls->use_certificate_chain_file(config.tls->cert, ec);
    if (ec) return MakeError("config", "tls.cert " + config.tls->cert + ": " + ec.message());
    state.tls->use_private_key_file(config.tls->key, asio::ssl::context::pem, ec);
    if (ec) return MakeError("config", "tls.key " + config.tls->key + ": " + ec.message());
  }

  // The ledger first: fail closed at start if it cannot be reached/migrated.
  auto migrated = accountant::MigrateLedger(config.ledger.dsn, config.ledger.schema);
  if (!migrated.ok()) return MakeError("ledger", "ledger: " + migrated.message());
  {
    accountant::LedgerOptions o;
    o.dsn = config.ledger.dsn;
    o.schema = config.ledger.schema;
    auto l = accountant::Ledger::Open(o);
    if (!l.ok()) return MakeError("ledger", "ledger: " + l.error().message);
    if (auto st = (*l)->SyncBudgets(config); !st.ok()) {
      return MakeError("ledger", "ledger: syncing budgets: " + st.message());
    }
    state.budget_ledger = std::move(*l);
  }
  accountant::AsyncLedgerOptions lo;
  lo.ledger.dsn = config.ledger.dsn;
  lo.ledger.schema = config.ledger.schema;
  lo.ledger.migrate = false;
  lo.workers = options.ledger_workers;
  auto ledger = accountant::AsyncLedger::Start(lo);
  if (!ledger.ok()) return MakeError("ledger", "ledger: " + ledger.error().message);
  state.ledger = std::move(*ledger);

  UpstreamPoolOptions pool_options;
  pool_options.dsn = config.upstream.dsn;
  pool_options.max_size = config.upstream.pool_size;
  pool_options.mode = config.upstream.pool_mode == config::PoolMode::kTransaction
                          ? PoolMode::kTransaction
                          : PoolMode::kSession;
  state.pool = std::make_unique<UpstreamPool>(io.get_executor(), pool_options);

  tcp::acceptor acceptor(io);
  boost::system::error_code ec;
  auto address = asio::ip::make_address(
      config.listen.host == "localhost" ? "127.0.0.1" : config.listen.host, ec);
  if (ec) return MakeError("config", "listen.host " + config.listen.host + ": " + ec.message());
  tcp::endpoint endpoint(address, config.listen.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return MakeError("listen", "cannot listen on " + config.listen.host + ":" +
                                   std::to_string(config.listen.port) + ": " + ec.message());
  }
  spdlog::info("dpgate listening on {}:{} (tls={}, auth={}, io_threads={})", config.listen.host,
               acceptor.local_endpoint().port(), config.tls.has_value(),
               config::ToString(config.auth), threads);
  if (options.on_listening) options.on_listening(acceptor.local_endpoint().port());

  asio::co_spawn(io, AcceptLoop(state, acceptor), asio::detached);

  asio::signal_set signals(io, SIGTERM, SIGINT);
  asio::steady_timer grace(io);
  signals.async_wait([&](boost::system::error_code, int sig) {
    spdlog::info("signal {}: no new connections; finishing statements in flight", sig);
    state.draining = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    {
      std::lock_guard lock(state.sessions_mutex);
      for (auto& [key, weak] : state.sessions) {
        if (auto s = weak.lock()) asio::post(s->executor(), [s] { s->CloseIfIdle(); });
      }
    }
    grace.expires_after(options.shutdown_grace);
    grace.async_wait([&](boost::system::error_code e) {
      if (!e) stop_all();
    });
    // Poll until every session has ended, then stop.
    auto poll = std::make_shared<std::function<void()>>();
    auto timer = std::make_shared<asio::steady_timer>(io);
    *poll = [&, poll, timer] {
      if (state.connections.load() == 0) {
        stop_all();
        return;
      }
      timer->expires_after(std::chrono::milliseconds(50));
      timer->async_wait([poll](boost::system::error_code e) {
        if (!e) (*poll)();
      });
    };
    (*poll)();
  });

  // The other loops have no work until a session lands on them: keep them
  // running until stop_all.
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keep_running;
  for (auto& c : contexts) keep_running.push_back(asio::make_work_guard(*c));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([c = contexts[i].get()] { c->run(); });
  io.run();
  for (auto& t : pool) t.join();
  state.pool->Close();
  state.ledger->Shutdown(true);
  state.blocking.join();
  spdlog::info("dpgate stopped");
  return Status::Ok();
}

}  // namespace dpgate::proxy
