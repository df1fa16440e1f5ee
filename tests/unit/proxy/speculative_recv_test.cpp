// proxy/src/speculative_recv.h against Asio's real epoll reactor and real
// loopback TCP sockets: what clearing the reactor's "recv first" flag does,
// and the kernel behaviour the upstream relay's use of it rests on (a
// Query sent to a backend that is gone comes back as a reset, which the
// edge-triggered reactor reports).
#include "speculative_recv.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using dpgate::proxy::kCanSkipSpeculativeRecv;
using dpgate::proxy::SkipNextSpeculativeRecv;
using dpgate::proxy::WillTryRecvFirst;

// A connected loopback pair: `ours` on the io_context under test, `peer`
// driven synchronously.
struct SocketPair {
  asio::io_context io;
  // As in the server, the loop always has work, so running it runs the
  // reactor (epoll_wait) even with no read pending.
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  tcp::socket ours{io};
  tcp::socket peer{io};
  SocketPair() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    peer.connect(acceptor.local_endpoint());
    acceptor.accept(ours);
    ours.non_blocking(true);
  }
  // The peer's next bytes and its end of stream leave in one TCP segment
  // (corked, then the FIN set on the held segment), so they arrive as one
  // epoll event, as a backend's FATAL and its exit, or a client's last
  // Query and its half-close, can.
  void PeerSendsAndEnds(const std::string& bytes, bool close_fully) {
    const int on = 1;
    REQUIRE(::setsockopt(peer.native_handle(), IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0);
    asio::write(peer, asio::buffer(bytes));
    if (close_fully) {
      peer.close();
    } else {
      peer.shutdown(tcp::socket::shutdown_send);
    }
  }
};

void RunFor(asio::io_context& io, std::chrono::milliseconds how_long) {
  io.restart();
  io.run_for(how_long);
}

struct ReadOutcome {
  bool done = false;
  boost::system::error_code ec;
  std::string data;
};

// Starts one async read of `socket` into `outcome`.
void StartRead(tcp::socket& socket, std::array<char, 512>& buffer, ReadOutcome& outcome) {
  socket.async_read_some(asio::buffer(buffer), [&](const boost::system::error_code& ec, size_t n) {
    outcome.done = true;
    outcome.ec = ec;
    outcome.data.assign(buffer.data(), n);
  });
}

// Runs the loop until `outcome` is done or `limit` passes.
void RunUntil(asio::io_context& io, const ReadOutcome& outcome, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!outcome.done && std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_for(std::chrono::milliseconds(20));
  }
}

// Reads "first" through the reactor, so that the socket is registered and
// its flag has been set by a real event.
void TakeFirstMessage(SocketPair& p, std::array<char, 512>& buffer) {
  asio::write(p.peer, asio::buffer(std::string("first")));
  ReadOutcome first;
  StartRead(p.ours, buffer, first);
  RunUntil(p.io, first, std::chrono::seconds(10));
  REQUIRE(first.done);
  REQUIRE(first.data == "first");
}

// The peer's last bytes and its end arrive as one event; they are read
// through the reactor, the flag is cleared with the end still unread, and
// no later event sets it again. Then dpgate's side writes `reply`.
void LastBytesReadThenReply(SocketPair& p, std::array<char, 512>& buffer,
                            const std::string& last_bytes, bool peer_closes_fully,
                            const std::string& reply) {
  TakeFirstMessage(p, buffer);
  ReadOutcome last;
  StartRead(p.ours, buffer, last);
  p.PeerSendsAndEnds(last_bytes, peer_closes_fully);
  RunUntil(p.io, last, std::chrono::seconds(10));
  REQUIRE(last.done);
  REQUIRE(last.data == last_bytes);
  SkipNextSpeculativeRecv(p.ours);
  RunFor(p.io, std::chrono::milliseconds(100));
  REQUIRE_FALSE(WillTryRecvFirst(p.ours));  // nothing more reports the end
  boost::system::error_code ec;
  p.ours.non_blocking(false);
  asio::write(p.ours, asio::buffer(reply), ec);
  CHECK_FALSE(ec);  // the kernel takes it either way
}

}  // namespace

