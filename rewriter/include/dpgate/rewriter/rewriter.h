// rewriter/: classify every statement of a query string, and rewrite private
// aggregates into the contribution-bounded shape of DESIGN.md §2 with a
// ReleasePlan. Pure: no I/O, never sees data. docs/REWRITER.md is the contract.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpgate/common/result.h"
#include "dpgate/config/config.h"
#include "dpgate/rewriter/release_plan.h"
#include "dpgate/rewriter/schema_facts.h"

namespace dpgate::rewriter {

// DESIGN.md §1 table; docs/REWRITER.md §1.
enum class StatementClass {
  kPrivateAggregate,
  kPublic,
  kCatalog,
  kSession,
  kDpgateCommand,
  kRefused,
};
const char* ToString(StatementClass c);  // "private_aggregate", "public", ...

// What the rewriter needs to know about the session (docs/REWRITER.md §2).
struct SessionContext {
  std::vector<std::string> search_path = {"$user", "public"};
  std::string user;  // the analyst; what "$user" in the search_path stands for
  // The query's (ε, δ) (SET dp.epsilon / dp.delta, else the config's
  // defaults). When set, each plan's ε/δ split is filled (FillBudgetSplit).
  std::optional<double> epsilon;
  std::optional<double> delta;
};

// dpgate's own statements (DESIGN.md §3), answered by dpgate itself.
enum class DpgateCommandKind {
  kNone,
  kSetEpsilon,    // SET dp.epsilon = value
  kSetDelta,      // SET dp.delta = value
  kResetEpsilon,  // RESET dp.epsilon
  kResetDelta,    // RESET dp.delta
  kShowBudget,    // SHOW dp.budget
  kShowEpsilon,   // SHOW dp.epsilon
  kShowDelta,     // SHOW dp.delta
  kExplainDp,     // EXPLAIN (DP) <private aggregate>: plan in StatementResult::plan
};
const char* ToString(DpgateCommandKind kind);

// A transaction-control statement (kSession). The proxy needs the kind to
// run a multi-statement simple Query as one implicit transaction block, as
// PostgreSQL does (docs/PROXY.md §1 item 10).
enum class TransactionControl {
  kNone,
  kBegin,       // BEGIN, START TRANSACTION
  kCommit,      // COMMIT, END
  kRollback,    // ROLLBACK, ABORT
  kSavepoint,   // SAVEPOINT name
  kRelease,     // RELEASE [SAVEPOINT] name
  kRollbackTo,  // ROLLBACK TO [SAVEPOINT] name
};

struct StatementResult {
  StatementClass statement_class = StatementClass::kRefused;
  // For kRefused: code is an SQLSTATE (42501 denied relation or function,
  // 0A000 not supported, 42601 syntax error, 22023 bad dp value) and message
  // says what, where (line:column) and why, and what to write instead.
  Error reason;
  std::string original_sql;  // this statement's text, as the client sent it
  // What to send upstream: every relation schema-qualified (docs/REWRITER.md §2).
  // Empty for dpgate commands and refusals. Session statements are deparsed.
  std::string rewritten_sql;
  std::optional<ReleasePlan> plan;  // private aggregates and EXPLAIN (DP)
  uint64_t fingerprint = 0;         // pg_query_fingerprint of original_sql
  std::string fingerprint_hex;
  std::string dataset;  // the private dataset touched, if any
  // schema.name of every relation the statement reads (after resolution).
  std::vector<std::string> relations;
  // True when the statement reads table sizes in a way the rewriter cannot
  // mask (a `*` or whole-row reference over pg_class, ...): it is then
  // refused. Size reads that can be masked are rewritten in rewritten_sql
  // and leave this false (DESIGN.md §2 "Catalog size leaks are masked";
  // docs/REWRITER.md §3.3). The proxy also refuses a statement with it set.
  bool reads_size_catalog = false;
  DpgateCommandKind command = DpgateCommandKind::kNone;
  std::optional<double> command_value;  // for kSetEpsilon / kSetDelta
  TransactionControl transaction = TransactionControl::kNone;
  bool transaction_chain = false;  // COMMIT / ROLLBACK AND CHAIN
  std::string savepoint;           // SAVEPOINT, RELEASE, ROLLBACK TO: its name
  // For an accepted SET/RESET search_path: the session's new path, which the
  // proxy keeps and passes back in SessionContext (it never forwards it).
  std::optional<std::vector<std::string>> new_search_path;
  // SQL-level cursors (DESIGN.md §2 "Wrapped queries"; docs/REWRITER.md
  // §4.5). Set for DECLARE, FETCH, MOVE and CLOSE. A DECLARE keeps the class
  // of its query: for a private aggregate, rewritten_sql and plan are the
  // query's, and the proxy keeps the released rows as the cursor; for a
  // public or catalog query, rewritten_sql is the whole DECLARE to forward.
  // FETCH/MOVE/CLOSE are kSession; the proxy serves them from its own
  // cursor or forwards them for a cursor it saw declared upstream.
  struct Cursor {
    enum class Kind { kDeclare, kFetch, kMove, kClose };
    Kind kind = Kind::kDeclare;
    std::string name;     // empty for CLOSE ALL
    bool hold = false;    // DECLARE ... WITH HOLD
    bool binary = false;  // DECLARE BINARY
    bool forward = true;  // FETCH/MOVE: NEXT, FORWARD n or FORWARD ALL
    int64_t count = 1;    // FETCH/MOVE: rows to move over; -1 for ALL
  };
  std::optional<Cursor> cursor;
  // SQL-level PREPARE name [(types)] AS SELECT ... / EXECUTE name [(args)]
  // (docs/REWRITER.md §4.6): kSession statements the proxy answers itself,
  // with nothing to forward. PREPARE's query is checked here, so one that can
  // never run is refused at PREPARE; the proxy keeps original_sql under the
  // name. EXECUTE runs BindSqlExecute's statement, classified as if the
  // client had sent it.
  std::optional<std::string> sql_prepare;  // PREPARE: the statement's name
  std::optional<std::string> sql_execute;  // EXECUTE: the statement's name
};

// The statement an SQL-level EXECUTE runs: the query of `prepare_sql` (a
// PREPARE statement Classify accepted) with each parameter $n replaced by
// the n-th argument of `execute_sql` (an EXECUTE), cast to the n-th declared
// type when PREPARE declared types. Built on the parse trees and deparsed:
// the arguments become part of the query, which the caller classifies anew,
// so every rule applies to them as to text the client wrote. Errors: a
// wrong number of arguments (42601, as PostgreSQL), or statements that are
// not a PREPARE and an EXECUTE.
Result<std::string> BindSqlExecute(const std::string& prepare_sql, const std::string& execute_sql);

// Why `result.rewritten_sql` must not be sent upstream, if it must not: it
// does not parse back as exactly one statement, or a query's text is not a
// query. Classify applies it to every statement it returns (refusing with
// 0A000); exposed for tests (docs/REWRITER.md §1.3).
std::optional<std::string> ForwardedTextProblem(const StatementResult& result);

// Classifies every statement of `sql` (one or many, separated by ';').
// A syntax error refuses the whole string (one kRefused result, 42601).
// The proxy must refuse the whole string when any statement is refused.
// Errors only for internal failures (e.g. a rewritten tree that does not
// deparse): the caller treats those as a refusal with a generic message.
// `facts` (unique NOT NULL columns read from the upstream catalog) let a
// private rewrite take a cheaper shape when it is provably still bounded
// (docs/REWRITER.md §8.4–§8.5); without facts the per-row shape is never used.
Result<std::vector<StatementResult>> Classify(std::string_view sql, const config::Config& config,
                                              const SessionContext& session,
                                              const SchemaFacts& facts);
Result<std::vector<StatementResult>> Classify(std::string_view sql, const config::Config& config,
                                              const SessionContext& session);

// Fills the ε/δ of every NoisedQuantity and of partition selection from the
// query's (ε, δ), with mechanisms::BudgetSplit (basic composition: equal
// shares; docs/REWRITER.md §11), and sets budget_split_filled.
Status FillBudgetSplit(ReleasePlan* plan, double epsilon, double delta,
                       config::Mechanism mechanism);

// Human-readable and JSON renderings (dpgate rewrite, EXPLAIN (DP)).
std::string ToText(const StatementResult& result);
std::string ToJson(const StatementResult& result);
std::string ToJson(const ReleasePlan& plan);

}  // namespace dpgate::rewriter
