// Every attack in the rewriter's list (tests/unit/rewriter/cases/attacks.test)
// sent through a running dpgate is refused, and none of them reaches the
// upstream: the reader role logs every statement it runs (log_statement =
// all), and between two marker queries the upstream log shows nothing.
#include <libpq-fe.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "serve_fixture.h"

using dpgate::testing::kAlicePassword;
using dpgate::testing::ServeFixture;

namespace {

// The relations the rewriter's fixture config names (tests/unit/rewriter/fixtures.h).
constexpr const char* kAttackSchema = R"sql(
  create schema pums;
  create table pums.pums (pid integer, age integer, sex text, educ text, race text,
                          income integer, married text);
  insert into pums.pums select g, 20 + g % 60, (g % 2)::text, (g % 16)::text, (g % 6)::text,
                               g * 37, (g % 2)::text from generate_series(1, 500) g;
  create table pums.states (name text);
  create table public.employees (employee_id integer, salary numeric, age integer, region text);
  create table public.regions (name text);
)sql";

constexpr const char* kAttackDatasets = R"yaml(datasets:
  - name: census
    budget: { epsilon: 1000, delta: 0.5, period: month }
    tables:
      - name: pums.pums
        privacy_unit: pid
        max_groups_contributed: 3
        max_rows_per_group: 2
        columns:
          age: { lower: 0, upper: 100 }
          income: { lower: 0, upper: 500000 }
          sex: { values: ["0", "1"] }
          educ: {}
          race: {}
          married: {}
      - name: pums.states
        public: true
  - name: hr
    budget: { epsilon: 1000, delta: 0.5, period: month }
    tables:
      - name: public.employees
        privacy_unit: employee_id
        max_groups_contributed: 4
        max_rows_per_group: 1
        columns:
          salary: { lower: -1000, upper: 500000 }
          age: { lower: 18, upper: 100 }
          region: { values: [north, south, east, west] }
      - name: public.regions
        public: true
)yaml";

struct AttackCase {
  std::string name;
  std::string sql;
};

// Reads the refused cases of attacks.test: `=== name`, `sql:` (continuing
// until the next `key:` line), `class: refused`.
std::vector<AttackCase> ReadAttacks(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::vector<AttackCase> out;
  AttackCase current;
  bool refused = false;
  bool in_sql = false;
  auto flush = [&] {
    if (!current.name.empty() && refused && !current.sql.empty() &&
        current.sql.find("\\x00") == std::string::npos) {
      out.push_back(current);
    }
    current = {};
    refused = false;
    in_sql = false;
  };
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("=== ", 0) == 0) {
      flush();
      current.name = line.substr(4);
      continue;
    }
    if (line.empty() || line[0] == '#') {
      in_sql = false;
      continue;
    }
    const auto colon = line.find(':');
    const bool is_key =
        colon != std::string::npos && line.find(' ') > colon && line.find_first_of("(' ") != 0;
    if (line.rfind("sql:", 0) == 0) {
      current.sql = line.substr(4);
      in_sql = true;
    } else if (is_key && line.rfind("[", 0) != 0 &&
               line.substr(0, colon).find(' ') == std::string::npos &&
               line.substr(0, colon).find('(') == std::string::npos) {
      in_sql = false;
      if (line == "class: refused" || line == "[0] class: refused") refused = true;
    } else if (in_sql) {
      current.sql += "\n" + line;
    }
  }
  flush();
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string UpstreamLogPath() {
  std::ifstream env(std::string(std::getenv("DPGATE_TEST_PG_STATE")) + "/env");
  std::string line;
  while (std::getline(env, line)) {
    if (line.rfind("DPGATE_TEST_PGROOT=", 0) == 0) return line.substr(19) + "/server.log";
  }
  return "";
}

}  // namespace

