#include "dpgate/rewriter/schema_facts.h"

namespace dpgate::rewriter {

void SchemaFacts::AddUniqueNotNull(const std::string& relation, const std::string& column) {
  relations_[relation].unique_not_null.insert(column);
}

void SchemaFacts::SetColumnType(const std::string& relation, const std::string& column,
                                std::string type) {
  relations_[relation].column_types[column] = std::move(type);
}

bool SchemaFacts::IsUniqueNotNull(const std::string& relation, const std::string& column) const {
  const auto it = relations_.find(relation);
  return it != relations_.end() && it->second.unique_not_null.count(column) > 0;
}

const std::string* SchemaFacts::ColumnType(const std::string& relation,
                                           const std::string& column) const {
  const auto it = relations_.find(relation);
  if (it == relations_.end()) return nullptr;
  const auto type = it->second.column_types.find(column);
  return type == it->second.column_types.end() ? nullptr : &type->second;
}

std::vector<std::string> SchemaFacts::ColumnsWithType(const std::string& relation) const {
  std::vector<std::string> out;
  const auto it = relations_.find(relation);
  if (it == relations_.end()) return out;
  for (const auto& [column, type] : it->second.column_types) out.push_back(column);
  return out;
}

size_t SchemaFacts::unique_column_count() const {
  size_t n = 0;
  for (const auto& [name, relation] : relations_) n += relation.unique_not_null.size();
  return n;
}

}  // namespace dpgate::rewriter
