// The PG v3 codec, byte by byte: framing at every split point, hard bounds on
// lengths and counts, every frontend message parser, the backend encoder's
// exact bytes, and a bounded fuzz run that must never crash or over-read.
#include <catch2/catch.hpp>
#include <random>

#include "dpgate/proxy/wire.h"

using namespace dpgate::proxy::wire;

namespace {

std::string Int32Bytes(int32_t v) {
  const auto u = static_cast<uint32_t>(v);
  return {static_cast<char>(u >> 24), static_cast<char>(u >> 16), static_cast<char>(u >> 8),
          static_cast<char>(u)};
}
std::string Int16Bytes(int16_t v) {
  const auto u = static_cast<uint16_t>(v);
  return {static_cast<char>(u >> 8), static_cast<char>(u)};
}
std::string Typed(char type, const std::string& body) {
  return std::string(1, type) + Int32Bytes(static_cast<int32_t>(body.size() + 4)) + body;
}
std::string Untyped(const std::string& body) {
  return Int32Bytes(static_cast<int32_t>(body.size() + 4)) + body;
}
std::string Cstr(const std::string& s) {
  return s + std::string(1, '\0');
}

std::string StartupBody() {
  return Int32Bytes(kProtocolV3) + Cstr("user") + Cstr("alice") + Cstr("database") +
         Cstr("warehouse") + Cstr("application_name") + Cstr("psql") + std::string(1, '\0');
}

}  // namespace

TEST_CASE("a startup packet and typed messages decode at every split point") {
  const std::string stream = Untyped(StartupBody()) + Typed('Q', Cstr("select 1")) + Typed('X', "");
  for (size_t split = 0; split <= stream.size(); ++split) {
    FrameDecoder d;
    d.Append(stream.substr(0, split));
    std::vector<Frame> frames;
    auto drain = [&] {
      while (true) {
        auto f = d.Next();
        REQUIRE(f.ok());
        if (!f->has_value()) break;
        frames.push_back(std::move(**f));
        if (frames.size() == 1) d.EndStartupPhase();
      }
    };
    drain();
    d.Append(stream.substr(split));
    drain();
    REQUIRE(frames.size() == 3);
    CHECK(frames[0].type == 0);
    CHECK(frames[1].type == 'Q');
    CHECK(frames[2].type == 'X');
    CHECK(frames[2].body.empty());
    CHECK(d.buffered() == 0);
  }
}

TEST_CASE("startup packet fields are parsed and validated") {
  auto p = ParseStartupPacket(StartupBody());
  REQUIRE(p.ok());
  const auto& m = std::get<StartupMessage>(*p);
  CHECK(m.protocol == kProtocolV3);
  REQUIRE(m.Find("user") != nullptr);
  CHECK(*m.Find("user") == "alice");
  CHECK(*m.Find("database") == "warehouse");
  CHECK(m.Find("options") == nullptr);

  CHECK(std::holds_alternative<SslRequest>(*ParseStartupPacket(Int32Bytes(kSslRequestCode))));
  CHECK(std::holds_alternative<GssEncRequest>(*ParseStartupPacket(Int32Bytes(kGssEncRequestCode))));
  auto cancel =
      ParseStartupPacket(Int32Bytes(kCancelRequestCode) + Int32Bytes(4242) + Int32Bytes(-7));
  REQUIRE(cancel.ok());
  CHECK(std::get<CancelRequest>(*cancel).process_id == 4242);
  CHECK(std::get<CancelRequest>(*cancel).secret_key == -7);

  // Protocol 2 is refused with feature_not_supported, not a crash.
  auto v2 = ParseStartupPacket(Int32Bytes(2 << 16) + std::string(1, '\0'));
  REQUIRE_FALSE(v2.ok());
  CHECK(v2.error().code == "0A000");
  // Missing terminator, duplicate parameter, trailing bytes, short cancel.
  CHECK_FALSE(ParseStartupPacket(Int32Bytes(kProtocolV3) + Cstr("user") + "alice").ok());
  CHECK_FALSE(ParseStartupPacket(Int32Bytes(kProtocolV3) + Cstr("user") + Cstr("a") + Cstr("user") +
                                 Cstr("b") + std::string(1, '\0'))
                  .ok());
  CHECK_FALSE(ParseStartupPacket(StartupBody() + "x").ok());
  CHECK_FALSE(ParseStartupPacket(Int32Bytes(kCancelRequestCode) + Int32Bytes(1)).ok());
  CHECK_FALSE(ParseStartupPacket(Int32Bytes(kSslRequestCode) + "x").ok());
}

