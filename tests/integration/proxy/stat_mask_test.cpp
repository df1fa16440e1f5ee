// The per-relation statistics views through dpgate (docs/REWRITER.md §3.3):
// BI tools read them (Metabase's n_live_tup, DBeaver's and pgAdmin's table
// and index property pages) and get an answer, but every counter is 0 and
// every timestamp NULL, while the same views read directly on the upstream
// show the real row counts. The column names and types dpgate answers are
// compared with the real PostgreSQL 15 views, so the rewriter's hard-coded
// column lists cannot drift from the server's.
#include <libpq-fe.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pq_handles.h"
#include "serve_fixture.h"

using dpgate::testing::Conn;
using dpgate::testing::Connect;
using dpgate::testing::kAlicePassword;
using dpgate::testing::kDatasetsYaml;
using dpgate::testing::kPeople;
using dpgate::testing::kSchemaSql;
using dpgate::testing::Res;
using dpgate::testing::ServeFixture;

namespace {

Res Rows(PGconn* c, const std::string& sql) {
  Res r(PQexec(c, sql.c_str()));
  INFO(sql << ": " << PQresultErrorMessage(r.get()));
  REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  return r;
}

void Command(PGconn* c, const std::string& sql) {
  Res r(PQexec(c, sql.c_str()));
  INFO(sql << ": " << PQresultErrorMessage(r.get()));
  REQUIRE(PQresultStatus(r.get()) == PGRES_COMMAND_OK);
}

std::string Refusal(PGconn* c, const std::string& sql) {
  Res r(PQexec(c, sql.c_str()));
  INFO(sql);
  REQUIRE(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
  return PQresultErrorMessage(r.get());
}

// The schema of the fixture plus a sequence, so pg_statio_user_sequences has
// a row to compare.
const std::string kStatSchemaSql =
    std::string(kSchemaSql) + "create sequence public.ticket_seq; select nextval('ticket_seq');";

bool IsIdentityColumn(const std::string& name) {
  static const std::set<std::string> kIdentity = {"relid", "indexrelid", "schemaname", "relname",
                                                  "indexrelname"};
  return kIdentity.count(name) > 0;
}

constexpr unsigned kTimestamptzOid = 1184;
constexpr unsigned kInt8Oid = 20;

}  // namespace

TEST_CASE("pg_stat_user_tables through dpgate shows no activity while the upstream counts rows") {
  ServeFixture f("", kStatSchemaSql, "public.people, public.lookup", kDatasetsYaml);
  Conn upstream = Connect(f.pg.Dsn(f.db));
  // ANALYZE reports the live-tuple count to the shared statistics at once;
  // the inserts were counted when the schema's session ended. Wait until the
  // real view shows them, so the masked answer below is not vacuous.
  Rows(upstream.get(), "ANALYZE public.people; SELECT pg_catalog.pg_stat_force_next_flush()");
  const std::string probe =
      "SELECT relname, n_live_tup, n_tup_ins, last_analyze FROM pg_stat_user_tables "
      "WHERE relname = 'people'";
  long live = 0;
  long inserted = 0;
  bool analyzed = false;
  for (int attempt = 0; attempt < 100 && !(live > 0 && inserted > 0 && analyzed); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Res real = Rows(upstream.get(), probe);
    REQUIRE(PQntuples(real.get()) == 1);
    live = std::stol(PQgetvalue(real.get(), 0, 1));
    inserted = std::stol(PQgetvalue(real.get(), 0, 2));
    analyzed = PQgetisnull(real.get(), 0, 3) == 0;
  }
  REQUIRE(live == kPeople);
  REQUIRE(inserted >= kPeople);
  REQUIRE(analyzed);

  Conn proxy = Connect(f.Dsn("alice", kAlicePassword));
  Res masked = Rows(proxy.get(), probe);
  REQUIRE(PQntuples(masked.get()) == 1);
  CHECK(std::string(PQgetvalue(masked.get(), 0, 0)) == "people");
  CHECK(std::string(PQgetvalue(masked.get(), 0, 1)) == "0");
  CHECK(std::string(PQgetvalue(masked.get(), 0, 2)) == "0");
  CHECK(PQgetisnull(masked.get(), 0, 3) == 1);

  // The same through the extended protocol, with the view qualified and
  // aliased, and a predicate on a masked counter.
  const char* name = "people";
  Res extended(PQexecParams(proxy.get(),
                            "SELECT s.n_live_tup FROM pg_catalog.pg_stat_all_tables s "
                            "WHERE s.relname = $1 AND s.n_live_tup > 100",
                            1, nullptr, &name, nullptr, nullptr, 0));
  INFO(PQresultErrorMessage(extended.get()));
  REQUIRE(PQresultStatus(extended.get()) == PGRES_TUPLES_OK);
  CHECK(PQntuples(extended.get()) == 0);
}

TEST_CASE("Metabase's describe-database query answers estimated_row_count 0 through dpgate") {
  ServeFixture f;
  Conn upstream = Connect(f.pg.Dsn(f.db));
  Command(upstream.get(), "ANALYZE public.people");
  // Metabase's postgres driver (get-tables-sql, HoneySQL :ansi dialect), as
  // the JDBC driver sends it: one parameter per schema.
  const std::string metabase =
      "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", CASE "
      "\"c\".\"relkind\" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN "
      "'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "
      "\"type\", \"d\".\"description\" AS \"description\", \"stat\".\"n_live_tup\" AS "
      "\"estimated_row_count\" FROM \"pg_catalog\".\"pg_class\" AS \"c\" INNER JOIN "
      "\"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" LEFT "
      "JOIN \"pg_catalog\".\"pg_description\" AS \"d\" ON (\"c\".\"oid\" = \"d\".\"objoid\") AND "
      "(\"d\".\"objsubid\" = 0) AND (\"d\".\"classoid\" = 'pg_class'::regclass) LEFT JOIN "
      "\"pg_stat_user_tables\" AS \"stat\" ON (\"n\".\"nspname\" = \"stat\".\"schemaname\") AND "
      "(\"c\".\"relname\" = \"stat\".\"relname\") WHERE (\"c\".\"relnamespace\" = \"n\".\"oid\") "
      "AND (\"n\".\"nspname\" !~ '^pg_') AND (\"n\".\"nspname\" <> 'information_schema') AND "
      "c.relkind in ('r', 'p', 'v', 'f', 'm') AND (\"n\".\"nspname\" IN ($1)) ORDER BY \"type\" "
      "ASC, \"schema\" ASC, \"name\" ASC";
  const char* schema = "public";
  const auto run = [&](PGconn* c) {
    Res r(PQexecParams(c, metabase.c_str(), 1, nullptr, &schema, nullptr, nullptr, 0));
    INFO(PQresultErrorMessage(r.get()));
    REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
    REQUIRE(PQntuples(r.get()) == 2);
    CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == "lookup");
    CHECK(std::string(PQgetvalue(r.get(), 1, 1)) == "people");
    CHECK(std::string(PQfname(r.get(), 4)) == "estimated_row_count");
    return std::string(PQgetvalue(r.get(), 1, 4));
  };
  Conn proxy = Connect(f.Dsn("alice", kAlicePassword));
  CHECK(run(upstream.get()) == std::to_string(kPeople));
  CHECK(run(proxy.get()) == "0");
}

