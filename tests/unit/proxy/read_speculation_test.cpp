// ReadSpeculation (proxy/src/read_speculation.h) over a real connected pair
// of stream sockets and a real io_context run by this one thread, as an I/O
// thread runs its own: the recv is skipped only after a read that was queued
// in the reactor and emptied the socket, and data that arrives after that is
// still read. A read that waits for an event the reactor already took would
// never complete; each case runs the loop with a deadline and requires the
// read to have completed.
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "read_speculation.h"

namespace asio = boost::asio;
using dpgate::proxy::ReadSpeculation;
using Socket = asio::local::stream_protocol::socket;

namespace {

struct Pair {
  asio::io_context io{1};
  Socket ours{io};
  Socket peer{io};
  Pair() { asio::local::connect_pair(ours, peer); }
  void PeerWrites(const std::string& bytes) {
    REQUIRE(::send(peer.native_handle(), bytes.data(), bytes.size(), 0) ==
            static_cast<ssize_t>(bytes.size()));
  }
  // Runs the loop until `done` or two seconds have passed.
  void RunUntil(const bool& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!done && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(std::chrono::milliseconds(20));
    }
  }
};

}  // namespace

TEST_CASE("a queued read that empties the socket skips the next recv, and a full read does not") {
  // Debian 12's Boost 1.74 (scripts/install-deps): the relay path's
  // syscall count relies on it (bench/RESULTS.md, proxy).
  CHECK(ReadSpeculation::kActive);
  Pair p;
  ReadSpeculation reads;
  char buf[64];
  bool done = false;
  size_t got = 0;
  // Nothing there yet: the read is queued in the reactor, then "abc" comes.
  p.ours.async_read_some(asio::buffer(buf), [&](const boost::system::error_code& ec, size_t n) {
    reads.Completed(p.ours, ec, n, sizeof buf);
    got = n;
    done = true;
  });
  reads.Started(p.ours);
  p.PeerWrites("abc");
  p.RunUntil(done);
  REQUIRE(done);
  CHECK(got == 3);
  CHECK(ReadSpeculation::WillTryRecvFirst(p.ours) == !ReadSpeculation::kActive);

  // A read that fills its buffer may have left more behind: recv stays on.
  p.PeerWrites(std::string(100, 'x'));
  done = false;
  p.ours.async_read_some(asio::buffer(buf), [&](const boost::system::error_code& ec, size_t n) {
    reads.Completed(p.ours, ec, n, sizeof buf);
    got = n;
    done = true;
  });
  reads.Started(p.ours);
  p.RunUntil(done);
  REQUIRE(done);
  CHECK(got == sizeof buf);
  CHECK(ReadSpeculation::WillTryRecvFirst(p.ours));
}

TEST_CASE("a read completed by Asio's own recv never skips the next one") {
  Pair p;
  ReadSpeculation reads;
  char buf[64];
  // The data is there before the read starts: the speculative recv takes
  // it, and the completion is posted (an epoll_wait may run before it).
  p.PeerWrites("abc");
  REQUIRE(ReadSpeculation::WillTryRecvFirst(p.ours));  // as after any event
  bool done = false;
  p.ours.async_read_some(asio::buffer(buf), [&](const boost::system::error_code& ec, size_t n) {
    reads.Completed(p.ours, ec, n, sizeof buf);
    done = true;
  });
  reads.Started(p.ours);
  p.RunUntil(done);
  REQUIRE(done);
  CHECK(ReadSpeculation::WillTryRecvFirst(p.ours));
}

TEST_CASE("data that arrives after the recv was skipped is still read") {
  Pair p;
  ReadSpeculation reads;
  char buf[64];
  std::string received;
  int reads_done = 0;
  // Each handler clears the flag (a queued, short read), then the peer
  // writes before the next read is started, and a third time while no read
  // is pending at all and the loop runs: each of these must be read.
  std::function<void()> start = [&] {
    p.ours.async_read_some(asio::buffer(buf), [&](const boost::system::error_code& ec, size_t n) {
      reads.Completed(p.ours, ec, n, sizeof buf);
      REQUIRE(!ec);
      received.append(buf, n);
      ++reads_done;
      if (reads_done == 1) {
        p.PeerWrites("second");  // before the next read is queued
        start();
      }
    });
    reads.Started(p.ours);
  };
  start();
  p.PeerWrites("first");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (reads_done < 2 && std::chrono::steady_clock::now() < deadline) {
    p.io.restart();
    p.io.run_for(std::chrono::milliseconds(20));
  }
  REQUIRE(reads_done == 2);
  CHECK(received == "firstsecond");

  // Now nothing is pending: "third" arrives, the reactor takes its event
  // (a work guard keeps the loop polling), and only then is a read started.
  p.PeerWrites("third");
  {
    auto guard = asio::make_work_guard(p.io);
    p.io.restart();
    p.io.run_for(std::chrono::milliseconds(100));
  }
  CHECK(ReadSpeculation::WillTryRecvFirst(p.ours));
  bool done = false;
  p.ours.async_read_some(asio::buffer(buf), [&](const boost::system::error_code& ec, size_t n) {
    reads.Completed(p.ours, ec, n, sizeof buf);
    REQUIRE(!ec);
    received.append(buf, n);
    done = true;
  });
  reads.Started(p.ours);
  p.RunUntil(done);
  REQUIRE(done);
  CHECK(received == "firstsecondthird");
}