TEST_CASE(
    "every attack of the rewriter's list is refused through the proxy and never runs upstream") {
  ServeFixture f("", kAttackSchema, "pums.pums, pums.states, public.employees, public.regions",
                 kAttackDatasets);
  dpgate::testing::ExecSql(f.pg, f.db, "grant usage on schema pums to " + f.reader);
  dpgate::testing::ExecSql(f.pg, f.db, "alter role " + f.reader + " set log_statement = 'all'");
  const auto attacks =
      ReadAttacks(std::string(DPGATE_SOURCE_DIR) + "/tests/unit/rewriter/cases/attacks.test");
  REQUIRE(attacks.size() >= 40);

  const std::string dsn = f.Dsn("alice", kAlicePassword);
  PGconn* conn = PQconnectdb(dsn.c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  const std::string start_marker = "attack-start-" + f.db;
  const std::string end_marker = "attack-end-" + f.db;
  auto exec_ok = [&](const std::string& sql) {
    PGresult* r = PQexec(conn, sql.c_str());
    const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
  };
  REQUIRE(exec_ok("SELECT '" + start_marker + "'"));
  for (const auto& attack : attacks) {
    INFO("attack: " << attack.name << "\n" << attack.sql);
    PGresult* r = PQexec(conn, attack.sql.c_str());
    const ExecStatusType status = PQresultStatus(r);
    const char* sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    CHECK(status == PGRES_FATAL_ERROR);
    CHECK(sqlstate != nullptr);
    PQclear(r);
    // A refusal leaves the session usable (and outside a failed transaction).
    if (PQtransactionStatus(conn) == PQTRANS_INERROR) PQclear(PQexec(conn, "ROLLBACK"));
    REQUIRE(PQstatus(conn) == CONNECTION_OK);
  }
  REQUIRE(exec_ok("SELECT '" + end_marker + "'"));
  PQfinish(conn);

  // The upstream saw the two markers and nothing of this session in between.
  const std::string log = ReadFile(UpstreamLogPath());
  const auto start = log.find(start_marker);
  const auto end = log.find(end_marker);
  REQUIRE(start != std::string::npos);
  REQUIRE(end != std::string::npos);
  REQUIRE(start < end);
  // The lines strictly between the start marker's line and the end marker's.
  const auto after_start = log.find('\n', start);
  const auto before_end = log.rfind('\n', end);
  const std::string between =
      before_end > after_start ? log.substr(after_start, before_end - after_start) : "";
  INFO("upstream log between the markers:\n" << between);
  // Other tests log statements into the same server log at the same time:
  // only this session's upstream backend counts. Its pid is on the marker
  // lines ("... [PID] LOG:  statement: SELECT '<marker>'"; session pooling
  // keeps one backend per session).
  const auto line_start = log.rfind('\n', start) + 1;
  const auto pid_open = log.find('[', line_start);
  const auto pid_close = log.find(']', pid_open);
  REQUIRE(pid_close < start);
  const std::string backend = log.substr(pid_open, pid_close - pid_open + 1);
  REQUIRE(log.substr(log.rfind('\n', end) + 1, end - log.rfind('\n', end) - 1).find(backend) !=
          std::string::npos);
  CHECK(between.find(backend + " LOG:  statement:") == std::string::npos);
}

TEST_CASE("a query refused for budget runs nothing upstream") {
  ServeFixture f;
  dpgate::testing::ExecSql(f.pg, f.db, "alter role " + f.reader + " set log_statement = 'all'");
  PGconn* conn = PQconnectdb(f.Dsn("bob", dpgate::testing::kBobPassword).c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  // 0.5 of bob's 0.6: the next charge of 0.5 cannot fit.
  PGresult* first = PQexec(conn, "SELECT count(*) FROM people WHERE score > 3.25");
  REQUIRE(PQresultStatus(first) == PGRES_TUPLES_OK);
  PQclear(first);
  // A distinctive constant, so its SQL is recognisable in the upstream log.
  const std::string refused_sql = "SELECT count(*) FROM people WHERE score > 71.8125";
  PGresult* refused = PQexec(conn, refused_sql.c_str());
  REQUIRE(PQresultStatus(refused) == PGRES_FATAL_ERROR);
  CHECK(std::string(PQresultErrorField(refused, PG_DIAG_SQLSTATE)) == "53400");
  PQclear(refused);
  // A later statement of the same session reaches the upstream's log, so the
  // log has caught up past the refusal when it is read.
  const std::string marker = "after-refusal-" + f.db;
  PGresult* after = PQexec(conn, ("SELECT '" + marker + "'").c_str());
  REQUIRE(PQresultStatus(after) == PGRES_TUPLES_OK);
  PQclear(after);
  PQfinish(conn);
  const std::string log = ReadFile(UpstreamLogPath());
  REQUIRE(log.find(marker) != std::string::npos);
  CHECK(log.find("3.25") != std::string::npos);  // the charged query did run
  CHECK(log.find("71.8125") == std::string::npos);
}
