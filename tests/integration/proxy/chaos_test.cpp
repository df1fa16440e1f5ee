// Bounded, deterministic protocol chaos against the real dpgate process and
// the real PostgreSQL: a fixed-seed generator sends random frontend messages
// (simple Query, Parse, Bind, Describe, Execute, Close, Flush, Sync), each
// well-formed at the framing level, from a pool of SQL that covers
// transactions, cursors, SQL-level PREPARE, DISCARD/DEALLOCATE, private
// aggregates, refusals and errors. Every answer is checked against the
// protocol (docs/PROXY.md §1 item 8, PostgreSQL docs §55.2.3): each message
// gets its own answer in order, after an error nothing but ReadyForQuery
// comes until Sync, every Sync and Query ends with ReadyForQuery within
// 20 s, and a connection never ends without a FATAL ErrorResponse (which
// well-formed messages must not cause at all). Afterwards the process is up
// and serves a fresh connection.
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "raw_client.h"
#include "serve_fixture.h"

using dpgate::testing::RawClient;
using dpgate::testing::ServeFixture;

namespace {

using R = RawClient;

constexpr std::array<const char*, 20> kSqlPool = {
    "SELECT 1",
    "SELECT label FROM lookup WHERE code = $1",
    "SELECT count(*) FROM people",  // a private aggregate: charged
    "SELECT grp, count(*) FROM people GROUP BY grp",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "DISCARD ALL",
    "DEALLOCATE ALL",
    "SET statement_timeout = '5s'",
    "SHOW dp.budget",
    "DECLARE c1 CURSOR WITH HOLD FOR SELECT count(*) FROM people",
    "FETCH 1 FROM c1",
    "CLOSE c1",
    "CLOSE ALL",
    "PREPARE q1 AS SELECT 1",
    "EXECUTE q1",
    "SELECT * FROM people",  // refused
    "SELECT 1/0",            // an upstream error
    "",
};
constexpr std::array<const char*, 3> kStatementNames = {"", "s1", "s2"};
constexpr std::array<const char*, 2> kPortalNames = {"", "p1"};
constexpr std::array<const char*, 4> kValues = {"a", "b", "zz", "1"};

// Every message type a backend sends (PostgreSQL docs §55.7).
bool IsBackendType(char t) {
  return std::string_view("123ACcDdEGHIKNnRSsTtVvWZ").find(t) != std::string_view::npos;
}

// May come anywhere in an answer: NoticeResponse, ParameterStatus,
// NotificationResponse.
bool IsAsync(char t) {
  return t == 'N' || t == 'S' || t == 'A';
}

// The answer a frontend message must get: the types that may come first
// (`middle`) and those that complete it (`last`). An ErrorResponse also
// completes it, and then nothing else is answered until Sync.
struct Expected {
  std::string what;  // the message, for reports
  std::string middle;
  std::string last;
  std::optional<std::string> portal;  // the portal it binds, describes, runs or closes
};

// The column count of a RowDescription or a DataRow.
int Columns(const std::string& body) {
  if (body.size() < 2) return -1;
  return (static_cast<unsigned char>(body[0]) << 8) | static_cast<unsigned char>(body[1]);
}

std::string Quoted(const std::string& s) {
  return "'" + s + "'";
}

// A field of an ErrorResponse: S severity, C SQLSTATE, M message.
std::string ErrorField(const std::string& body, char field) {
  size_t i = 0;
  while (i < body.size() && body[i] != '\0') {
    const size_t end = body.find('\0', i + 1);
    if (end == std::string::npos) break;
    if (body[i] == field) return body.substr(i + 1, end - i - 1);
    i = end + 1;
  }
  return "";
}

class Chaos {
 public:
  Chaos(RawClient& raw, uint32_t seed) : raw_(raw), rng_(seed) {}

