// The relay path (docs/PROXY.md §1 item 4): on a plain connection,
// completion handlers run the Queries that are relayed whole and hand every
// other message back to the session's coroutine. These cases drive it with
// a raw client, so that the bytes arrive exactly as a test wants them:
// several Queries in one write (some run by the relay path, then one it
// hands back, then more behind it), one Query split across writes, a Query
// longer than a socket's buffer, and malformed input right behind a relayed
// Query. Each answer must be the statement's own, in order, and the audit
// log must name each statement's own class and fingerprint.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "raw_client.h"
#include "serve_fixture.h"

using dpgate::testing::RawClient;
using dpgate::testing::ServeFixture;

namespace {

using Messages = std::vector<std::pair<char, std::string>>;

std::string Types(const Messages& messages) {
  std::string t;
  for (const auto& m : messages) t += m.first;
  return t;
}

// The first column of a DataRow body: Int16 count, then Int32 length and
// the bytes of each column.
std::string FirstValue(const std::string& data_row) {
  REQUIRE(data_row.size() >= 6);
  uint32_t n = 0;
  std::memcpy(&n, data_row.data() + 2, 4);
  n = ntohl(n);
  REQUIRE(data_row.size() >= 6 + n);
  return data_row.substr(6, n);
}

// The SQLSTATE of an ErrorResponse body (field 'C').
std::string Sqlstate(const std::string& error) {
  for (size_t at = 0; at < error.size() && error[at] != '\0';) {
    const size_t end = error.find('\0', at);
    if (error[at] == 'C') return error.substr(at + 1, end - at - 1);
    at = end + 1;
  }
  return "";
}

std::string Query(const std::string& sql) {
  return RawClient::Message('Q', RawClient::Str(sql));
}

ServeFixture TrustFixture() {
  return ServeFixture("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                      dpgate::testing::kDatasetsYaml, "trust");
}

// The fields of every audit line, in order: "class=... fingerprint=...".
std::vector<std::string> AuditShapes(const std::string& log) {
  std::vector<std::string> shapes;
  for (size_t at = log.find("audit analyst="); at != std::string::npos;
       at = log.find("audit analyst=", at + 1)) {
    const size_t from = log.find(" class=", at);
    const size_t to = log.find(" dataset=", at);
    REQUIRE(from != std::string::npos);
    REQUIRE(to != std::string::npos);
    shapes.push_back(log.substr(from + 1, to - from - 1));
  }
  return shapes;
}

}  // namespace

TEST_CASE(
    "Queries pipelined in one write are answered in order, across the relay path's hand-back") {
  ServeFixture f = TrustFixture();
  RawClient raw(f.port);
  raw.Startup("alice", f.db);
  // The first statement takes the upstream connection; the relay path runs
  // those after it.
  raw.Send(Query("SELECT 1 AS warm"));
  CHECK(Types(raw.UntilReady()) == "TDCZ");

  // Three relayed Queries (the second fails upstream), then a dpgate command
  // (handed back to the coroutine), then two more relayed ones behind it.
  raw.Send(Query("SELECT label FROM lookup WHERE code = 'a'") + Query("SELECT 1 / 0 AS boom") +
           Query("SELECT code FROM lookup ORDER BY code") + Query("SHOW dp.epsilon") +
           Query("SELECT 'after' AS t") + Query("SELECT label FROM lookup WHERE code = 'b'"));
  const Messages first = raw.UntilReady();
  REQUIRE(Types(first) == "TDCZ");
  CHECK(FirstValue(first[1].second) == "Group A");
  const Messages error = raw.UntilReady();
  REQUIRE(Types(error) == "EZ");
  CHECK(Sqlstate(error[0].second) == "22012");  // division_by_zero
  CHECK(error[1].second == "I");
  const Messages codes = raw.UntilReady();
  REQUIRE(Types(codes) == "TDDCZ");
  CHECK(FirstValue(codes[1].second) == "a");
  CHECK(FirstValue(codes[2].second) == "b");
  const Messages shown = raw.UntilReady();
  REQUIRE(Types(shown) == "TDCZ");
  CHECK(FirstValue(shown[1].second) == "0.5");  // query.epsilon of the fixture
  const Messages after = raw.UntilReady();
  REQUIRE(Types(after) == "TDCZ");
  CHECK(FirstValue(after[1].second) == "after");
  const Messages last = raw.UntilReady();
  REQUIRE(Types(last) == "TDCZ");
  CHECK(FirstValue(last[1].second) == "Group B");

  // One Query in three writes: the relay path waits for the whole message.
  const std::string split = Query("SELECT 'split' AS s");
  raw.Send(split.substr(0, 3));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  raw.Send(split.substr(3, 10));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  raw.Send(split.substr(13));
  const Messages whole = raw.UntilReady();
  REQUIRE(Types(whole) == "TDCZ");
  CHECK(FirstValue(whole[1].second) == "split");

  // A Query of ~3.5 MB: more than a loopback socket takes at once, so the
  // upstream write finishes in parts (and the client's in parts too when
  // the answer is as long).
  const std::string big(3500000, 'x');
  raw.Send(Query("SELECT pg_catalog.length('" + big +
                 "') AS n, pg_catalog.repeat('y', 3500000) AS echo"));
  const Messages measured = raw.UntilReady();
  REQUIRE(Types(measured) == "TDCZ");
  CHECK(FirstValue(measured[1].second) == "3500000");
  CHECK(measured[1].second.size() > big.size());

  // Each audit line names its own statement: the relay path keeps the start
  // of the last line, and must not reuse it for another statement.
  raw.Send(Query("SELECT relname FROM pg_catalog.pg_class WHERE relname = 'pg_class'"));
  CHECK(Types(raw.UntilReady()) == "TDCZ");
  raw.Send(Query("SELECT label FROM lookup WHERE code = 'a'"));
  CHECK(Types(raw.UntilReady()) == "TDCZ");
  REQUIRE(f.dpgate->Stop() == 0);
  const auto shapes = AuditShapes(f.dpgate->Log());
  REQUIRE(shapes.size() == 11);
  // 0 warm, 1 lookup 'a', 2 1/0, 3 codes, 4 SHOW, 5 'after', 6 lookup 'b',
  // 7 split, 8 big, 9 pg_class, 10 lookup 'a' again.
  CHECK(shapes[4].rfind("class=dpgate_command ", 0) == 0);
  CHECK(shapes[9].rfind("class=catalog ", 0) == 0);
  CHECK(shapes[10].rfind("class=public ", 0) == 0);
  CHECK(shapes[1] == shapes[10]);  // same statement, same fingerprint
  CHECK(shapes[1] == shapes[6]);   // same shape: the constants are not in it
  CHECK(shapes[1] != shapes[3]);
  CHECK(shapes[9] != shapes[10]);
}

TEST_CASE("malformed input right behind a relayed Query ends that connection, not the process") {
  ServeFixture f = TrustFixture();
  RawClient raw(f.port);
  raw.Startup("alice", f.db);
  raw.Send(Query("SELECT 1 AS warm"));
  CHECK(Types(raw.UntilReady()) == "TDCZ");
  // A Query, then a message whose length word (3) is shorter than itself.
  raw.Send(Query("SELECT 'before' AS b") + std::string("Q\0\0\0\3", 5));
  const Messages answered = raw.UntilReady();
  REQUIRE(Types(answered) == "TDCZ");
  CHECK(FirstValue(answered[1].second) == "before");
  char type = 0;
  std::string body;
  REQUIRE(raw.Next(&type, &body) == RawClient::Read::kMessage);
  CHECK(type == 'E');
  CHECK(Sqlstate(body) == "08P01");  // protocol_violation
  CHECK(body.find("FATAL") != std::string::npos);
  CHECK(raw.Drain().empty());  // then the connection is closed

  RawClient next(f.port);
  next.Startup("alice", f.db);
  next.Send(Query("SELECT label FROM lookup WHERE code = 'b'"));
  const Messages ok = next.UntilReady();
  REQUIRE(Types(ok) == "TDCZ");
  CHECK(FirstValue(ok[1].second) == "Group B");
  CHECK(f.dpgate->running());
}

// A client that writes its last Query and half-closes at once: its Query
// and the end of its stream arrive in one segment, so the socket's one
// readiness event covers both. The answer must come, and then dpgate must
// read the end of the stream and close, as PostgreSQL does. A relay path
// that took a short read for an emptied socket and then waited for another
// event (as the removed read_speculation.h did) would wait for ever here,
// holding the session and its upstream connection: End() would time out.
TEST_CASE("a client that half-closes right behind its Query gets the answer and then the end") {
  ServeFixture f = TrustFixture();
  for (int round = 0; round < 5; ++round) {
    RawClient raw(f.port);
    raw.Startup("alice", f.db);
    raw.Send(Query("SELECT 1 AS warm"));  // the relay path runs the next one
    REQUIRE(Types(raw.UntilReady()) == "TDCZ");
    // Ordering only (nothing is timed): dpgate's next read is waiting in
    // its reactor when the segment arrives, not tried after it arrived.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    raw.SendThenHalfClose(Query("SELECT label FROM lookup WHERE code = 'a'"));
    const Messages answer = raw.UntilReady();
    REQUIRE(Types(answer) == "TDCZ");
    CHECK(FirstValue(answer[1].second) == "Group A");
    CHECK(raw.End() == RawClient::Read::kClosed);
  }
  CHECK(f.dpgate->running());
}

// A read that waited for an event already taken would leave a client
// without its answer: eight sessions at once, each
// sending one to three Queries per write, some split across two writes,
// some handed back to the coroutine, must each get every answer, in order.
TEST_CASE("eight concurrent sessions sending pipelined and split Queries get every answer") {
  ServeFixture f = TrustFixture();
  constexpr int kClients = 8;
  constexpr int kRounds = 150;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::make_unique<RawClient>(f.port));
    clients.back()->Startup("alice", f.db);
    clients.back()->Send(Query("SELECT 1 AS warm"));
    REQUIRE(Types(clients.back()->UntilReady()) == "TDCZ");
  }
  int answered = 0;
  int sent = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<std::string>> expected(kClients);
    for (int c = 0; c < kClients; ++c) {
      const int queries = 1 + (round + c) % 3;
      std::string bytes;
      for (int q = 0; q < queries; ++q) {
        if ((round * 7 + c * 3 + q) % 11 == 0) {
          bytes += Query("SHOW dp.epsilon");  // run by the coroutine
          expected[c].push_back("0.5");
        } else {
          const std::string v = std::to_string(round * 1000 + c * 10 + q);
          bytes += Query("SELECT " + v + " AS v");
          expected[c].push_back(v);
        }
        ++sent;
      }
      if ((round + c) % 4 == 0) {
        const size_t half = bytes.size() / 2;
        clients[c]->Send(bytes.substr(0, half));
        clients[c]->Send(bytes.substr(half));
      } else {
        clients[c]->Send(bytes);
      }
    }
    for (int c = 0; c < kClients; ++c) {
      for (const auto& value : expected[c]) {
        const Messages answer = clients[c]->UntilReady();  // 20 s at most
        REQUIRE(Types(answer) == "TDCZ");
        CHECK(FirstValue(answer[1].second) == value);
        ++answered;
      }
    }
  }
  CHECK(answered == sent);
  CHECK(f.dpgate->running());
}
