// Schema facts: what the upstream catalog guarantees about the configured
// relations that the SQL text cannot show (issue 4 item 7, docs/REWRITER.md
// §8.4–§8.5). The rewriter stays pure: app/ reads these from the catalog once
// at start and hands them in. No facts (the default) means nothing is known,
// and the rewriter emits the full per-unit bounded shape.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace dpgate::rewriter {

class SchemaFacts {
 public:
  // `relation` is schema.name, as config::TableSpec::qualified_name() spells it.
  //
  // Declares that every row `FROM relation` reads (inheritance children
  // included) has a non-NULL value in `column`, and no two of them are equal
  // under the `=` of the column's type and collation. A loader may declare
  // this only from a PRIMARY KEY or a valid, immediate, non-partial,
  // single-column unique index on a plain NOT NULL column, with the type's
  // default operator class and the column's own collation, on a relation
  // without inheritance children. The per-row shape's privacy argument rests
  // on it (docs/PRIVACY.md §2.3).
  void AddUniqueNotNull(const std::string& relation, const std::string& column);

  // Records a column's type as an opaque text that is equal for two columns
  // exactly when they have the same type and collation (e.g. `integer` or
  // `text COLLATE "C"`). A join may only be proven not to duplicate rows
  // through an equality of two columns of the same type: an implicit cast
  // (bigint = double precision) can make distinct keys compare equal.
  void SetColumnType(const std::string& relation, const std::string& column, std::string type);

  bool IsUniqueNotNull(const std::string& relation, const std::string& column) const;
  // The recorded type, or nullptr when it is not known.
  const std::string* ColumnType(const std::string& relation, const std::string& column) const;
  // Columns of `relation` whose type is known (to resolve USING columns).
  std::vector<std::string> ColumnsWithType(const std::string& relation) const;

  bool empty() const { return relations_.empty(); }
  size_t unique_column_count() const;

 private:
  struct Relation {
    std::set<std::string> unique_not_null;
    std::map<std::string, std::string> column_types;
  };
  std::map<std::string, Relation> relations_;
};

}  // namespace dpgate::rewriter