  // Sends one random message (or, for a Query inside an unfinished batch, a
  // Flush, the Query and a Sync) and reads what it makes due. False when the
  // connection ended; a problem is recorded then.
  bool Step() {
    const int pick = Uniform(0, 99);
    if (pick < 10) return DriverBatch();
    if (pick < 28) return Query();
    if (pick < 40) return Sync();
    if (pick < 45) {
      Send('H', "", "Flush");
      return DrainPending();
    }
    if (pick < 58) {
      const std::string name = Pick(kStatementNames);
      const std::string sql = Pick(kSqlPool);
      return Extended('P', R::Str(name) + R::Str(sql) + R::Int16(0),
                      {"Parse " + Quoted(name) + " " + Quoted(sql), "", "1", std::nullopt});
    }
    if (pick < 71) return Bind();
    if (pick < 81) {
      const bool statement = Uniform(0, 1) == 0;
      const std::string name = statement ? Pick(kStatementNames) : Pick(kPortalNames);
      return Extended(
          'D', std::string(1, statement ? 'S' : 'P') + R::Str(name),
          {std::string("Describe ") + (statement ? "statement " : "portal ") + Quoted(name),
           statement ? "t" : "", "Tn", statement ? std::nullopt : std::optional(name)});
    }
    if (pick < 94) {
      const std::string portal = Pick(kPortalNames);
      const int max_rows = Uniform(0, 2);
      return Extended('E', R::Str(portal) + R::Int32(max_rows),
                      {"Execute " + Quoted(portal) + " max_rows " + std::to_string(max_rows), "D",
                       "CsI", portal});
    }
    const bool statement = Uniform(0, 1) == 0;
    const std::string name = statement ? Pick(kStatementNames) : Pick(kPortalNames);
    return Extended('C', std::string(1, statement ? 'S' : 'P') + R::Str(name),
                    {std::string("Close ") + (statement ? "statement " : "portal ") + Quoted(name),
                     "", "3", statement ? std::nullopt : std::optional(name)});
  }

  // Ends the connection's last batch and says goodbye.
  void Finish() {
    if (unsynced_ && !Sync()) return;
    raw_.TrySend(R::Message('X', ""));
  }

  std::vector<std::string> problems;
  int readies = 0;
  int errors = 0;
  int rows = 0;
  int notices = 0;
  std::string statuses;  // the ReadyForQuery statuses seen

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  template <size_t N>
  std::string Pick(const std::array<const char*, N>& from) {
    return from[static_cast<size_t>(Uniform(0, static_cast<int>(N) - 1))];
  }

  void Send(char type, const std::string& body, const std::string& what) {
    trace_.push_back(what);
    if (trace_.size() > 12) trace_.pop_front();
    // A failed send shows as a closed connection at the next read.
    raw_.TrySend(R::Message(type, body));
  }

  void Problem(const std::string& what) {
    std::string p = what + "\n  last messages sent:";
    for (const auto& t : trace_) p += "\n    " + t;
    problems.push_back(p);
  }

  // What a driver sends for one statement: Close, Parse, Bind (a value for
  // $1 when there is one), Describe portal, Execute, Sync.
  bool DriverBatch() {
    const std::string name = Pick(kStatementNames);
    const std::string portal = Pick(kPortalNames);
    const std::string sql = Pick(kSqlPool);
    const bool parameter = sql.find("$1") != std::string::npos;
    const std::string value = Pick(kValues);
    const int max_rows = Uniform(0, 2);
    Extended('C', "S" + R::Str(name), {"Close statement " + Quoted(name), "", "3", std::nullopt});
    Extended('C', "P" + R::Str(portal), {"Close portal " + Quoted(portal), "", "3", portal});
    Extended('P', R::Str(name) + R::Str(sql) + R::Int16(0),
             {"Parse " + Quoted(name) + " " + Quoted(sql), "", "1", std::nullopt});
    Extended('B',
             R::Str(portal) + R::Str(name) + R::Int16(0) + R::Int16(parameter ? 1 : 0) +
                 (parameter ? R::Int32(static_cast<int32_t>(value.size())) + value : "") +
                 R::Int16(0),
             {"Bind " + Quoted(portal) + " to " + Quoted(name) +
                  (parameter ? " with " + Quoted(value) : ""),
              "", "2", portal});
    Extended('D', "P" + R::Str(portal), {"Describe portal " + Quoted(portal), "", "Tn", portal});
    Extended('E', R::Str(portal) + R::Int32(max_rows),
             {"Execute " + Quoted(portal) + " max_rows " + std::to_string(max_rows), "D", "CsI",
              portal});
    return Sync();
  }

  bool Bind() {
    const std::string portal = Pick(kPortalNames);
    const std::string statement = Pick(kStatementNames);
    const int n = Uniform(0, 2);
    std::string body =
        R::Str(portal) + R::Str(statement) + R::Int16(0) + R::Int16(static_cast<int16_t>(n));
    std::string what = "Bind " + Quoted(portal) + " to " + Quoted(statement) + " with";
    for (int i = 0; i < n; ++i) {
      if (Uniform(0, 5) == 0) {
        body += R::Int32(-1);
        what += " NULL";
        continue;
      }
      const std::string v = Pick(kValues);
      body += R::Int32(static_cast<int32_t>(v.size())) + v;
      what += " " + Quoted(v);
    }
    // No result format codes (all text), or one for every column.
    if (Uniform(0, 3) == 0) {
      const int16_t format = static_cast<int16_t>(Uniform(0, 1));
      body += R::Int16(1) + R::Int16(format);
      what += format == 1 ? ", binary results" : ", text results";
    } else {
      body += R::Int16(0);
    }
    return Extended('B', body, {what, "", "2", portal});
  }

