// A throwaway dpgate in front of a fresh database of the test cluster, with
// its own roles (named after the database, so tests run in parallel), SCRAM
// analysts alice (large budget) and bob (0.6), and crafted data.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "dpgate/proxy/scram.h"
#include "dpgate_process.h"
#include "test_pg.h"

namespace dpgate::testing {

constexpr const char* kAlicePassword = "alice-secret-pw";
constexpr const char* kBobPassword = "bob-secret-pw";

// 10,000 people, one row each: group a has 6,000, b has 3,999, "rare" has 1.
// score = (id % 100) + 0.123457, so every true aggregate has a distinctive
// value that the log check can look for.
constexpr int kPeople = 10000;
constexpr const char* kSchemaSql = R"sql(
  create table public.people (id integer primary key, grp text not null, score numeric not null);
  insert into public.people
    select g, case when g = 1 then 'rare' when g <= 6001 then 'a' else 'b' end,
           (g % 100) + 0.123457
    from generate_series(1, 10000) g;
  create table public.lookup (code text primary key, label text not null);
  insert into public.lookup values ('a', 'Group A'), ('b', 'Group B');
)sql";

constexpr const char* kDatasetsYaml = R"yaml(datasets:
  - name: census
    budget: { epsilon: 1000, delta: 0.5, period: month }
    tables:
      - name: public.people
        privacy_unit: id
        max_groups_contributed: 1
        max_rows_per_group: 1
        columns:
          score: { lower: 0, upper: 100 }
      - name: public.lookup
        public: true
)yaml";

// The analyst's remaining ε, as SHOW dp.budget reports it (-1 if absent).
inline double RemainingEpsilon(pqxx::transaction_base& tx) {
  for (const auto& row : tx.exec("SHOW dp.budget")) {
    if (row[1].as<std::string>() == "analyst") return row[4].as<double>();
  }
  return -1;
}

// A self-signed certificate and key for localhost in a directory of their
// own, removed with this object; Yaml() is the config's `tls:` line.
struct SelfSignedCert {
  std::string dir;
  SelfSignedCert() {
    char tmpl[] = "/tmp/dpgate-tls-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
    std::string out;
    REQUIRE(RunCommand("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                       "-keyout " +
                           dir + "/server.key -out " + dir + "/server.crt",
                       &out) == 0);
  }
  ~SelfSignedCert() {
    std::string ignored;
    RunCommand("rm -rf " + dir, &ignored);
  }
  SelfSignedCert(const SelfSignedCert&) = delete;
  SelfSignedCert& operator=(const SelfSignedCert&) = delete;
  std::string Yaml() const {
    return "tls: { cert: " + dir + "/server.crt, key: " + dir + "/server.key }\n";
  }
};

struct ServeFixture {
  dpgate::testing::TestPg pg = RequireTestPg();
  std::string db;
  std::string reader;
  std::string ledger;
  std::string dir;
  int port = FreePort();
  std::unique_ptr<DpgateProcess> dpgate;

  // `schema_sql` creates the tables; `readable` lists them for the reader's
  // GRANT; `datasets_yaml` is the config's `datasets:` section.
  explicit ServeFixture(const std::string& extra_config = "",
                        const std::string& schema_sql = kSchemaSql,
                        const std::string& readable = "public.people, public.lookup",
                        const std::string& datasets_yaml = kDatasetsYaml,
                        const std::string& auth = "scram",
                        const std::string& upstream_options = "") {
    db = CreateTestDatabase(pg, "serve");
    // Roles are cluster-wide: each fixture has its own, named after its
    // database, so tests can run in parallel.
    reader = db + "_reader";
    ledger = db + "_ledger";
    ExecSql(pg, db, schema_sql);
    ExecSql(pg, db,
            "create role " + reader +
                " login password 'reader-pw';"
                "alter role " +
                reader +
                " set default_transaction_read_only = on;"
                "grant usage on schema public to " +
                reader +
                ";"
                "grant select on " +
                readable + " to " + reader +
                ";"
                "create role " +
                ledger +
                " login password 'ledger-pw';"
                "grant create on database " +
                db + " to " + ledger);
    char tmpl[] = "/tmp/dpgate-serve-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
    const auto alice = dpgate::proxy::MakeScramVerifier(kAlicePassword);
    const auto bob = dpgate::proxy::MakeScramVerifier(kBobPassword);
    REQUIRE((alice.ok() && bob.ok()));
    const std::string base = "host=127.0.0.1 port=" + std::to_string(pg.port) + " dbname=" + db;
    std::ofstream(dir + "/dpgate.yaml")
        << "listen: { host: 127.0.0.1, port: " << port << " }\n"
        << "upstream: { dsn: \"" << base << " user=" << reader << " password=reader-pw\""
        << upstream_options << " }\n"
        << "ledger: { dsn: \"" << base << " user=" << ledger << " password=ledger-pw\" }\n"
        << "auth: " << auth << "\n"
        << "analysts:\n"
        << "  - name: alice\n    scram: \"" << alice->ToString() << "\"\n"
        << "    budget: { epsilon: 100, delta: 1.0e-3, period: month }\n"
        << "  - name: bob\n    scram: \"" << bob->ToString() << "\"\n"
        << "    budget: { epsilon: 0.6, delta: 1.0e-3, period: month }\n"
        << "query: { epsilon: 0.5, delta: 1.0e-7, max_epsilon: 5 }\n"
        << datasets_yaml << extra_config;
    dpgate = std::make_unique<DpgateProcess>(DPGATE_BINARY, dir + "/dpgate.yaml", port,
                                             dir + "/dpgate.log");
  }
  ~ServeFixture() {
    if (dpgate) dpgate->Stop();
    std::string ignored;
    RunCommand("rm -rf " + dir, &ignored);
  }
  std::string Dsn(const std::string& user, const std::string& password) const {
    return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=" + db + " user=" + user +
           " password=" + password + " sslmode=disable connect_timeout=10";
  }
  double TrueScoreSum() const {
    pqxx::connection c(pg.Dsn(db));
    return pqxx::nontransaction(c).exec1("select sum(score)::float8 from people")[0].as<double>();
  }
};

}  // namespace dpgate::testing
