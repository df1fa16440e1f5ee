// Skipping Asio's speculative read when it is known to find nothing
// (docs/PROXY.md §1 item 4, bench/RESULTS.md, proxy).
//
// Asio 1.74's epoll reactor starts every async read with a recv(2) of its
// own ("speculative"), and keeps doing so for a socket until end of stream:
// its per-socket flag is set by every epoll event and cleared only when a
// read returns 0 bytes. On the relay path that recv fails with EAGAIN ~1.7
// times per statement: the upstream has not answered a Query sent a moment
// ago, and a client has not sent its next Query the moment its answer left.
// Each failed recv is a system call (~1–2 µs on this machine under load),
// which PgBouncer does not make.
//
// ReadSpeculation clears that flag after a read that provably emptied the
// socket, so that the next read waits for epoll without the failed recv.
// Why that cannot lose data (the reactor is epoll edge-triggered, so a
// read that waits for an event already taken would wait for ever):
//
//   1. Every epoll event for the socket sets the flag again (perform_io), so
//      a cleared flag means "no event was taken since it was cleared".
//   2. It is cleared only in the completion handler of a read that was
//      queued in the reactor (not completed by the speculative recv: that
//      completion is posted, and an epoll_wait may run before it), and that
//      read returned fewer bytes than asked: the socket's queue was empty
//      at that recv.
//   3. Such a handler runs inside the reactor's perform_io for that socket,
//      right after the recv, with no epoll_wait in between: the reactor
//      completes the first operation it performed at once, and a handler
//      with no executor of its own runs inline there (the socket's executor
//      is this thread's io_context: dispatch does not post). This holds while
//      the read is the only operation that event completes on the socket:
//      the relay path never has a write and a read pending on one socket.
//   4. Each I/O thread runs its own io_context (RunServer), so nothing else
//      runs an epoll_wait for that reactor in between either.
//
// So data that arrives after that recv raises an event that is still to be
// taken, which sets the flag and performs the queued read. With any other
// Boost version or reactor, Started and Completed do nothing, and reads
// behave as Asio's own.
#pragma once

#include <boost/asio/detail/reactor.hpp>
#include <boost/system/error_code.hpp>
#include <boost/version.hpp>
#include <cstddef>

#if BOOST_VERSION == 107400 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING) && !defined(BOOST_ASIO_HAS_IOCP)
#define DPGATE_READ_SPECULATION 1
#include <boost/asio/detail/epoll_reactor.hpp>
#include <type_traits>
#endif

namespace dpgate::proxy {

#if defined(DPGATE_READ_SPECULATION)
namespace read_speculation_detail {

using Reactor = boost::asio::detail::epoll_reactor;
using State = Reactor::descriptor_state;
static_assert(std::is_same_v<boost::asio::detail::reactor, Reactor>);

// The reactor keeps these members private. An explicit instantiation may
// name private members ([temp.spec.general]: access is not checked there),
// which hands their member pointers to the functions below.
struct FlagsMember {
  using Type = bool (State::*)[Reactor::max_ops];
  friend Type Member(FlagsMember);
};
struct QueuesMember {
  using Type =
      boost::asio::detail::op_queue<boost::asio::detail::reactor_op> (State::*)[Reactor::max_ops];
  friend Type Member(QueuesMember);
};
struct MutexMember {
  using Type = boost::asio::detail::conditionally_enabled_mutex State::*;
  friend Type Member(MutexMember);
};
template <typename Tag, typename Tag::Type pointer>
struct Expose {
  friend typename Tag::Type Member(Tag) { return pointer; }
};
template struct Expose<FlagsMember, &State::try_speculative_>;
template struct Expose<QueuesMember, &State::op_queue_>;
template struct Expose<MutexMember, &State::mutex_>;

// The reactor's state for a socket: basic_socket keeps it in a protected
// member, reachable through a derived class's member pointer.
template <typename Socket>
struct SocketState : Socket {
  static State* Of(Socket& socket) {
    return (socket.*&SocketState::impl_).get_implementation().reactor_data_;
  }
};

}  // namespace read_speculation_detail
#endif

// One per socket whose reads use it. Call Started right after starting an
// async read, and Completed first thing in its handler, with the bytes the
// read asked for.
class ReadSpeculation {
 public:
  template <typename Socket>
  void Started(Socket& socket) {
#if defined(DPGATE_READ_SPECULATION)
    using namespace read_speculation_detail;
    State* state = SocketState<Socket>::Of(socket);
    if (state == nullptr) {
      queued_ = false;
      return;
    }
    boost::asio::detail::conditionally_enabled_mutex::scoped_lock lock(
        state->*Member(MutexMember{}));
    // Still queued: no speculative recv completed it (item 2 above).
    queued_ = !(state->*Member(QueuesMember{}))[Reactor::read_op].empty();
#else
    (void)socket;
#endif
  }

  template <typename Socket>
  void Completed(Socket& socket, const boost::system::error_code& ec, size_t n, size_t asked) {
#if defined(DPGATE_READ_SPECULATION)
    using namespace read_speculation_detail;
    const bool emptied = queued_ && !ec && n > 0 && n < asked;
    queued_ = false;
    if (!emptied) return;
    State* state = SocketState<Socket>::Of(socket);
    if (state == nullptr) return;
    boost::asio::detail::conditionally_enabled_mutex::scoped_lock lock(
        state->*Member(MutexMember{}));
    (state->*Member(FlagsMember{}))[Reactor::read_op] = false;
#else
    (void)socket;
    (void)ec;
    (void)n;
    (void)asked;
#endif
  }

  // Whether the next async read of `socket` starts with Asio's own recv
  // (always true where this class does nothing). For tests.
  template <typename Socket>
  static bool WillTryRecvFirst(Socket& socket) {
#if defined(DPGATE_READ_SPECULATION)
    using namespace read_speculation_detail;
    State* state = SocketState<Socket>::Of(socket);
    if (state == nullptr) return true;
    boost::asio::detail::conditionally_enabled_mutex::scoped_lock lock(
        state->*Member(MutexMember{}));
    return (state->*Member(FlagsMember{}))[Reactor::read_op];
#else
    (void)socket;
    return true;
#endif
  }

  // Whether this build skips the recv at all (Boost 1.74's epoll reactor).
  static constexpr bool kActive =
#if defined(DPGATE_READ_SPECULATION)
      true;
#else
      false;
#endif

 private:
  bool queued_ = false;
};

}  // namespace dpgate::proxy