  bool Extended(char type, const std::string& body, Expected expected) {
    Send(type, body, expected.what);
    unsynced_ = true;
    pending_.push_back(std::move(expected));
    return true;
  }

  // A simple Query of one to three statements of the pool. Inside a batch
  // it is preceded by a Flush (to learn whether the batch failed) and
  // followed by a Sync: after an error PostgreSQL discards every message up
  // to Sync, a Query included.
  bool Query() {
    const int n = Uniform(1, 3);
    std::string sql;
    for (int i = 0; i < n; ++i) sql += (i > 0 ? "; " : "") + Pick(kSqlPool);
    const bool in_batch = unsynced_;
    if (in_batch) {
      Send('H', "", "Flush");
      if (!DrainPending()) return false;
    }
    const bool discarded = failed_;
    if (!discarded) portal_columns_.erase("");  // a Query ends the unnamed portal
    Send('Q', R::Str(sql), "Query " + Quoted(sql));
    if (in_batch) Send('S', "", "Sync");
    std::string types;
    char status = 0;
    if (!UntilReady(&types, &status)) return false;
    if (discarded) {
      if (!types.empty()) {
        Problem("a Query after an error in an unsynced batch was answered (" + types +
                "); it must be discarded up to Sync");
        // Its ReadyForQuery was read: the Sync's follows.
        if (!UntilReady(&types, &status)) return false;
      }
    } else {
      if (types.find_first_not_of("TDCIE") != std::string::npos || types.empty()) {
        Problem("unexpected answer to a Query: " + types);
      }
      // A lone COMMIT or ROLLBACK that completed leaves no transaction open.
      if ((sql == "COMMIT" || sql == "ROLLBACK") && types == "C" && status != 'I') {
        Problem(sql + " completed but ReadyForQuery says '" + std::string(1, status) + "'");
      }
      if (in_batch && !UntilReady(&types, &status)) return false;
      if (in_batch && !types.empty()) Problem("Sync after a Query answered " + types);
    }
    unsynced_ = false;
    failed_ = false;
    return true;
  }

  bool Sync() {
    Send('S', "", "Sync");
    if (!DrainPending()) return false;
    std::string types;
    char status = 0;
    if (!UntilReady(&types, &status)) return false;
    if (!types.empty()) Problem("Sync answered " + types + " before ReadyForQuery");
    unsynced_ = false;
    failed_ = false;
    return true;
  }

  // Reads the answers of the messages sent since the last read, in order.
  bool DrainPending() {
    while (!pending_.empty()) {
      const Expected expected = pending_.front();
      pending_.pop_front();
      if (failed_) continue;  // discarded up to Sync: no answer
      std::string types;
      while (true) {
        char type = 0;
        std::string body;
        if (!ReadMessage(&type, &body)) return false;
        if (IsAsync(type)) continue;
        if (type == 'E') {
          failed_ = true;
          break;
        }
        types += type;
        if (type == 'D') ++rows;
        TrackPortal(expected, type, body);
        if (expected.last.find(type) != std::string::npos) break;
        if (expected.middle.find(type) == std::string::npos) {
          Problem("unexpected '" + std::string(1, type) + "' answering " + expected.what +
                  " (so far: " + types + ")");
          return false;  // out of step: the rest cannot be matched
        }
      }
    }
    return true;
  }

  // A portal's rows have the columns its Describe announced.
  void TrackPortal(const Expected& expected, char type, const std::string& body) {
    if (!expected.portal.has_value()) return;
    const std::string& portal = *expected.portal;
    if (type == '2' || type == '3') portal_columns_.erase(portal);  // bound anew, or closed
    if (type == 'T') portal_columns_[portal] = Columns(body);
    if (type == 'n') portal_columns_[portal] = 0;
    const auto it = portal_columns_.find(portal);
    if (type == 'D' && it != portal_columns_.end() && Columns(body) != it->second) {
      Problem("a DataRow of " + std::to_string(Columns(body)) + " columns from portal " +
              Quoted(portal) + ", described with " + std::to_string(it->second));
    }
  }

