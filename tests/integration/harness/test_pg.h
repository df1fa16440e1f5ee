// Access to the throwaway PostgreSQL cluster started by the `pg` CTest fixture
// (tests/integration/pg_cluster.sh). Every accessor fails the test (throws)
// when the cluster is not up: no integration test can pass without a server.
#pragma once

#include <string>

namespace dpgate::testing {

struct TestPg {
  std::string host;
  int port = 0;
  std::string user;      // superuser
  std::string password;  // superuser password (SCRAM over TCP)
  std::string socket_dir;

  // libpq DSN for the superuser on `dbname`.
  std::string Dsn(const std::string& dbname = "postgres") const;
};

// Reads $DPGATE_TEST_PG_STATE/env and checks the server answers `select 1`.
// Throws std::runtime_error with a clear message otherwise.
TestPg RequireTestPg();

// Creates a fresh database with a unique name starting with `prefix` and
// returns its name. Tests use one database each so they can run in parallel.
std::string CreateTestDatabase(const TestPg& pg, const std::string& prefix);

// Runs SQL (possibly several statements) as the superuser on `dbname`.
void ExecSql(const TestPg& pg, const std::string& dbname, const std::string& sql);

// Runs a command through /bin/sh, captures stdout+stderr, returns exit status.
int RunCommand(const std::string& command, std::string* output);

}  // namespace dpgate::testing