TEST_CASE("lengths out of bounds are refused before any allocation") {
  Limits limits;
  limits.max_message = 1024;
  FrameDecoder d(limits);
  d.EndStartupPhase();
  d.Append(std::string(1, 'Q') + Int32Bytes(0x7fffffff));
  auto f = d.Next();
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().code == "08P01");
  CHECK(f.error().message.find("exceeds the limit") != std::string::npos);
  // It says which setting to raise.
  CHECK(f.error().message.find("limits.max_message_size") != std::string::npos);

  FrameDecoder tiny;
  tiny.EndStartupPhase();
  tiny.Append(std::string(1, 'Q') + Int32Bytes(3));
  CHECK_FALSE(tiny.Next().ok());

  FrameDecoder startup;  // startup packets are capped at 10,000 bytes
  startup.Append(Int32Bytes(10001));
  CHECK_FALSE(startup.Next().ok());
  FrameDecoder startup_short;
  startup_short.Append(Int32Bytes(7));
  CHECK_FALSE(startup_short.Next().ok());
}

TEST_CASE("extended-protocol messages parse, and malformed ones are refused") {
  auto parse = ParseParse(Cstr("s1") + Cstr("select $1::int") + Int16Bytes(1) + Int32Bytes(23));
  REQUIRE(parse.ok());
  CHECK(parse->statement == "s1");
  CHECK(parse->query == "select $1::int");
  REQUIRE(parse->parameter_types.size() == 1);
  CHECK(parse->parameter_types[0] == 23);
  // A count the body cannot hold.
  CHECK_FALSE(ParseParse(Cstr("") + Cstr("q") + Int16Bytes(1000)).ok());
  CHECK_FALSE(ParseParse(Cstr("") + Cstr("q") + Int16Bytes(-1)).ok());

  const std::string bind_body = Cstr("p1") + Cstr("s1") + Int16Bytes(1) + Int16Bytes(0) +
                                Int16Bytes(2) + Int32Bytes(2) + "42" + Int32Bytes(-1) +
                                Int16Bytes(1) + Int16Bytes(1);
  auto bind = ParseBind(bind_body);
  REQUIRE(bind.ok());
  CHECK(bind->portal == "p1");
  CHECK(bind->statement == "s1");
  REQUIRE(bind->parameters.size() == 2);
  CHECK(*bind->parameters[0] == "42");
  CHECK_FALSE(bind->parameters[1].has_value());
  REQUIRE(bind->result_formats.size() == 1);
  CHECK(bind->result_formats[0] == 1);
  CHECK_FALSE(ParseBind(bind_body + "x").ok());
  // A parameter length that runs past the end.
  CHECK_FALSE(
      ParseBind(Cstr("") + Cstr("") + Int16Bytes(0) + Int16Bytes(1) + Int32Bytes(100) + "ab").ok());
  // Two format codes for three parameters.
  CHECK_FALSE(ParseBind(Cstr("") + Cstr("") + Int16Bytes(2) + Int16Bytes(0) + Int16Bytes(0) +
                        Int16Bytes(3) + Int32Bytes(-1) + Int32Bytes(-1) + Int32Bytes(-1) +
                        Int16Bytes(0))
                  .ok());
  // Format code 7 does not exist.
  CHECK_FALSE(
      ParseBind(Cstr("") + Cstr("") + Int16Bytes(1) + Int16Bytes(7) + Int16Bytes(0) + Int16Bytes(0))
          .ok());

  auto describe = ParseDescribe("P" + Cstr("p1"));
  REQUIRE(describe.ok());
  CHECK(describe->kind == 'P');
  CHECK_FALSE(ParseDescribe("Z" + Cstr("p1")).ok());
  auto exec = ParseExecute(Cstr("p1") + Int32Bytes(100));
  REQUIRE(exec.ok());
  CHECK(exec->max_rows == 100);
  CHECK_FALSE(ParseExecute(Cstr("p1") + Int32Bytes(-5)).ok());
  CHECK(ParseClose("S" + Cstr("s1"))->name == "s1");

  auto q = ParseQuery(Cstr("select 1; select 2"));
  REQUIRE(q.ok());
  CHECK(*q == "select 1; select 2");
  CHECK_FALSE(ParseQuery("select 1").ok());              // unterminated
  CHECK_FALSE(ParseQuery(Cstr("select 1") + "x").ok());  // trailing bytes

  auto sasl = ParseSaslInitialResponse(Cstr("SCRAM-SHA-256") + Int32Bytes(5) + "n,,ab");
  REQUIRE(sasl.ok());
  CHECK(sasl->mechanism == "SCRAM-SHA-256");
  CHECK(sasl->data == "n,,ab");
  CHECK_FALSE(ParseSaslInitialResponse(Cstr("SCRAM-SHA-256") + Int32Bytes(50) + "n,,ab").ok());
}