  // Reads up to ReadyForQuery; `types` gets the non-asynchronous messages
  // before it.
  bool UntilReady(std::string* types, char* status) {
    types->clear();
    int columns = -1;  // of the last RowDescription
    while (true) {
      char type = 0;
      std::string body;
      if (!ReadMessage(&type, &body)) return false;
      if (IsAsync(type)) continue;
      if (type == 'T') columns = Columns(body);
      if (type == 'D') {
        ++rows;
        if (Columns(body) != columns) {
          Problem("a DataRow of " + std::to_string(Columns(body)) + " columns after a " +
                  "RowDescription of " + std::to_string(columns));
        }
      }
      if (type == 'Z') {
        ++readies;
        if (body.size() != 1 || std::string_view("ITE").find(body[0]) == std::string_view::npos) {
          Problem("ReadyForQuery with status '" + body + "'");
        }
        *status = body.empty() ? '?' : body[0];
        if (statuses.find(*status) == std::string::npos) statuses += *status;
        return true;
      }
      *types += type;
    }
  }

  // One framed backend message; an ErrorResponse is counted, and a FATAL
  // one must be followed by the end of the connection.
  bool ReadMessage(char* type, std::string* body) {
    const RawClient::Read r = raw_.Next(type, body);
    if (r == RawClient::Read::kTimeout) {
      Problem("no answer within 20 s (a hang)");
      return false;
    }
    if (r == RawClient::Read::kBadLength) {
      Problem("a backend message with a bad length word");
      return false;
    }
    if (r == RawClient::Read::kClosed) {
      Problem("the connection was closed without a FATAL ErrorResponse");
      return false;
    }
    if (*type == 'N') ++notices;
    if (!IsBackendType(*type)) {
      Problem("unknown backend message type '" + std::string(1, *type) + "'");
      return false;
    }
    if (*type == 'E') {
      ++errors;
      if (ErrorField(*body, 'S') == "FATAL") {
        // Every message sent is well-formed: no FATAL is a fair answer.
        Problem("FATAL " + ErrorField(*body, 'C') + " " + ErrorField(*body, 'M') +
                " for a well-formed message");
        char next = 0;
        std::string rest;
        if (raw_.Next(&next, &rest) != RawClient::Read::kClosed) {
          Problem("the connection stayed open after a FATAL ErrorResponse");
        }
        return false;
      }
    }
    return true;
  }

  RawClient& raw_;
  std::mt19937 rng_;
  std::deque<Expected> pending_;  // sent, not yet answered
  bool unsynced_ = false;         // extended messages sent since the last Sync or Query
  bool failed_ = false;           // an ErrorResponse since then: the rest is discarded
  std::deque<std::string> trace_;
  std::map<std::string, int> portal_columns_;  // as last described
};

}  // namespace

TEST_CASE("random well-formed message sequences never crash or hang dpgate or desync a session") {
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "trust");
  constexpr int kConnections = 3;
  constexpr int kSteps = 300;
  std::vector<std::string> problems;
  int readies = 0;
  int errors = 0;
  int rows = 0;
  int notices = 0;
  std::string statuses;
  for (int c = 0; c < kConnections; ++c) {
    RawClient raw(f.port, 20);
    raw.Startup("alice", f.db);
    Chaos chaos(raw, 20261123u + static_cast<uint32_t>(c));
    bool alive = true;
    for (int step = 0; step < kSteps && alive; ++step) alive = chaos.Step();
    if (alive) chaos.Finish();
    for (auto& p : chaos.problems) {
      problems.push_back("connection " + std::to_string(c) + ": " + std::move(p));
    }
    readies += chaos.readies;
    errors += chaos.errors;
    rows += chaos.rows;
    notices += chaos.notices;
    for (char s : chaos.statuses) {
      if (statuses.find(s) == std::string::npos) statuses += s;
    }
  }
  std::string report;
  for (const auto& p : problems) report += p + "\n";
  INFO(report);
  CHECK(problems.empty());
  // The generator reached what it aims at: many round trips, errors, rows,
  // receipts, and open and failed transactions.
  INFO("ReadyForQuery " << readies << ", errors " << errors << ", rows " << rows << ", notices "
                        << notices << ", statuses " << statuses);
  CHECK(readies > 200);
  CHECK(errors > 50);
  CHECK(rows > 20);
  CHECK(notices > 5);
  CHECK(statuses.size() == 3);

  REQUIRE(f.dpgate->running());
  pqxx::connection bob(f.Dsn("bob", dpgate::testing::kBobPassword));
  pqxx::nontransaction tx(bob);
  CHECK(tx.exec1("SELECT count(*) FROM lookup")[0].as<int>() == 2);
}
