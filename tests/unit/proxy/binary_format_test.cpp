// Known binary encodings (the layouts of PostgreSQL's *send functions); the
// integration test binary_format_test.cpp compares against a real server.
#include "dpgate/proxy/binary_format.h"

#include <catch2/catch.hpp>
#include <string>

using dpgate::proxy::HasBinaryConversion;
using dpgate::proxy::TextToBinary;

namespace {
std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int v : b) s.push_back(static_cast<char>(v));
  return s;
}
std::string Encode(int32_t oid, const std::string& text) {
  auto r = TextToBinary(oid, text);
  REQUIRE(r.ok());
  return *r;
}
}  // namespace

TEST_CASE("integers, booleans and text encode in network order") {
  CHECK(Encode(23, "42") == Bytes({0, 0, 0, 42}));
  CHECK(Encode(23, "-1") == Bytes({0xff, 0xff, 0xff, 0xff}));
  CHECK(Encode(21, "258") == Bytes({1, 2}));
  CHECK(Encode(20, "1") == Bytes({0, 0, 0, 0, 0, 0, 0, 1}));
  CHECK(Encode(16, "t") == Bytes({1}));
  CHECK(Encode(16, "f") == Bytes({0}));
  CHECK(Encode(25, "héllo") == "héllo");
  CHECK(Encode(3802, "{}") == Bytes({1, '{', '}'}));
  CHECK(Encode(701, "1") == Bytes({0x3f, 0xf0, 0, 0, 0, 0, 0, 0}));
}

TEST_CASE("numeric uses base-10000 digits with weight, sign and display scale") {
  // 12345.678 = 1·10000^1 + 2345·10000^0 + 6780·10000^-1, dscale 3.
  CHECK(Encode(1700, "12345.678") == Bytes({0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c}));
  CHECK(Encode(1700, "-0.5") == Bytes({0, 1, 0xff, 0xff, 0x40, 0, 0, 1, 0x13, 0x88}));
  CHECK(Encode(1700, "0.00") == Bytes({0, 0, 0, 0, 0, 0, 0, 2}));
  CHECK(Encode(1700, "NaN") == Bytes({0, 0, 0, 0, 0xc0, 0, 0, 0}));
}

TEST_CASE("dates and timestamps count from 2000-01-01") {
  CHECK(Encode(1082, "2000-01-02") == Bytes({0, 0, 0, 1}));
  CHECK(Encode(1082, "1999-12-31") == Bytes({0xff, 0xff, 0xff, 0xff}));
  // One second after the epoch, in microseconds.
  CHECK(Encode(1114, "2000-01-01 00:00:01") == Bytes({0, 0, 0, 0, 0, 0x0f, 0x42, 0x40}));
  // The same instant written at +01:00.
  CHECK(Encode(1184, "2000-01-01 01:00:01+01") == Encode(1184, "2000-01-01 00:00:01+00"));
}

TEST_CASE("text the module cannot convert exactly is an error, never a guess") {
  CHECK(!TextToBinary(23, "4x").ok());
  CHECK(!TextToBinary(23, "99999999999").ok());
  CHECK(!TextToBinary(1082, "01/02/2000").ok());  // not ISO DateStyle
  CHECK(!TextToBinary(1114, "2000-01-01 00:00:00 BC").ok());
  CHECK(!TextToBinary(17, "escaped\\000").ok());
  CHECK(!TextToBinary(1186, "1 day").ok());  // interval: no conversion
  CHECK(TextToBinary(1186, "1 day").error().code == "0A000");
  CHECK(!HasBinaryConversion(1186));
  CHECK(HasBinaryConversion(1700));
}
