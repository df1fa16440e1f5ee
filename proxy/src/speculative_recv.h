// Skipping the recv(2) Asio tries before an upstream read that cannot find
// anything yet (docs/PROXY.md §1 item 4, docs/DESIGN-NOTES.md item 14).
//
// Asio 1.74's epoll reactor starts every async read with a recv of its own
// ("speculative"), and keeps doing so for a socket until end of stream: its
// per-socket flag is set by every epoll event and cleared only when a read
// returns 0 bytes. On the relay path the read of the upstream's answer
// starts right after the Query is sent, so that recv fails with EAGAIN once
// per statement: a system call (~2–3 µs on this machine under load) that
// PgBouncer does not make.
//
// SkipNextSpeculativeRecv clears that flag. It is used for one socket and
// at one point only: an upstream connection whose relayed answer ended with
// ReadyForQuery and nothing after it (UpstreamConnection::ContinueRelay).
// Why the next read cannot then wait for ever (the reactor is edge-
// triggered: a read that waits for an event already taken would):
//
//   1. Every epoll event for the socket sets the flag again, so an arrival
//      after the clear is tried as usual.
//   2. An arrival between the read that took ReadyForQuery and the clear,
//      or one that came with it (the backend's asynchronous messages, or
//      its end of stream: a FATAL at termination, a crash), is not tried
//      at once. But nothing reads the upstream between statements, and the
//      next read follows dpgate's next Query on that connection. A live
//      backend answers it, a new arrival that the reactor reports, and the
//      recv that then runs reads whatever was waiting, in order, with the
//      answer. A backend that is gone makes its kernel answer the Query
//      with a reset, also a new arrival (tests/unit/proxy/
//      speculative_recv_test.cpp sends to a closed peer).
//   3. libpq's waits on the same socket (async_wait) re-arm the descriptor
//      with epoll_ctl, which reports a socket that is already readable, so
//      they never depend on the flag; the pool's health check is poll(2).
//
// The client side has no such rule: a client may half-close right behind
// its last Query (the FIN comes with the data, and writing the answer to a
// half-closed client brings no reset), which is how an earlier, wider form
// of this skipping hung a session (docs/DESIGN-NOTES.md item 13). Client
// reads stay as Asio makes them.
//
// With any other Boost version or reactor this does nothing, and reads
// behave as Asio's own.
#pragma once

#include <boost/asio/io_context.hpp>  // the scheduler the reactor's header needs
#include <boost/version.hpp>

#if BOOST_VERSION == 107400 && defined(__linux__)
#include <boost/asio/detail/reactor.hpp>
#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING) && \
    !defined(BOOST_ASIO_HAS_IOCP)
#define DPGATE_SPECULATIVE_RECV_SKIP 1
#include <boost/asio/detail/epoll_reactor.hpp>
#include <type_traits>
#endif
#endif

namespace dpgate::proxy {

#if defined(DPGATE_SPECULATIVE_RECV_SKIP)
namespace speculative_recv_detail {

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
struct MutexMember {
  using Type = boost::asio::detail::conditionally_enabled_mutex State::*;
  friend Type Member(MutexMember);
};
template <typename Tag, typename Tag::Type pointer>
struct Expose {
  friend typename Tag::Type Member(Tag) { return pointer; }
};
template struct Expose<FlagsMember, &State::try_speculative_>;
template struct Expose<MutexMember, &State::mutex_>;

// The reactor's state for a socket: basic_socket keeps it in a protected
// member, reachable through a derived class's member pointer.
template <typename Socket>
struct SocketState : Socket {
  static State* Of(Socket& socket) {
    return (socket.*&SocketState::impl_).get_implementation().reactor_data_;
  }
};

}  // namespace speculative_recv_detail
#endif

// Whether this build can skip the recv at all (Boost 1.74's epoll reactor).
inline constexpr bool kCanSkipSpeculativeRecv =
#if defined(DPGATE_SPECULATIVE_RECV_SKIP)
    true;
#else
    false;
#endif

#if defined(DPGATE_SPECULATIVE_RECV_SKIP)
namespace speculative_recv_detail {
// The socket's read flag, under the descriptor's lock (the reactor writes
// it under that lock); `use` gets a reference to it. False when the
// socket has no reactor state (not open).
template <typename Socket, typename Use>
bool WithReadFlag(Socket& socket, Use&& use) {
  State* state = SocketState<Socket>::Of(socket);
  if (state == nullptr) return false;
  boost::asio::detail::conditionally_enabled_mutex::scoped_lock lock(state->*Member(MutexMember{}));
  use((state->*Member(FlagsMember{}))[Reactor::read_op]);
  return true;
}
}  // namespace speculative_recv_detail
#endif

// The next async read of `socket` waits for the reactor without a recv
// first, unless an epoll event for it comes before that read starts. Only
// where the comment above says it is safe.
template <typename Socket>
void SkipNextSpeculativeRecv(Socket& socket) {
#if defined(DPGATE_SPECULATIVE_RECV_SKIP)
  speculative_recv_detail::WithReadFlag(socket, [](bool& flag) { flag = false; });
#else
  (void)socket;
#endif
}

// Whether the next async read of `socket` starts with Asio's own recv
// (always true where this does nothing). For tests.
template <typename Socket>
bool WillTryRecvFirst(Socket& socket) {
  bool tries = true;
#if defined(DPGATE_SPECULATIVE_RECV_SKIP)
  speculative_recv_detail::WithReadFlag(socket, [&](bool& flag) { tries = flag; });
#else
  (void)socket;
#endif
  return tries;
}

}  // namespace dpgate::proxy
