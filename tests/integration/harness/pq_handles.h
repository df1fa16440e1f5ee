// Owning handles for raw libpq connections and results in the integration
// tests (the tests that need what libpqxx hides: transaction status, notice
// receivers, several results of one query, the extended protocol's pieces).
#pragma once

#include <libpq-fe.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>

namespace dpgate::testing {

struct PgConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultCloser {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, PgConnCloser>;
using Res = std::unique_ptr<PGresult, PgResultCloser>;

// A connection that is up, or the test stops with libpq's message.
inline Conn Connect(const std::string& dsn) {
  Conn c(PQconnectdb(dsn.c_str()));
  INFO(PQerrorMessage(c.get()));
  REQUIRE(PQstatus(c.get()) == CONNECTION_OK);
  return c;
}

// The result's SQLSTATE, or "" when it has none.
inline std::string Sqlstate(const PGresult* r) {
  const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return s != nullptr ? s : "";
}

}  // namespace dpgate::testing
