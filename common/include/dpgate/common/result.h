// Errors that callers handle are values, not exceptions (DESIGN.md §6 style).
// `Status` is success or an `Error`; `Result<T>` is a T or an `Error`.
// C++20 has no std::expected, so this is the small subset dpgate needs.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace dpgate {

// What went wrong, said for a person: what is wrong and what to do.
// `code` is a short machine-readable category (for the proxy, an SQLSTATE
// such as "42501"; elsewhere a stable token such as "config").
struct Error {
  std::string code;
  std::string message;
};

inline Error MakeError(std::string code, std::string message) {
  return Error{std::move(code), std::move(message)};
}

class [[nodiscard]] Status {
 public:
  Status() = default;                                            // success
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  static Status Ok() { return Status(); }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }
  const std::string& message() const { return error_.message; }

 private:
  Error error_;
  bool ok_ = true;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(status.error()) {}  // NOLINT: only from a failed Status

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<Error>(v_);
  }
  Status status() const { return ok() ? Status() : Status(error()); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace dpgate
