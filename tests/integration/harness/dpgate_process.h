// Runs `dpgate serve` as a child process for integration tests: waits until it
// listens, stops it with SIGTERM (and SIGKILL if it does not exit), and keeps
// its log for assertions (e.g. that no raw value was logged).
#pragma once

#include <sys/types.h>

#include <string>

namespace dpgate::testing {

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
int FreePort();

class DpgateProcess {
 public:
  // Starts `binary serve -c config_path`, logging to log_path, and waits up to
  // 20 s for 127.0.0.1:port to accept. Throws std::runtime_error with the log
  // if it exits or never listens.
  DpgateProcess(const std::string& binary, const std::string& config_path, int port,
                const std::string& log_path);
  ~DpgateProcess();
  DpgateProcess(const DpgateProcess&) = delete;
  DpgateProcess& operator=(const DpgateProcess&) = delete;

  // SIGTERM, then waits up to 30 s; returns the exit status (128+signal if killed).
  int Stop();
  bool running() const;
  std::string Log() const;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  int exit_status_ = -1;
};

}  // namespace dpgate::testing
