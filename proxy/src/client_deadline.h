// When a client has taken too long: to authenticate, or to send its next
// message (docs/PROXY.md §2, docs/CONFIG.md `limits`).
//
// One timer per session, checked lazily: the session only notes when it
// starts waiting for a message and when one arrives (a bool and, with an
// idle timeout, a clock read), and the timer, when it fires, asks Check
// whether the client is out of time or when to look again. Re-arming an
// Asio timer around every read would cost two timer-queue operations, a
// cancelled handler and its shared_ptr copy per statement on the relay
// path (bench/RESULTS.md, proxy).
//
// The rules, as PostgreSQL's own:
//   * authentication (connect to ReadyForQuery) has one deadline for the
//     whole phase, like authentication_timeout, so a client that trickles
//     a byte at a time cannot hold a connection slot for ever;
//   * after it, with an idle timeout, a session is dropped when it has
//     waited that long for a new message, like idle_session_timeout; a
//     partly received message does not restart the wait, and a statement
//     being run is not waiting.
#pragma once

#include <chrono>
#include <optional>

namespace dpgate::proxy {

class ClientDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Expired { kAuthentication, kIdle };
  struct Verdict {
    std::optional<Expired> expired;                // set: drop the client
    std::optional<Clock::time_point> check_again;  // unset: no timer needed
  };

  ClientDeadline(std::chrono::seconds auth_timeout, std::chrono::seconds idle_timeout)
      : auth_timeout_(auth_timeout), idle_timeout_(idle_timeout) {}

  // The connection was accepted: the authentication deadline starts.
  Clock::time_point StartAuthentication(Clock::time_point now) {
    authenticating_ = true;
    auth_deadline_ = now + auth_timeout_;
    return auth_deadline_;
  }
  // ReadyForQuery was sent. Returns when to check for an idle client, or
  // nothing when there is no idle timeout.
  std::optional<Clock::time_point> Authenticated(Clock::time_point now) {
    authenticating_ = false;
    waiting_ = false;
    if (idle_timeout_.count() <= 0) return std::nullopt;
    return now + idle_timeout_;
  }

  // The session waits for the client's next message (again, when the
  // last read left only part of one: the wait goes on from its start).
  void StartWaiting() {
    if (waiting_) return;
    waiting_ = true;
    if (!authenticating_ && idle_timeout_.count() > 0) waiting_since_ = Clock::now();
  }
  // A whole message arrived.
  void GotMessage() { waiting_ = false; }
  bool waiting() const { return waiting_; }

  Verdict Check(Clock::time_point now) const {
    if (authenticating_) {
      if (now >= auth_deadline_) return {Expired::kAuthentication, std::nullopt};
      return {std::nullopt, auth_deadline_};
    }
    if (idle_timeout_.count() <= 0) return {};
    if (!waiting_) return {std::nullopt, now + idle_timeout_};
    const Clock::time_point due = waiting_since_ + idle_timeout_;
    if (now >= due) return {Expired::kIdle, std::nullopt};
    return {std::nullopt, due};
  }

  std::chrono::seconds auth_timeout() const { return auth_timeout_; }
  std::chrono::seconds idle_timeout() const { return idle_timeout_; }

 private:
  std::chrono::seconds auth_timeout_;
  std::chrono::seconds idle_timeout_;
  bool authenticating_ = false;
  bool waiting_ = false;
  Clock::time_point auth_deadline_{};
  Clock::time_point waiting_since_{};
};

}  // namespace dpgate::proxy