TEST_CASE("backend messages have the exact bytes of the protocol spec") {
  BackendWriter w;
  w.ReadyForQuery('I');
  CHECK(w.Take() == std::string("Z\0\0\0\5I", 6));
  w.AuthenticationOk();
  CHECK(w.Take() == std::string("R\0\0\0\x08\0\0\0\0", 9));
  w.AuthenticationSasl({"SCRAM-SHA-256"});
  CHECK(w.Take() == "R" + Int32Bytes(4 + 4 + 14 + 1) + Int32Bytes(10) + Cstr("SCRAM-SHA-256") +
                        std::string(1, '\0'));
  w.CommandComplete("SELECT 3");
  CHECK(w.Take() == Typed('C', Cstr("SELECT 3")));
  w.DataRow({std::string("12"), std::nullopt});
  CHECK(w.Take() == Typed('D', Int16Bytes(2) + Int32Bytes(2) + "12" + Int32Bytes(-1)));
  FieldDescription f;
  f.name = "count";
  f.type_oid = 20;
  f.type_size = 8;
  w.RowDescription({f});
  CHECK(w.Take() ==
        Typed('T', Int16Bytes(1) + Cstr("count") + Int32Bytes(0) + Int16Bytes(0) + Int32Bytes(20) +
                       Int16Bytes(8) + Int32Bytes(-1) + Int16Bytes(0)));
  Diagnostic d;
  d.sqlstate = "42501";
  d.message = "permission denied";
  d.hint = "ask";
  w.ErrorResponse(d);
  CHECK(w.Take() ==
        Typed('E', "S" + Cstr("ERROR") + "V" + Cstr("ERROR") + "C" + Cstr("42501") + "M" +
                       Cstr("permission denied") + "H" + Cstr("ask") + std::string(1, '\0')));
  // A NUL inside a message cannot break the framing.
  d.message = std::string("a\0b", 3);
  d.hint.clear();
  w.NoticeResponse(d);
  const std::string notice = w.Take();
  FrameDecoder dec;
  dec.EndStartupPhase();
  dec.Append(notice);
  auto frame = dec.Next();
  REQUIRE(frame.ok());
  REQUIRE(frame->has_value());
  CHECK((*frame)->type == 'N');
  CHECK(dec.buffered() == 0);
}

TEST_CASE("an upstream error or notice body parses into the fields dpgate relays") {
  // PostgreSQL's field order; 'W' (context), 's'/'t' (schema, table), 'F',
  // 'L' and 'R' (source location) are not carried.
  const std::string body = "S" + Cstr("ERREUR") + "V" + Cstr("ERROR") + "C" + Cstr("22012") + "M" +
                           Cstr("division by zero") + "D" + Cstr("d") + "H" + Cstr("h") + "P" +
                           Cstr("17") + "W" + Cstr("SQL function") + "s" + Cstr("public") + "F" +
                           Cstr("int.c") + "L" + Cstr("841") + "R" + Cstr("int4div") +
                           std::string(1, '\0');
  auto d = ParseDiagnostic(body);
  REQUIRE(d.ok());
  CHECK(d->severity == "ERROR");  // the non-localized one
  CHECK(d->sqlstate == "22012");
  CHECK(d->message == "division by zero");
  CHECK(d->detail == "d");
  CHECK(d->hint == "h");
  CHECK(d->position == 17);
  // Re-encoded, it is what BackendWriter writes for the same Diagnostic.
  BackendWriter w;
  w.ErrorResponse(*d);
  auto again = ParseDiagnostic(w.Take().substr(5));
  REQUIRE(again.ok());
  CHECK(again->message == d->message);
  CHECK(again->position == 17);
  // Only 'S' (a server before 9.6): taken as the severity.
  auto old = ParseDiagnostic("S" + Cstr("NOTICE") + "M" + Cstr("m") + std::string(1, '\0'));
  REQUIRE(old.ok());
  CHECK(old->severity == "NOTICE");
  CHECK(old->sqlstate == "XX000");
  // A position that is not a small number is dropped, not trusted.
  auto odd = ParseDiagnostic("M" + Cstr("m") + "P" + Cstr("99999999999") + std::string(1, '\0'));
  REQUIRE(odd.ok());
  CHECK(odd->position == 0);
  // Unterminated field, missing final NUL, bytes after it: refused.
  CHECK_FALSE(ParseDiagnostic("M" + std::string("no end")).ok());
  CHECK_FALSE(ParseDiagnostic("M" + Cstr("m")).ok());
  CHECK_FALSE(ParseDiagnostic("M" + Cstr("m") + std::string(1, '\0') + "x").ok());
}