TEST_CASE("every masked statistics view has the real view's columns, rows and no counts") {
  ServeFixture f("", kStatSchemaSql, "public.people, public.lookup", kDatasetsYaml);
  Conn upstream = Connect(f.pg.Dsn(f.db));
  Command(upstream.get(), "ANALYZE public.people");
  Conn proxy = Connect(f.Dsn("alice", kAlicePassword));
  for (const std::string family : {"stat_%s_tables", "stat_xact_%s_tables", "statio_%s_tables",
                                   "stat_%s_indexes", "statio_%s_indexes", "statio_%s_sequences"}) {
    for (const std::string scope : {"all", "user", "sys"}) {
      std::string view = "pg_" + family;
      view.replace(view.find("%s"), 2, scope);
      const bool index = family.find("indexes") != std::string::npos;
      const std::string sql =
          "SELECT * FROM " + view + " ORDER BY relid" + (index ? ", indexrelid" : "");
      INFO(view);
      Res real = Rows(upstream.get(), sql);
      Res masked = Rows(proxy.get(), sql);
      REQUIRE(PQnfields(masked.get()) == PQnfields(real.get()));
      for (int column = 0; column < PQnfields(real.get()); ++column) {
        const std::string name = PQfname(real.get(), column);
        INFO(name);
        CHECK(std::string(PQfname(masked.get(), column)) == name);
        CHECK(PQftype(masked.get(), column) == PQftype(real.get(), column));
        if (!IsIdentityColumn(name)) {
          const unsigned type = PQftype(real.get(), column);
          CHECK((type == kInt8Oid || type == kTimestamptzOid));
        }
      }
      // The same rows (the catalog's relations), identity columns intact,
      // every other column PostgreSQL's "no activity recorded".
      REQUIRE(PQntuples(masked.get()) == PQntuples(real.get()));
      if (scope == "user") CHECK(PQntuples(real.get()) > 0);
      for (int row = 0; row < PQntuples(real.get()); ++row) {
        for (int column = 0; column < PQnfields(real.get()); ++column) {
          const std::string name = PQfname(real.get(), column);
          if (IsIdentityColumn(name)) {
            CHECK(std::string(PQgetvalue(masked.get(), row, column)) ==
                  PQgetvalue(real.get(), row, column));
          } else if (PQftype(real.get(), column) == kTimestamptzOid) {
            CHECK(PQgetisnull(masked.get(), row, column) == 1);
          } else {
            CHECK(std::string(PQgetvalue(masked.get(), row, column)) == "0");
          }
        }
      }
    }
  }
  // Not vacuous: the real view shows the count dpgate hides.
  Res real =
      Rows(upstream.get(), "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'people'");
  CHECK(std::string(PQgetvalue(real.get(), 0, 0)) == std::to_string(kPeople));
}

TEST_CASE("the other statistics relations and functions stay refused through dpgate") {
  ServeFixture f;
  Conn proxy = Connect(f.Dsn("alice", kAlicePassword));
  CHECK_THAT(Refusal(proxy.get(), "SELECT query FROM pg_stat_activity"),
             Catch::Contains("pg_catalog.pg_stat_activity is denied"));
  CHECK_THAT(Refusal(proxy.get(), "SELECT tup_inserted FROM pg_stat_database"),
             Catch::Contains("pg_catalog.pg_stat_database is denied"));
  CHECK_THAT(Refusal(proxy.get(), "SELECT most_common_vals FROM pg_stats"),
             Catch::Contains("pg_catalog.pg_stats is denied"));
  CHECK_THAT(Refusal(proxy.get(), "SELECT pg_stat_get_live_tuples(relid) FROM pg_stat_user_tables"),
             Catch::Contains("function pg_stat_get_live_tuples is denied"));
  CHECK_THAT(Refusal(proxy.get(),
                     "SELECT count(*) FROM people p JOIN pg_stat_user_tables s "
                     "ON s.relname = 'people'"),
             Catch::Contains("is refused in a query over the private table public.people"));
}
