// A bounded, thread-safe cache of Classify results (issue 4 item 8,
// docs/REWRITER.md §13). The proxy owns one instance per loaded Config.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dpgate/common/result.h"
#include "dpgate/config/config.h"
#include "dpgate/rewriter/rewriter.h"
#include "dpgate/rewriter/schema_facts.h"

namespace dpgate::rewriter {

// Classify results are a pure function of (query text, config, session), so
// they can be reused. The key is the exact query text plus every field of
// the SessionContext — never pg_query_fingerprint, which ignores constants:
// `WHERE age > 30` and `WHERE age > 90` share a fingerprint but not a rewrite.
// The config is fixed per cache (a reloaded config needs a new cache).
class PlanCache {
 public:
  static constexpr size_t kDefaultCapacity = 1024;
  // Longer query texts are classified but not cached, so that the cache's
  // memory stays bounded (capacity × this, plus the results).
  static constexpr size_t kMaxCachedQueryBytes = size_t{64} * 1024;

  using Statements = std::shared_ptr<const std::vector<StatementResult>>;

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
  };

  // `config` must outlive the cache. `capacity` >= 1 entries (LRU). `facts`
  // (read from the upstream catalog at start) are fixed for the cache's life
  // like the config, so they need no place in the key.
  explicit PlanCache(const config::Config& config, size_t capacity = kDefaultCapacity);
  PlanCache(const config::Config& config, SchemaFacts facts, size_t capacity = kDefaultCapacity);
  PlanCache(const PlanCache&) = delete;
  PlanCache& operator=(const PlanCache&) = delete;

  // Classify(sql, config, session), from the cache when the same text was
  // classified for an equal session before. Internal errors are not cached.
  // The shared result stays valid after eviction.
  Result<Statements> Classify(std::string_view sql, const SessionContext& session);

  // One caller's last classification (a session's: clients repeat their
  // statements), checked before the shared cache: an equal text and session
  // are answered without building a key, taking the lock or touching the
  // shared LRU. Owned and used by one thread at a time. Texts longer than
  // kMaxMemoQueryBytes are not kept, so that a session's memo stays small.
  struct Memo {
    static constexpr size_t kMaxMemoQueryBytes = 4096;
    std::string sql;
    SessionContext session;
    Statements statements;  // null: nothing kept yet
  };
  // As Classify above, with `memo` answered first and updated after.
  Result<Statements> Classify(std::string_view sql, const SessionContext& session, Memo* memo);
  // The same, without a copy of the shared result: every session that
  // classified a text shares one reference count, and copying and dropping
  // it on every statement moves that count's cache line between the I/O
  // threads (bench/RESULTS.md, proxy). The statements are valid until the
  // next call with `memo`; a text too long for the memo is held in `*owner`
  // instead, which the caller keeps for as long as it uses the statements.
  Result<const std::vector<StatementResult>*> ClassifyKept(std::string_view sql,
                                                           const SessionContext& session,
                                                           Memo* memo, Statements* owner);

  size_t size() const;
  size_t capacity() const { return capacity_; }
  Stats stats() const;
  void Clear();

 private:
  struct Entry {
    std::string key;
    Statements statements;
  };

  const config::Config& config_;
  const SchemaFacts facts_;
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // most recently used first; guarded by mutex_
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;  // views into lru_ keys
  Stats stats_;
};

}  // namespace dpgate::rewriter
