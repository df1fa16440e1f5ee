#include "dpgate/accountant/async_ledger.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace dpgate::accountant {

struct AsyncLedger::Impl {
  AsyncLedgerOptions options;
  mutable std::mutex mu;
  std::condition_variable cv;
  struct Item {
    ChargeRequest request;
    Done done;
  };
  std::deque<Item> queue;
  bool stopping = false;
  bool drain = true;
  std::vector<std::thread> threads;

  void Work();
};

AsyncLedger::AsyncLedger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<AsyncLedger>> AsyncLedger::Start(AsyncLedgerOptions options) {
  if (options.workers < 1 || options.queue_capacity < 1 || options.max_batch < 1) {
    return MakeError("ledger.invalid",
                     "AsyncLedger needs workers, queue_capacity and max_batch >= 1");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  // Workers only open existing schemas: migrating is done once, by whoever
  // starts the process, with MigrateLedger or Ledger::Open.
  impl->options.ledger.migrate = false;
  Impl* raw = impl.get();
  for (int i = 0; i < raw->options.workers; ++i) raw->threads.emplace_back([raw] { raw->Work(); });
  return std::unique_ptr<AsyncLedger>(new AsyncLedger(std::move(impl)));
}

AsyncLedger::~AsyncLedger() {
  Shutdown(true);
}

size_t AsyncLedger::queued() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->queue.size();
}

void AsyncLedger::ChargeAsync(ChargeRequest request, Done done) {
  Error refused;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping) {
      refused = MakeError("ledger.unavailable",
                          "the ledger is shutting down; the query does not run (fail closed)");
    } else if (impl_->queue.size() >= impl_->options.queue_capacity) {
      refused =
          MakeError("ledger.busy", "ledger busy: " + std::to_string(impl_->options.queue_capacity) +
                                       " charges are already waiting; try again shortly");
    } else {
      impl_->queue.push_back({std::move(request), std::move(done)});
      impl_->cv.notify_one();
      return;
    }
  }
  done(std::move(refused));
}

void AsyncLedger::Shutdown(bool drain) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping && impl_->threads.empty()) return;
    impl_->stopping = true;
    impl_->drain = drain;
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
}

void AsyncLedger::Impl::Work() {
  std::unique_ptr<Ledger> ledger;
  std::optional<std::chrono::steady_clock::time_point> last_failure;
  Error last_error;
  for (;;) {
    std::vector<Item> batch;
    bool fail_all = false;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) return;  // stopping, nothing left
      fail_all = stopping && !drain;
      while (!queue.empty() && batch.size() < options.max_batch) {
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      if (!queue.empty()) cv.notify_one();  // more for another worker
    }
    if (fail_all) {
      for (auto& item : batch) {
        item.done(MakeError("ledger.unavailable",
                            "the ledger was shut down before this charge was made; the query "
                            "does not run (fail closed)"));
      }
      continue;
    }
    if (ledger && ledger->broken()) ledger.reset();
    if (!ledger) {
      const auto now = std::chrono::steady_clock::now();
      if (!last_failure || now - *last_failure >= options.reconnect_backoff) {
        auto opened = Ledger::Open(options.ledger);
        if (opened.ok()) {
          ledger = std::move(opened).value();
        } else {
          last_failure = std::chrono::steady_clock::now();
          last_error = opened.error();
        }
      }
    }
    if (!ledger) {
      for (auto& item : batch) item.done(last_error);
      continue;
    }
    std::vector<ChargeRequest> requests;
    requests.reserve(batch.size());
    for (auto& item : batch) requests.push_back(std::move(item.request));
    auto results = ledger->ChargeBatch(requests);
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
  }
}

}  // namespace dpgate::accountant
