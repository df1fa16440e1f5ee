// The batched log sink of `dpgate serve`: every line arrives, in order, and
// nothing waits in memory after a flush or the sink's end.
#include "dpgate/proxy/batched_sink.h"

#include <spdlog/logger.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

using dpgate::proxy::BatchedFdSink;

// A pipe whose read end is drained into a string.
struct Pipe {
  Pipe() {
    REQUIRE(::pipe(fds) == 0);
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }
  ~Pipe() {
    ::close(fds[0]);
    if (fds[1] >= 0) ::close(fds[1]);
  }
  std::string Drain() {
    char buf[65536];
    while (true) {
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  int fds[2] = {-1, -1};
  std::string got;
};

std::shared_ptr<spdlog::logger> MakeLogger(const std::shared_ptr<BatchedFdSink>& sink) {
  auto logger = std::make_shared<spdlog::logger>("batched-test", sink);
  logger->set_pattern("%v");
  logger->flush_on(spdlog::level::warn);
  return logger;
}

}  // namespace

TEST_CASE("batched sink: lines wait for the interval, then all arrive in order") {
  Pipe p;
  auto sink = std::make_shared<BatchedFdSink>(p.fds[1], std::chrono::hours(1), 1 << 20);
  auto logger = MakeLogger(sink);
  logger->info("one");
  logger->info("two");
  CHECK(p.Drain().empty());  // batched: nothing written yet
  logger->flush();
  CHECK(p.Drain() == "one\ntwo\n");
}

TEST_CASE("batched sink: a warning is written at once with the lines before it") {
  Pipe p;
  auto sink = std::make_shared<BatchedFdSink>(p.fds[1], std::chrono::hours(1), 1 << 20);
  auto logger = MakeLogger(sink);
  logger->info("audit a");
  logger->warn("upstream down");
  CHECK(p.Drain() == "audit a\nupstream down\n");
}

TEST_CASE("batched sink: the writer thread writes a batch after the interval") {
  Pipe p;
  auto sink = std::make_shared<BatchedFdSink>(p.fds[1], std::chrono::milliseconds(5), 1 << 20);
  auto logger = MakeLogger(sink);
  logger->info("later");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (p.Drain().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(p.got == "later\n");
}

TEST_CASE("batched sink: a full buffer is written by the logging thread, never dropped") {
  Pipe p;
  auto sink = std::make_shared<BatchedFdSink>(p.fds[1], std::chrono::hours(1), 64);
  auto logger = MakeLogger(sink);
  std::string expected;
  for (int i = 0; i < 100; ++i) {
    logger->info("line {}", i);
    expected += "line " + std::to_string(i) + "\n";
  }
  // Everything but the last partial batch is already written.
  CHECK(p.Drain().size() >= expected.size() - 64);
  logger->flush();
  CHECK(p.Drain() == expected);
}

TEST_CASE("batched sink: lines from many threads all arrive when the sink ends") {
  Pipe p;
  constexpr int kThreads = 4;
  constexpr int kLines = 500;
  {
    auto sink = std::make_shared<BatchedFdSink>(p.fds[1], std::chrono::milliseconds(1), 4096);
    auto logger = MakeLogger(sink);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&logger, t] {
        for (int i = 0; i < kLines; ++i) logger->info("t{} {}", t, i);
      });
    }
    for (auto& t : threads) t.join();
    // The pipe holds at most 64 KiB: drain while the lines are written.
    p.Drain();
  }  // the sink's destructor writes the rest
  const std::string got = p.Drain();
  size_t lines = 0;
  for (char c : got) lines += c == '\n' ? 1 : 0;
  CHECK(lines == static_cast<size_t>(kThreads * kLines));
  // Each thread's lines keep their order.
  for (int t = 0; t < kThreads; ++t) {
    size_t at = 0;
    for (int i = 0; i < kLines; ++i) {
      const std::string line = "t" + std::to_string(t) + " " + std::to_string(i) + "\n";
      const size_t found = got.find(line, at);
      REQUIRE(found != std::string::npos);
      at = found + line.size();
    }
  }
}

TEST_CASE("batched sink: a logging thread never waits for the writer's write(2)") {
  // The pipe's reader stops reading, so the writer thread blocks inside
  // write(2) on a batch bigger than the pipe holds. A line logged then must
  // still return at once (it only joins the next batch); before, the writer
  // wrote under the sink's lock and every logging thread (the I/O threads,
  // for each statement's audit line) waited for it. The 30 s bound only
  // turns a hang into a failure; it is not a speed check.
  Pipe p;
  auto sink = std::make_shared<BatchedFdSink>(p.fds[1], std::chrono::milliseconds(1), 16 << 20);
  auto logger = MakeLogger(sink);
  std::string expected;
  const std::string filler(1000, 'x');
  for (int i = 0; i < 300; ++i) {  // ~300 KB, beyond the pipe's 64 KiB
    logger->info("{} {}", i, filler);
    expected += std::to_string(i) + " " + filler + "\n";
  }
  // Give the writer time to take the batch and block in write(2).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto logged = std::async(std::launch::async, [&logger] { logger->info("while blocked"); });
  const bool returned = logged.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  // Unblock the writer whatever happened, then see every line, in order.
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  expected += "while blocked\n";
  while (got.size() < expected.size() && std::chrono::steady_clock::now() < deadline) {
    got = p.Drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  logged.wait();
  CHECK(returned);
  CHECK(got == expected);
}
