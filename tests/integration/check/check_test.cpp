// `dpgate check -c FILE` against the throwaway PostgreSQL cluster: the built
// binary is run on configs that name tables of a fresh database, and its exit
// status and report lines are checked.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_pg.h"

namespace {

using Catch::Matchers::Contains;
using dpgate::testing::TestPg;

// One database with the tables the configs below name, and a read-only role
// that can SELECT them (but not the column `secret_notes`).
struct Warehouse {
  TestPg pg;
  std::string db;
  std::string reader;
  std::string reader_password;
  std::filesystem::path dir;

  Warehouse() : pg(dpgate::testing::RequireTestPg()) {
    db = dpgate::testing::CreateTestDatabase(pg, "check");
    reader = "reader_" + db;
    reader_password = "reader-pw-" + db;
    dpgate::testing::ExecSql(pg, db, R"(
      CREATE TABLE public.employees (employee_id int, salary numeric(12,2), age smallint,
                                     region text, title text, secret_notes text);
      CREATE TABLE public.regions (region text, name text);
      CREATE TABLE public."Staff" (id int);
    )");
    dpgate::testing::ExecSql(
        pg, db,
        "CREATE ROLE " + reader + " LOGIN PASSWORD '" + reader_password + "';" +
            "GRANT USAGE ON SCHEMA public TO " + reader + ";" +
            "GRANT SELECT (employee_id, salary, age, region, title) ON public.employees TO " +
            reader + ";" + "GRANT SELECT ON public.regions TO " + reader + ";");
    std::string pattern =
        (std::filesystem::temp_directory_path() / "dpgate-check-test.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    dir = pattern;
  }
  ~Warehouse() { std::filesystem::remove_all(dir); }

  std::string Dsn(const std::string& user, const std::string& password, int port = 0) const {
    return "host=" + pg.host + " port=" + std::to_string(port ? port : pg.port) + " dbname=" + db +
           " user=" + user + " password=" + password;
  }
  std::string ReaderDsn() const { return Dsn(reader, reader_password); }
  std::string SuperuserDsn() const { return Dsn(pg.user, pg.password); }

  // A config whose `columns` and table list are given by the test.
  std::string Config(const std::string& upstream_dsn, const std::string& tables) const {
    return "upstream: { dsn: \"" + upstream_dsn + "\" }\n" +  //
           "ledger: { dsn: \"" + SuperuserDsn() + "\" }\n" +  //
           "auth: trust\n"
           "analysts:\n"
           "  - name: alice\n"
           "    budget: { epsilon: 10, delta: 1.0e-6 }\n"
           "datasets:\n"
           "  - name: hr\n"
           "    budget: { epsilon: 50, delta: 1.0e-5 }\n"
           "    tables:\n" +
           tables;
  }

  // Writes the config and runs `dpgate check -c` on it; returns exit status.
  int Check(const std::string& config_text, std::string* output,
            const std::string& env = "") const {
    const auto path = dir / "dpgate.yaml";
    std::ofstream(path) << config_text;
    return dpgate::testing::RunCommand(env + " " + DPGATE_BINARY + " check -c " + path.string(),
                                       output);
  }
};

const std::string kEmployees =
    "      - name: employees\n"
    "        privacy_unit: employee_id\n"
    "        max_groups_contributed: 2\n"
    "        columns:\n"
    "          salary: { lower: 0, upper: 500000 }\n"
    "          age: { lower: 18, upper: 100 }\n"
    "          region: { values: [north, south] }\n";
const std::string kRegions =
    "      - name: public.regions\n"
    "        public: true\n";

// A loopback port nothing listens on: bound, then released.
int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST_CASE("check passes on a matching database with a read-only role", "[check]") {
  Warehouse w;
  std::string out;
  const int status = w.Check(w.Config(w.ReaderDsn(), kEmployees + kRegions), &out);
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Contains("ok: config "));
  CHECK_THAT(out, Contains("ok: upstream reachable (" + w.reader + "@127.0.0.1:"));
  CHECK_THAT(out, Contains("ok: public.employees: table exists; privacy unit employee_id and 3 "
                           "configured columns present and readable"));
  CHECK_THAT(out, Contains("ok: public.regions: public table exists and is readable"));
  CHECK_THAT(out, Contains("ok: ledger reachable"));
  CHECK_THAT(out, Contains("ok: ledger schema dp_ledger does not exist yet"));
  CHECK_THAT(out, Contains("check passed: 6 ok, 0 warnings"));
  CHECK_THAT(out, !Contains("warning:"));
  CHECK_THAT(out, !Contains(w.reader_password));
  CHECK_THAT(out, !Contains(w.pg.password));
}

TEST_CASE("check warns when the upstream role can write", "[check]") {
  Warehouse w;
  std::string out;
  const int status = w.Check(w.Config(w.SuperuserDsn(), kEmployees), &out);
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Contains("warning: upstream role " + w.pg.user + " is a superuser"));
  CHECK_THAT(out, Contains("warning: public.employees: upstream role " + w.pg.user +
                           " can write to this table"));
  CHECK_THAT(out, Contains("read-only role"));
  CHECK_THAT(out, Contains("check passed: 5 ok, 2 warnings"));
  CHECK_THAT(out, !Contains(w.pg.password));
}

