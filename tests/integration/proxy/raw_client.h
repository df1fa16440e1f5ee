// A minimal frontend over a raw TCP socket, for what libpq cannot send
// (Execute with a row limit, pipelined errors, arbitrary message sequences):
// encodes frontend messages and frames the backend's answer.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace dpgate::testing {

class RawClient {
 public:
  // Connects to 127.0.0.1:port; every read gives up after `timeout_seconds`.
  explicit RawClient(int port, int timeout_seconds = 20) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval tv{timeout_seconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  static std::string Int32(int32_t v) {
    const uint32_t n = htonl(static_cast<uint32_t>(v));
    return std::string(reinterpret_cast<const char*>(&n), 4);
  }
  static std::string Int16(int16_t v) {
    const uint16_t n = htons(static_cast<uint16_t>(v));
    return std::string(reinterpret_cast<const char*>(&n), 2);
  }
  static std::string Message(char type, const std::string& body) {
    return std::string(1, type) + Int32(static_cast<int32_t>(body.size() + 4)) + body;
  }
  static std::string Str(const std::string& s) { return s + '\0'; }

  void Send(const std::string& bytes) { REQUIRE(TrySend(bytes)); }
  // False when the server has closed the connection.
  bool TrySend(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

  // Sends `bytes` and the end of the stream in one TCP segment: corked, the
  // kernel holds the data, and shutdown(SHUT_WR) sets FIN on that held
  // segment (tcp_send_fin). The server sees the data and the end together,
  // as from a client that writes its last request and half-closes at once.
  void SendThenHalfClose(const std::string& bytes) {
    const int on = 1;
    REQUIRE(::setsockopt(fd_, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0);
    Send(bytes);
    REQUIRE(::shutdown(fd_, SHUT_WR) == 0);
  }

  // One backend message, framed by its type byte and length word.
  enum class Read { kMessage, kClosed, kTimeout, kBadLength };
  Read Next(char* type, std::string* body, uint32_t max_length = 64u << 20) {
    std::string head;
    if (const Read r = ReadExactly(5, &head); r != Read::kMessage) return r;
    *type = head[0];
    uint32_t n = 0;
    std::memcpy(&n, head.data() + 1, 4);
    n = ntohl(n);
    if (n < 4 || n > max_length) return Read::kBadLength;
    return ReadExactly(n - 4, body);
  }

  // What follows the last message: kClosed when the server ends the stream,
  // kTimeout when it neither sends nor closes within the read timeout.
  Read End() {
    char byte = 0;
    while (true) {
      const ssize_t got = ::recv(fd_, &byte, 1, 0);
      if (got == 0) return Read::kClosed;
      if (got > 0) return Read::kMessage;  // more bytes than expected
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? Read::kTimeout : Read::kClosed;
    }
  }

  int fd() const { return fd_; }

  // Whether the server has sent something (or closed) within `ms`.
  bool ReadableWithin(int ms) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }

  // One field of an ErrorResponse or NoticeResponse body ('C': SQLSTATE,
  // 'M': message, 'S': severity), empty when absent.
  static std::string Field(const std::string& body, char code) {
    for (size_t at = 0; at < body.size() && body[at] != '\0';) {
      const size_t end = body.find('\0', at + 1);
      if (end == std::string::npos) break;
      if (body[at] == code) return body.substr(at + 1, end - at - 1);
      at = end + 1;
    }
    return "";
  }

  // Reads messages up to and including ReadyForQuery; returns their types
  // and bodies.
  std::vector<std::pair<char, std::string>> UntilReady() {
    std::vector<std::pair<char, std::string>> out;
    while (true) {
      char type = 0;
      std::string body;
      REQUIRE(Next(&type, &body) == Read::kMessage);
      out.emplace_back(type, std::move(body));
      if (type == 'Z') return out;
    }
  }
  // Everything the server sends until it closes the connection.
  std::string Drain() {
    std::string s;
    char buf[4096];
    ssize_t got;
    while ((got = ::recv(fd_, buf, sizeof buf, 0)) > 0) s.append(buf, static_cast<size_t>(got));
    return s;
  }
  // A startup message for `user` on `db`, answered without a password
  // (auth: trust), up to the first ReadyForQuery.
  void Startup(const std::string& user, const std::string& db) {
    std::string body = Int32(196608) + Str("user") + Str(user) + Str("database") + Str(db) + '\0';
    Send(Int32(static_cast<int32_t>(body.size() + 4)) + body);
    auto messages = UntilReady();
    REQUIRE(messages.front().first == 'R');  // AuthenticationOk (trust)
  }

 private:
  Read ReadExactly(size_t n, std::string* out) {
    out->clear();
    while (out->size() < n) {
      char buf[4096];
      const ssize_t got = ::recv(fd_, buf, std::min(sizeof buf, n - out->size()), 0);
      if (got == 0) return Read::kClosed;
      if (got < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? Read::kTimeout : Read::kClosed;
      }
      out->append(buf, static_cast<size_t>(got));
    }
    return Read::kMessage;
  }
  int fd_ = -1;
};

}  // namespace dpgate::testing
