#include "dpgate/rewriter/plan_cache.h"

#include <bit>
#include <cstdint>
#include <optional>
#include <utility>

namespace dpgate::rewriter {
namespace {

// Length-prefixed fields, so no two different (text, session) pairs encode
// to the same key whatever bytes they contain.
void AppendField(std::string* key, std::string_view field) {
  key->append(std::to_string(field.size()));
  key->push_back(':');
  key->append(field);
}

// The exact bits of the double: a budget that differs in the last bit is a
// different budget split, so it must not share a plan.
void AppendNumber(std::string* key, const std::optional<double>& value) {
  if (!value) {
    AppendField(key, "-");
    return;
  }
  AppendField(key, std::to_string(std::bit_cast<std::uint64_t>(*value)));
}

std::string MakeKey(std::string_view sql, const SessionContext& session) {
  std::string key;
  key.reserve(sql.size() + 64);
  AppendField(&key, sql);
  AppendField(&key, session.user);
  AppendField(&key, std::to_string(session.search_path.size()));
  for (const auto& schema : session.search_path) AppendField(&key, schema);
  AppendNumber(&key, session.epsilon);
  AppendNumber(&key, session.delta);
  return key;
}

// Equal as a cache key is: the same schemas in order and the same bits of ε
// and δ (MakeKey's fields).
bool SameBits(const std::optional<double>& a, const std::optional<double>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a.has_value() || std::bit_cast<std::uint64_t>(*a) == std::bit_cast<std::uint64_t>(*b);
}

bool SameSession(const SessionContext& a, const SessionContext& b) {
  return a.user == b.user && a.search_path == b.search_path && SameBits(a.epsilon, b.epsilon) &&
         SameBits(a.delta, b.delta);
}

bool MemoAnswers(const PlanCache::Memo& memo, std::string_view sql, const SessionContext& session) {
  return memo.statements != nullptr && memo.sql == sql && SameSession(memo.session, session);
}

}  // namespace

Result<PlanCache::Statements> PlanCache::Classify(std::string_view sql,
                                                  const SessionContext& session, Memo* memo) {
  if (MemoAnswers(*memo, sql, session)) return memo->statements;
  auto classified = Classify(sql, session);
  if (classified.ok() && sql.size() <= Memo::kMaxMemoQueryBytes) {
    memo->sql.assign(sql.data(), sql.size());
    memo->session = session;
    memo->statements = *classified;
  }
  return classified;
}

Result<const std::vector<StatementResult>*> PlanCache::ClassifyKept(std::string_view sql,
                                                                    const SessionContext& session,
                                                                    Memo* memo, Statements* owner) {
  if (MemoAnswers(*memo, sql, session)) return memo->statements.get();
  auto classified = Classify(sql, session, memo);
  if (!classified.ok()) return classified.error();
  if (memo->statements == *classified) return memo->statements.get();
  *owner = std::move(*classified);
  return owner->get();
}

PlanCache::PlanCache(const config::Config& config, size_t capacity)
    : PlanCache(config, SchemaFacts(), capacity) {}

PlanCache::PlanCache(const config::Config& config, SchemaFacts facts, size_t capacity)
    : config_(config), facts_(std::move(facts)), capacity_(capacity < 1 ? 1 : capacity) {}

Result<PlanCache::Statements> PlanCache::Classify(std::string_view sql,
                                                  const SessionContext& session) {
  const bool cacheable = sql.size() <= kMaxCachedQueryBytes;
  std::string key;
  if (cacheable) {
    key = MakeKey(sql, session);
    std::lock_guard lock(mutex_);
    const auto it = index_.find(key);
    if (it != index_.end()) {
      ++stats_.hits;
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->statements;
    }
    ++stats_.misses;
  }
  // Classified outside the lock: it is the slow part, and two threads
  // classifying the same text at once get equal results.
  auto classified = rewriter::Classify(sql, config_, session, facts_);
  if (!classified.ok()) return classified.error();
  auto statements =
      std::make_shared<const std::vector<StatementResult>>(std::move(classified).value());
  if (!cacheable) return Statements(statements);

  std::lock_guard lock(mutex_);
  if (index_.count(key) == 0) {
    lru_.push_front(Entry{std::move(key), statements});
    index_.emplace(lru_.front().key, lru_.begin());
    while (lru_.size() > capacity_) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
      ++stats_.evictions;
    }
  }
  return Statements(statements);
}

size_t PlanCache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

PlanCache::Stats PlanCache::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void PlanCache::Clear() {
  std::lock_guard lock(mutex_);
  index_.clear();
  lru_.clear();
}

}  // namespace dpgate::rewriter
