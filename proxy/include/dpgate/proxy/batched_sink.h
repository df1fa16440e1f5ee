// The log sink of `dpgate serve` (docs/PROXY.md §3, docs/DESIGN-NOTES.md
// item 9): every line, audit lines included, goes to one file descriptor
// (standard error) in order, but written in batches instead of one write(2)
// per line. At passthrough rates the per-statement write was ~10 % of the
// proxy's throughput (bench/RESULTS.md, proxy).
//
// - A line is formatted and appended to a buffer under the sink's lock; a
//   writer thread writes the buffer with one write(2) at most `interval`
//   after the first line of a batch arrived. The writer takes the batch
//   under the sink's lock and writes it outside: a logging thread (an I/O
//   thread, for every statement's audit line) never waits for that write.
// - Nothing is dropped: when the buffer reaches `max_buffered` bytes, the
//   logging thread writes the whole buffer itself (it blocks for that one
//   write, as spdlog's async_overflow_policy::block would).
// - flush() (spdlog calls it for every line at or above the logger's
//   flush_on level, and at shutdown) writes everything buffered at once.
//   The destructor flushes and stops the writer.
// - What a crash (kill -9, power loss) loses: the lines of the last
//   `interval` at most; a graceful stop (SIGTERM) loses nothing.
#pragma once

#include <spdlog/sinks/base_sink.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>

#include "dpgate/proxy/log_line_formatter.h"

namespace dpgate::proxy {

class BatchedFdSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // `fd` is not owned (standard error: 2).
  BatchedFdSink(int fd, std::chrono::milliseconds interval, size_t max_buffered);
  ~BatchedFdSink() override;
  BatchedFdSink(const BatchedFdSink&) = delete;
  BatchedFdSink& operator=(const BatchedFdSink&) = delete;

  // Write errors so far (the lines are dropped from the buffer then, so that
  // a closed descriptor cannot grow it without bound).
  size_t write_errors() const;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;
  void set_formatter_(std::unique_ptr<spdlog::formatter> formatter) override;

 private:
  void WriterLoop();
  void WriteBatch();
  void WriteAll(const std::string& bytes);

  const int fd_;
  const std::chrono::milliseconds interval_;
  const size_t max_buffered_;
  std::string buffer_;  // guarded by base_sink::mutex_
  // formatter_ when it is dpgate's LogLineFormatter, which then writes into
  // buffer_ directly; guarded by base_sink::mutex_.
  LogLineFormatter* line_formatter_ = nullptr;
  // Held while a batch is written; taken while base_sink::mutex_ is held
  // (never the other way round), so that batches reach the descriptor in
  // the order their lines were logged.
  std::mutex write_mutex_;
  std::string writing_;  // the writer's batch; guarded by write_mutex_
  std::atomic<size_t> write_errors_{0};
  // Wakes the writer when a batch starts; separate from base_sink::mutex_,
  // which is only ever taken before this one.
  std::mutex signal_mutex_;
  std::condition_variable signal_;
  bool pending_ = false;  // guarded by signal_mutex_
  bool stop_ = false;     // guarded by signal_mutex_
  std::thread writer_;
};

}  // namespace dpgate::proxy
