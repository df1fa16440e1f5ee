// The rules of a session's authentication and idle deadlines
// (proxy/src/client_deadline.h): what its one timer decides when it fires.
#include "client_deadline.h"

#include <catch2/catch.hpp>
#include <chrono>

namespace {

using dpgate::proxy::ClientDeadline;
using Clock = ClientDeadline::Clock;
using std::chrono::seconds;

TEST_CASE("authentication has one deadline for the whole login", "[deadline]") {
  ClientDeadline d(seconds(30), seconds(0));
  const Clock::time_point t0 = Clock::now();
  CHECK(d.StartAuthentication(t0) == t0 + seconds(30));
  // Messages arriving during the login do not move the deadline: a client
  // that trickles its startup packet runs out of time all the same.
  d.StartWaiting();
  d.GotMessage();
  d.StartWaiting();
  const auto early = d.Check(t0 + seconds(29));
  CHECK_FALSE(early.expired.has_value());
  REQUIRE(early.check_again.has_value());
  CHECK(*early.check_again == t0 + seconds(30));
  const auto late = d.Check(t0 + seconds(30));
  REQUIRE(late.expired.has_value());
  CHECK(*late.expired == ClientDeadline::Expired::kAuthentication);
  CHECK(d.waiting());
}

TEST_CASE("without an idle timeout a logged-in session needs no timer", "[deadline]") {
  ClientDeadline d(seconds(30), seconds(0));
  const Clock::time_point t0 = Clock::now();
  d.StartAuthentication(t0);
  CHECK_FALSE(d.Authenticated(t0).has_value());
  d.StartWaiting();
  const auto v = d.Check(t0 + seconds(100000));
  CHECK_FALSE(v.expired.has_value());
  CHECK_FALSE(v.check_again.has_value());
}

TEST_CASE("an idle session expires only after waiting the whole idle timeout", "[deadline]") {
  ClientDeadline d(seconds(30), seconds(60));
  const Clock::time_point t0 = Clock::now();
  d.StartAuthentication(t0);
  const auto first = d.Authenticated(t0);
  REQUIRE(first.has_value());
  CHECK(*first == t0 + seconds(60));

  // Busy (not waiting): never expires, looks again a whole timeout later.
  const auto busy = d.Check(t0 + seconds(600));
  CHECK_FALSE(busy.expired.has_value());
  REQUIRE(busy.check_again.has_value());
  CHECK(*busy.check_again == t0 + seconds(660));

  d.StartWaiting();
  const Clock::time_point since = Clock::now();
  const auto soon = d.Check(since + seconds(59));
  CHECK_FALSE(soon.expired.has_value());
  REQUIRE(soon.check_again.has_value());
  // Due a timeout after the wait began (read from the clock when it began).
  CHECK(*soon.check_again >= since + seconds(59));
  CHECK(*soon.check_again <= since + seconds(60));

  // A partial message (StartWaiting again without GotMessage) does not
  // restart the wait.
  d.StartWaiting();
  const auto expired = d.Check(since + seconds(61));
  REQUIRE(expired.expired.has_value());
  CHECK(*expired.expired == ClientDeadline::Expired::kIdle);

  // A message ends the wait; the next wait starts afresh.
  d.GotMessage();
  CHECK_FALSE(d.Check(since + seconds(61)).expired.has_value());
  d.StartWaiting();
  const Clock::time_point again = Clock::now();
  CHECK_FALSE(d.Check(again + seconds(59)).expired.has_value());
  CHECK(d.Check(again + seconds(61)).expired.has_value());
}

}  // namespace
