// dpgate's text-to-binary conversion against PostgreSQL's own binary output:
// for each value of each supported type, the server is asked for the text and
// the binary form of the same value, and the conversion of the text must equal
// the server's binary bytes exactly.
#include <libpq-fe.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "dpgate/proxy/binary_format.h"
#include "pq_handles.h"
#include "test_pg.h"

using dpgate::testing::Conn;
using dpgate::testing::RequireTestPg;
using dpgate::testing::Res;

namespace {
std::string Value(PGconn* c, const std::string& sql, int format) {
  Res r(PQexecParams(c, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, format));
  INFO(sql << ": " << PQresultErrorMessage(r.get()));
  REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  return std::string(PQgetvalue(r.get(), 0, 0), static_cast<size_t>(PQgetlength(r.get(), 0, 0)));
}
}  // namespace

TEST_CASE("converted binary values equal PostgreSQL's binary output") {
  auto pg = RequireTestPg();
  Conn c(PQconnectdb(pg.Dsn().c_str()));
  REQUIRE(PQstatus(c.get()) == CONNECTION_OK);
  struct Case {
    int32_t oid;
    std::string type;
    std::vector<std::string> literals;
  };
  const std::vector<Case> cases = {
      {16, "bool", {"true", "false"}},
      {21, "int2", {"0", "-32768", "32767", "7"}},
      {23, "int4", {"0", "-2147483648", "2147483647", "123456"}},
      {20, "int8", {"0", "-9223372036854775808", "9223372036854775807", "42"}},
      {26, "oid", {"0", "4294967295", "1259"}},
      {700, "float4", {"0", "-0", "1.5", "3.4028235e38", "1e-45", "NaN", "Infinity", "0.1"}},
      {701,
       "float8",
       {"0", "-0", "0.1", "1e308", "5e-324", "-Infinity", "NaN", "123456.789012345678",
        "2.2250738585072014e-308"}},
      {1700,
       "numeric",
       {"0", "0.000", "-0", "1", "-1", "12345.678", "0.0001", "0.00001", "10000", "100000000",
        "-99999999.99999999", "1e-20", "123456789012345678901234567890.123", "NaN", "Infinity",
        "-Infinity", "49.623457"}},
      {25, "text", {"''", "'hello'", "'héllo wörld'"}},
      {1043, "varchar", {"'abc'"}},
      {1042, "bpchar", {"'ab'::char(4)"}},
      {19, "name", {"'people'"}},
      {17, "bytea", {"'\\x'", "'\\x00ff10'"}},
      {2950, "uuid", {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"}},
      {114, "json", {"'{\"a\": 1}'"}},
      {3802, "jsonb", {"'{\"a\": [1, 2]}'"}},
      {1082,
       "date",
       {"'2000-01-01'", "'1970-01-01'", "'2024-02-29'", "'0001-01-01'", "'9999-12-31'",
        "'infinity'", "'-infinity'", "'1899-03-01'"}},
      {1083, "time", {"'00:00:00'", "'23:59:59.999999'", "'12:34:56.5'"}},
      {1114,
       "timestamp",
       {"'2000-01-01 00:00:00'", "'1969-07-20 20:17:40'", "'2024-11-23 12:00:00.123456'",
        "'infinity'", "'1900-01-01 00:00:00.000001'"}},
      {1184,
       "timestamptz",
       {"'2000-01-01 00:00:00+00'", "'2024-11-23 12:00:00.5+05:30'", "'1969-12-31 23:59:59-08'",
        "'-infinity'"}},
  };
  for (const char* zone : {"UTC", "Asia/Kolkata", "America/St_Johns"}) {
    Res set(PQexec(c.get(),
                   (std::string("SET DateStyle = ISO; SET TimeZone = '") + zone + "'").c_str()));
    REQUIRE(PQresultStatus(set.get()) == PGRES_COMMAND_OK);
    for (const auto& k : cases) {
      REQUIRE(dpgate::proxy::HasBinaryConversion(k.oid));
      for (const auto& literal : k.literals) {
        // Bare literals are quoted so that NaN and Infinity parse as values.
        const std::string quoted = literal[0] == '\'' ? literal : "'" + literal + "'";
        const std::string sql = "SELECT (" + quoted + ")::" + k.type;
        const std::string text = Value(c.get(), sql, 0);
        const std::string binary = Value(c.get(), sql, 1);
        auto converted = dpgate::proxy::TextToBinary(k.oid, text);
        INFO(zone << " " << sql << " text=" << text);
        REQUIRE(converted.ok());
        CHECK(*converted == binary);
      }
    }
  }
}
