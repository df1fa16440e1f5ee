#include "test_pg.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <stdexcept>

namespace dpgate::testing {

std::string TestPg::Dsn(const std::string& dbname) const {
  return "host=" + host + " port=" + std::to_string(port) + " user=" + user +
         " password=" + password + " dbname=" + dbname + " connect_timeout=10";
}

TestPg RequireTestPg() {
  const char* state = std::getenv("DPGATE_TEST_PG_STATE");
  if (state == nullptr) {
    throw std::runtime_error(
        "DPGATE_TEST_PG_STATE is not set: run integration tests through ctest, which starts "
        "the test PostgreSQL cluster (fixture `pg`)");
  }
  std::ifstream in(std::string(state) + "/env");
  if (!in) {
    throw std::runtime_error(std::string("test PostgreSQL is not running: no ") + state +
                             "/env (did the pg.start fixture fail?)");
  }
  std::map<std::string, std::string> kv;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  TestPg pg;
  pg.host = kv["DPGATE_TEST_PGHOST"];
  pg.port = std::stoi(kv.at("DPGATE_TEST_PGPORT"));
  pg.user = kv["DPGATE_TEST_PGUSER"];
  pg.password = kv["DPGATE_TEST_PGPASSWORD"];
  pg.socket_dir = kv["DPGATE_TEST_PGSOCKET"];
  pqxx::connection c(pg.Dsn());
  pqxx::nontransaction tx(c);
  if (tx.exec1("select 1")[0].as<int>() != 1)
    throw std::runtime_error("test PostgreSQL: bad answer");
  return pg;
}

std::string CreateTestDatabase(const TestPg& pg, const std::string& prefix) {
  static std::atomic<int> counter{0};
  const std::string name =
      prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1));
  pqxx::connection c(pg.Dsn());
  pqxx::nontransaction tx(c);
  tx.exec("drop database if exists " + tx.quote_name(name));
  tx.exec("create database " + tx.quote_name(name));
  return name;
}

void ExecSql(const TestPg& pg, const std::string& dbname, const std::string& sql) {
  pqxx::connection c(pg.Dsn(dbname));
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

int RunCommand(const std::string& command, std::string* output) {
  const std::string full = command + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("popen failed: " + command);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace dpgate::testing