TEST_CASE("backend messages are framed at every split point, with bounded lengths") {
  const std::string stream = Typed('T', Int16Bytes(1) + Cstr("a") + std::string(18, '\0')) +
                             Typed('D', Int16Bytes(1) + Int32Bytes(-1)) +
                             Typed('C', Cstr("SELECT 1")) + Typed('Z', "I");
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    // Whatever arrived so far yields whole messages only, in order.
    std::string_view seen(stream.data(), cut);
    std::string types;
    while (true) {
      size_t whole = 0;
      auto m = NextBackendMessage(seen, 1024, &whole);
      REQUIRE(m.ok());
      if (!m->has_value()) {
        // The size is known as soon as the length word is there.
        CHECK(whole == (seen.size() >= 5 ? 1 + static_cast<size_t>(seen[4]) : 0));
        break;
      }
      CHECK((*m)->whole.size() == (*m)->body.size() + 5);
      CHECK((*m)->whole.data() == seen.data());
      types += (*m)->type;
      seen.remove_prefix((*m)->whole.size());
    }
    CHECK(std::string("TDCZ").substr(0, types.size()) == types);
    if (cut == stream.size()) CHECK(types == "TDCZ");
  }
  // A length word below 4, or a message beyond the bound, is an error before
  // its body is waited for.
  CHECK_FALSE(NextBackendMessage("D" + Int32Bytes(3), 1024).ok());
  CHECK_FALSE(NextBackendMessage("D" + Int32Bytes(-1), 1024).ok());
  CHECK_FALSE(NextBackendMessage("D" + Int32Bytes(1024), 1024).ok());
  auto at_bound = NextBackendMessage("D" + Int32Bytes(1023), 1024);
  REQUIRE(at_bound.ok());
  CHECK_FALSE(at_bound->has_value());  // exactly 1024 bytes: allowed, not here yet
}

TEST_CASE("fuzz: random and mutated input never crashes the codec") {
  // Deterministic generator for test inputs only (never for noise).
  std::mt19937 gen(20261123);
  std::uniform_int_distribution<int> byte(0, 255);
  const std::vector<std::string> seeds = {
      Untyped(StartupBody()),
      Typed('Q', Cstr("select 1")),
      Typed('P', Cstr("s") + Cstr("select $1") + Int16Bytes(1) + Int32Bytes(23)),
      Typed('B', Cstr("") + Cstr("s") + Int16Bytes(0) + Int16Bytes(1) + Int32Bytes(1) + "7" +
                     Int16Bytes(0)),
      Typed('E', Cstr("") + Int32Bytes(0)),
      Typed('D', "S" + Cstr("s")),
      Typed('p', Cstr("SCRAM-SHA-256") + Int32Bytes(3) + "n,,"),
      Typed('N', "V" + Cstr("NOTICE") + "C" + Cstr("00000") + "M" + Cstr("m") + "P" + Cstr("3") +
                     std::string(1, '\0')),
  };
  size_t parsed = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::string input = seeds[iteration % seeds.size()];
    const int mutations = 1 + iteration % 4;
    for (int m = 0; m < mutations; ++m) {
      const size_t pos = static_cast<size_t>(byte(gen)) % (input.size() + 1);
      switch (byte(gen) % 3) {
        case 0:
          if (pos < input.size()) input[pos] = static_cast<char>(byte(gen));
          break;
        case 1:
          input.insert(pos, 1, static_cast<char>(byte(gen)));
          break;
        default:
          if (pos < input.size()) input.erase(pos, 1);
      }
    }
    // The same bytes as an upstream's answer: framing never reads past them.
    size_t whole = 0;
    auto backend = NextBackendMessage(input, 4096, &whole);
    if (backend.ok() && backend->has_value()) {
      CHECK((*backend)->whole.size() <= input.size());
      CHECK((*backend)->whole.size() == (*backend)->body.size() + 5);
    }
    Limits limits;
    limits.max_message = 4096;
    FrameDecoder d(limits);
    if (iteration % seeds.size() != 0) d.EndStartupPhase();
    d.Append(input);
    auto f = d.Next();
    if (!f.ok() || !f->has_value()) continue;
    const Frame& frame = **f;
    switch (frame.type) {
      case 0:
        parsed += ParseStartupPacket(frame.body).ok();
        break;
      case 'Q':
        parsed += ParseQuery(frame.body).ok();
        break;
      case 'P':
        parsed += ParseParse(frame.body).ok();
        break;
      case 'B':
        parsed += ParseBind(frame.body).ok();
        break;
      case 'E':
        parsed += ParseExecute(frame.body).ok();
        break;
      case 'D':
        parsed += ParseDescribe(frame.body).ok();
        break;
      case 'p':
        parsed += ParseSaslInitialResponse(frame.body).ok();
        break;
      case 'N':
        parsed += ParseDiagnostic(frame.body).ok();
        break;
      default:
        break;
    }
  }
  // Some mutations keep messages valid; the run really exercised the parsers.
  CHECK(parsed > 100);
}