TEST_CASE("this build can skip the speculative recv", "[speculative_recv]") {
  // Boost 1.74's epoll reactor, as on Debian 12; any other build does
  // nothing, and the tests below would not test the skipping.
  REQUIRE(kCanSkipSpeculativeRecv);
}

TEST_CASE("a cleared flag is set again by the next arrival", "[speculative_recv]") {
  SocketPair p;
  std::array<char, 512> buffer{};
  TakeFirstMessage(p, buffer);
  CHECK(WillTryRecvFirst(p.ours));
  SkipNextSpeculativeRecv(p.ours);
  CHECK_FALSE(WillTryRecvFirst(p.ours));
  // Bytes arrive while no read is pending: the reactor takes the event and
  // sets the flag, so the read started afterwards finds them at once.
  asio::write(p.peer, asio::buffer(std::string("second")));
  for (int i = 0; i < 500 && !WillTryRecvFirst(p.ours); ++i) {
    RunFor(p.io, std::chrono::milliseconds(10));
  }
  CHECK(WillTryRecvFirst(p.ours));
  ReadOutcome second;
  StartRead(p.ours, buffer, second);
  RunUntil(p.io, second, std::chrono::seconds(10));
  REQUIRE(second.done);
  CHECK(second.data == "second");
}

TEST_CASE("after the skip, a read waits for the next arrival and gets it", "[speculative_recv]") {
  SocketPair p;
  std::array<char, 512> buffer{};
  TakeFirstMessage(p, buffer);
  SkipNextSpeculativeRecv(p.ours);
  ReadOutcome answer;
  StartRead(p.ours, buffer, answer);
  p.io.restart();
  p.io.poll();
  CHECK_FALSE(answer.done);  // nothing there yet, and no recv tried
  asio::write(p.peer, asio::buffer(std::string("answer")));
  RunUntil(p.io, answer, std::chrono::seconds(10));
  REQUIRE(answer.done);
  CHECK(answer.data == "answer");
}

TEST_CASE("a peer that closed with its last message answers the next send with a reset",
          "[speculative_recv]") {
  // The upstream case: the backend's last bytes and its end of stream
  // arrive together, the relay reads the bytes, and the flag is cleared
  // with the end not yet seen. dpgate's next Query then reaches a closed
  // socket, whose kernel resets the connection: a new arrival, so the read
  // ends instead of waiting for ever.
  SocketPair p;
  std::array<char, 512> buffer{};
  LastBytesReadThenReply(p, buffer, "last", true, "Query");
  ReadOutcome after;
  StartRead(p.ours, buffer, after);
  RunUntil(p.io, after, std::chrono::seconds(10));
  REQUIRE(after.done);
  CHECK(after.ec);  // end of stream or reset, not a wait for ever
}

TEST_CASE("a half-closed peer sends no reset: why client reads keep their recv",
          "[speculative_recv]") {
  // A client that half-closes right behind its last Query still reads
  // the answer, so writing to it brings nothing back: with the flag
  // cleared, a read would wait with the end of stream unread. This is
  // why only the upstream side skips (docs/DESIGN-NOTES.md item 13).
  SocketPair p;
  std::array<char, 512> buffer{};
  LastBytesReadThenReply(p, buffer, "Query", false, "answer");
  ReadOutcome end;
  StartRead(p.ours, buffer, end);
  RunUntil(p.io, end, std::chrono::milliseconds(300));
  CHECK_FALSE(end.done);  // the end of stream is there, and nothing reports it
  p.ours.cancel();
  RunUntil(p.io, end, std::chrono::seconds(10));
  REQUIRE(end.done);
  CHECK(end.ec == asio::error::operation_aborted);
  // A recv finds it at once: Asio's own rule, which tries one first.
  p.ours.non_blocking(true);
  boost::system::error_code ec;
  p.ours.read_some(asio::buffer(buffer), ec);
  CHECK(ec == asio::error::eof);
}
