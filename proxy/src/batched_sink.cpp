#include "dpgate/proxy/batched_sink.h"

#include <cerrno>

#include <unistd.h>

namespace dpgate::proxy {

BatchedFdSink::BatchedFdSink(int fd, std::chrono::milliseconds interval, size_t max_buffered)
    : fd_(fd), interval_(interval), max_buffered_(max_buffered) {
  writer_ = std::thread([this] { WriterLoop(); });
}

BatchedFdSink::~BatchedFdSink() {
  {
    std::lock_guard lock(signal_mutex_);
    stop_ = true;
  }
  signal_.notify_one();
  writer_.join();
  flush();  // whatever arrived after the writer's last batch
}

size_t BatchedFdSink::write_errors() const {
  return write_errors_.load();
}

void BatchedFdSink::sink_it_(const spdlog::details::log_msg& msg) {
  const bool starts_batch = buffer_.empty();
  if (line_formatter_ != nullptr) {
    line_formatter_->AppendTo(msg, buffer_);
  } else {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    buffer_.append(formatted.data(), formatted.size());
  }
  if (buffer_.size() >= max_buffered_) {
    // Full: this thread writes the batch itself rather than drop a line.
    flush_();
    return;
  }
  if (starts_batch) {
    std::lock_guard lock(signal_mutex_);
    pending_ = true;
    signal_.notify_one();
  }
}

// Under base_sink::mutex_ (set_formatter and set_pattern both come here).
void BatchedFdSink::set_formatter_(std::unique_ptr<spdlog::formatter> formatter) {
  formatter_ = std::move(formatter);
  line_formatter_ = dynamic_cast<LogLineFormatter*>(formatter_.get());
}

// Under base_sink::mutex_; after the writer's batch in flight, if any (it
// holds lines logged before these).
void BatchedFdSink::flush_() {
  std::lock_guard write_lock(write_mutex_);
  WriteAll(buffer_);
  buffer_.clear();
}

// The writer's batch: taken under the sink's lock, written outside it.
void BatchedFdSink::WriteBatch() {
  std::unique_lock write_lock(write_mutex_, std::defer_lock);
  {
    std::lock_guard lock(mutex_);
    if (buffer_.empty()) return;
    write_lock.lock();       // before the sink's lock is let go: batches stay in order
    writing_.swap(buffer_);  // both keep their storage
  }
  WriteAll(writing_);
  writing_.clear();
}

void BatchedFdSink::WriteAll(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      write_errors_.fetch_add(1);
      break;
    }
    done += static_cast<size_t>(n);
  }
}

void BatchedFdSink::WriterLoop() {
  std::unique_lock lock(signal_mutex_);
  while (true) {
    signal_.wait(lock, [this] { return pending_ || stop_; });
    if (stop_) return;  // the destructor flushes
    // Let the batch gather for one interval, then write it in one call.
    signal_.wait_for(lock, interval_, [this] { return stop_; });
    pending_ = false;
    if (stop_) return;
    lock.unlock();
    WriteBatch();
    lock.lock();
  }
}

}  // namespace dpgate::proxy