TEST_CASE("check fails on a missing table, naming a near miss", "[check]") {
  Warehouse w;
  std::string out;
  const std::string tables = kEmployees +
                             "      - name: public.employeez\n"
                             "        privacy_unit: employee_id\n"
                             "      - name: staff\n"
                             "        public: true\n";
  const int status = w.Check(w.Config(w.ReaderDsn(), tables), &out);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: public.employeez: table does not exist in the upstream database "
                           "(dataset hr)"));
  CHECK_THAT(out, Contains("error: public.staff: table does not exist in the upstream database "
                           "(dataset hr); did you mean public.\"Staff\""));
  CHECK_THAT(out, Contains("ok: public.employees: table exists"));
  CHECK_THAT(out, Contains("check failed: 2 errors"));
}

TEST_CASE("check fails on a missing column and a missing privacy unit", "[check]") {
  Warehouse w;
  std::string out;
  const std::string tables =
      "      - name: employees\n"
      "        privacy_unit: person_id\n"
      "        columns:\n"
      "          salry: { lower: 0, upper: 500000 }\n";
  const int status = w.Check(w.Config(w.ReaderDsn(), tables), &out);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: public.employees.person_id: privacy_unit column does not exist "
                           "(the table has: "));
  CHECK_THAT(out, Contains("error: public.employees.salry: column does not exist"));
  CHECK_THAT(out, Contains("check failed: 2 errors"));
}

TEST_CASE("check fails on bounds over a text column", "[check]") {
  Warehouse w;
  std::string out;
  const std::string tables =
      "      - name: employees\n"
      "        privacy_unit: employee_id\n"
      "        columns:\n"
      "          title: { lower: 0, upper: 1 }\n";
  const int status = w.Check(w.Config(w.ReaderDsn(), tables), &out);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: public.employees.title: column has type text; bounds need a "
                           "numeric column"));
}

TEST_CASE("check fails on a column the upstream role cannot read", "[check]") {
  Warehouse w;
  std::string out;
  const std::string tables =
      "      - name: employees\n"
      "        privacy_unit: employee_id\n"
      "        columns:\n"
      "          secret_notes: {}\n";
  const int status = w.Check(w.Config(w.ReaderDsn(), tables), &out);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: public.employees.secret_notes: upstream role " + w.reader +
                           " cannot SELECT this column"));
}

TEST_CASE("check fails fast on an unreachable upstream", "[check]") {
  Warehouse w;
  std::string out;
  const int port = ClosedPort();
  const auto started = std::chrono::steady_clock::now();
  const int status = w.Check(w.Config(w.Dsn(w.reader, w.reader_password, port), kEmployees), &out);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: upstream not reachable (" + w.reader +
                           "@127.0.0.1:" + std::to_string(port) + "/" + w.db + "): "));
  CHECK_THAT(out, Contains("Connection refused"));
  CHECK_THAT(out, Contains("skipped: table and column checks (upstream not reachable)"));
  CHECK_THAT(out, Contains("ok: ledger reachable"));  // the ledger is still checked
  CHECK_THAT(out, !Contains(w.reader_password));
  CHECK(elapsed < std::chrono::seconds(20));
}

TEST_CASE("check times out on a server that accepts but never answers", "[check]") {
  Warehouse w;
  // A listening socket nobody accepts from: the kernel completes the TCP
  // handshake, then the startup message is never answered.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 8) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const int port = ntohs(addr.sin_port);
  std::string out;
  const auto started = std::chrono::steady_clock::now();
  const int status = w.Check(w.Config(w.Dsn(w.reader, w.reader_password, port), kEmployees), &out);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  ::close(fd);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: upstream not reachable ("));
  CHECK_THAT(out, Contains("timeout expired"));
  CHECK(elapsed < std::chrono::seconds(20));
}

TEST_CASE("check fails on a wrong password without printing it", "[check]") {
  Warehouse w;
  std::string out;
  const std::string wrong = "wrong-secret-4242";
  const int status = w.Check(w.Config(w.Dsn(w.reader, wrong), kEmployees), &out);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: upstream not reachable (" + w.reader + "@"));
  CHECK_THAT(out, Contains("password authentication failed for user \"" + w.reader + "\""));
  CHECK_THAT(out, !Contains(wrong));
  CHECK_THAT(out, !Contains(w.pg.password));
}

TEST_CASE("check takes the upstream password from the environment", "[check]") {
  Warehouse w;
  std::string out;
  const std::string dsn = w.Dsn(w.reader, "${DPGATE_CHECK_TEST_PASSWORD}");
  const int status = w.Check(w.Config(dsn, kEmployees), &out,
                             "DPGATE_CHECK_TEST_PASSWORD='" + w.reader_password + "'");
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Contains("check passed"));
  CHECK_THAT(out, !Contains(w.reader_password));

  // and refuses, naming the variable, when it is unset
  const int unset = w.Check(w.Config(dsn, kEmployees), &out, "env -u DPGATE_CHECK_TEST_PASSWORD");
  CHECK(unset == 1);
  CHECK_THAT(out, Contains("dpgate.yaml:1: upstream.dsn: environment variable "
                           "DPGATE_CHECK_TEST_PASSWORD (referenced as "
                           "${DPGATE_CHECK_TEST_PASSWORD}) is not set"));
}

TEST_CASE("check rejects an invalid config with file and line, before connecting", "[check]") {
  Warehouse w;
  std::string out;
  const std::string tables =
      "      - name: employees\n"
      "        privacy_unit: employee_id\n"
      "        columns:\n"
      "          salary: { lower: 10, upper: 5 }\n";
  const int status = w.Check(w.Config(w.ReaderDsn(), tables), &out);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("error: " + (w.dir / "dpgate.yaml").string() +
                           ":14: datasets[0].tables[0].columns.salary: lower (10) is greater than "
                           "upper (5)"));
  CHECK_THAT(out, Contains("skipped: connection checks (the config is invalid)"));
  CHECK_THAT(out, !Contains("reachable"));
}

TEST_CASE("check usage errors exit 2, --help exits 0", "[check]") {
  dpgate::testing::RequireTestPg();
  std::string out;
  CHECK(dpgate::testing::RunCommand(std::string(DPGATE_BINARY) + " check", &out) == 2);
  CHECK_THAT(out, Contains("dpgate check: no config given"));
  CHECK(dpgate::testing::RunCommand(std::string(DPGATE_BINARY) + " check --bogus", &out) == 2);
  CHECK_THAT(out, Contains("unknown argument '--bogus'"));
  CHECK(dpgate::testing::RunCommand(std::string(DPGATE_BINARY) + " check -c", &out) == 2);
  CHECK(dpgate::testing::RunCommand(std::string(DPGATE_BINARY) + " check --help", &out) == 0);
  CHECK_THAT(out, Contains("usage: dpgate check -c FILE"));
  CHECK(dpgate::testing::RunCommand(std::string(DPGATE_BINARY) + " check -c /no/such.yaml", &out) ==
        1);
  CHECK_THAT(out, Contains("error: /no/such.yaml: cannot read config: No such file or directory"));
}

}  // namespace
