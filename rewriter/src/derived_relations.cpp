// Merging of subqueries and CTEs in FROM into a private aggregate's own FROM
// (docs/REWRITER.md §5.4). The bounded rewrite (private_query.cpp) reads one
// FROM clause of tables; a subquery that only projects and filters rows is
// the same rows with other names, so it is merged into the outer query and
// the rewrite then checks and bounds the result exactly as if the analyst
// had written it flat.
#include "derived_relations.h"

#include <map>
#include <set>
#include <variant>

namespace dpgate::rewriter::internal {

namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// The first `location` in a subtree, so a refusal about a subquery points at
// it (PostgreSQL's RangeSubselect has no location of its own).
int FirstLocation(const Message& message) {
  const auto* descriptor = message.GetDescriptor();
  const auto* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->name() == "location" && field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
      const int location = reflection->GetInt32(message, field);
      if (location >= 0) return location;
    }
  }
  int found = -1;
  AnyChild(message, [&found](const Message& child) {
    found = FirstLocation(child);
    return found >= 0;
  });
  return found;
}

Refusal NotYet(const std::string& what, int location) {
  return Refusal{"0A000", "not yet supported in a private query: " + what, location};
}

// Counts RangeVar references to a CTE name (unqualified, as only they can
// name a CTE) anywhere below `message`.
int CountCteReferences(const Message& message, const std::string& name) {
  if (message.GetDescriptor() == pb::RangeVar::descriptor()) {
    const auto& range = static_cast<const pb::RangeVar&>(message);
    return range.catalogname().empty() && range.schemaname().empty() && range.relname() == name ? 1
                                                                                                : 0;
  }
  int count = 0;
  AnyChild(message, [&count, &name](const Message& child) {
    count += CountCteReferences(child, name);
    return false;
  });
  return count;
}

bool HasWithClause(const Message& message) {
  if (message.GetDescriptor() == pb::WithClause::descriptor()) return true;
  return AnyChild(message, [](const Message& child) { return HasWithClause(child); });
}

// Replaces the one Node below `message` that is a RangeVar naming `cte` with
// a subquery in FROM holding the CTE's body.
bool ReplaceCteReference(Message* message, const pb::CommonTableExpr& cte) {
  if (message->GetDescriptor() == pb::Node::descriptor()) {
    auto* node = static_cast<pb::Node*>(message);
    if (node->has_range_var()) {
      const auto& range = node->range_var();
      if (!range.catalogname().empty() || !range.schemaname().empty() ||
          range.relname() != cte.ctename()) {
        return false;
      }
      pb::Alias alias;
      if (range.has_alias()) {
        alias = range.alias();
      } else {
        alias.set_aliasname(cte.ctename());
        for (const auto& column : cte.aliascolnames()) *alias.add_colnames() = column;
      }
      pb::Node replacement;
      auto* subselect = replacement.mutable_range_subselect();
      *subselect->mutable_subquery() = cte.ctequery();
      *subselect->mutable_alias() = std::move(alias);
      *node = std::move(replacement);
      return true;
    }
  }
  return AnyMutableChild(message,
                         [&cte](Message* child) { return ReplaceCteReference(child, cte); });
}

// A non-recursive WITH: each CTE named once becomes a subquery where it is
// named, each CTE never named is dropped (PostgreSQL does not run a SELECT
// CTE nobody reads), the others stay (and are refused by the rewrite). A
// nested WITH could shadow a name, so then nothing is inlined.
void InlineCtes(pb::SelectStmt* select) {
  if (!select->has_with_clause() || select->with_clause().recursive()) return;
  pb::WithClause with = select->with_clause();
  select->clear_with_clause();
  if (HasWithClause(*select)) {
    *select->mutable_with_clause() = std::move(with);
    return;
  }
  for (const auto& node : with.ctes()) {
    if (HasWithClause(node)) {
      *select->mutable_with_clause() = std::move(with);
      return;
    }
  }
  pb::WithClause kept = with;
  kept.clear_ctes();
  auto* ctes = with.mutable_ctes();
  for (int i = 0; i < ctes->size(); ++i) {
    const auto& cte = ctes->Get(i).common_table_expr();
    const bool plain =
        cte.ctequery().has_select_stmt() && !cte.has_search_clause() && !cte.has_cycle_clause();
    int references = CountCteReferences(*select, cte.ctename());
    for (int j = i + 1; j < ctes->size(); ++j)
      references += CountCteReferences(ctes->Get(j), cte.ctename());
    if (plain && references == 0) continue;
    if (!plain || references > 1) {
      *kept.add_ctes() = ctes->Get(i);
      continue;
    }
    bool replaced = ReplaceCteReference(select, cte);
    for (int j = i + 1; j < ctes->size() && !replaced; ++j)
      replaced = ReplaceCteReference(ctes->Mutable(j), cte);
    if (!replaced) *kept.add_ctes() = ctes->Get(i);
  }
  if (kept.ctes_size() > 0) *select->mutable_with_clause() = std::move(kept);
}

// The names a FROM item makes visible: a table's alias (or its name), and a
// join's relations. `unaliased` gets the tables visible by their own name,
// which `schema.table.column` may also reach.
void VisibleNames(const pb::Node& item, std::vector<std::string>* names,
                  std::set<std::string>* unaliased) {
  if (item.has_range_var()) {
    const auto& range = item.range_var();
    if (range.has_alias()) {
      names->push_back(range.alias().aliasname());
    } else {
      names->push_back(range.relname());
      unaliased->insert(range.schemaname() + "." + range.relname());
    }
  } else if (item.has_join_expr()) {
    VisibleNames(item.join_expr().larg(), names, unaliased);
    VisibleNames(item.join_expr().rarg(), names, unaliased);
    if (item.join_expr().has_alias()) names->push_back(item.join_expr().alias().aliasname());
  } else if (item.has_range_subselect() && item.range_subselect().has_alias()) {
    names->push_back(item.range_subselect().alias().aliasname());
  } else if (item.has_range_function() && item.range_function().has_alias()) {
    names->push_back(item.range_function().alias().aliasname());
  }
}

// Qualifies the unqualified column references below `message` with
// `relation`, the one table of a subquery's FROM: inside the subquery they
// can only name its columns, and once merged they must keep doing so (and
// the join checks of docs/REWRITER.md §5.5 recognise `h.pid`, not `pid`). A
// subquery expression has its own scope and is left alone (the rewrite
// refuses it).
void QualifyColumns(Message* message, const std::string& relation) {
  const auto* descriptor = message->GetDescriptor();
  if (descriptor == pb::SubLink::descriptor()) return;
  if (descriptor == pb::ColumnRef::descriptor()) {
    auto* ref = static_cast<pb::ColumnRef*>(message);
    if (ref->fields_size() == 1 && ref->fields(0).has_string()) {
      const std::string column = ref->fields(0).string().sval();
      ref->clear_fields();
      ref->add_fields()->mutable_string()->set_sval(relation);
      ref->add_fields()->mutable_string()->set_sval(column);
    }
    return;
  }
  AnyMutableChild(message, [&relation](Message* child) {
    QualifyColumns(child, relation);
    return false;
  });
}

// One subquery in FROM, taken apart for the merge.
struct DerivedRelation {
  pb::Node* node = nullptr;  // the FROM item to replace
  std::string alias;
  std::map<std::string, pb::Node> outputs;  // column name -> its expression
  std::set<std::string> ambiguous;          // names the select list gives twice
  std::string star_relation;                // set when the select list is `*`
  std::vector<pb::Node> from;
  std::optional<pb::Node> where;
  std::vector<std::string> inner_names;
};

std::optional<Refusal> MergeDerivedRelations(pb::SelectStmt* select);

std::variant<DerivedRelation, Refusal> TakeApart(pb::Node* node) {
  auto* subselect = node->mutable_range_subselect();
  const int at = FirstLocation(*subselect);
  if (subselect->lateral()) return NotYet("LATERAL subqueries in FROM", at);
  if (!subselect->has_alias()) return NotYet("a subquery in FROM without an alias", at);
  const std::string alias = subselect->alias().aliasname();
  if (subselect->alias().colnames_size() > 0) {
    return NotYet(
        "column aliases on subquery " + alias + " in FROM; name its columns inside it with AS", at);
  }
  if (!subselect->subquery().has_select_stmt()) return NotYet("this subquery in FROM", at);
  auto* inner = subselect->mutable_subquery()->mutable_select_stmt();
  const std::string where_said = " in subquery " + alias + " in FROM ";
  if (inner->op() != pb::SETOP_NONE && inner->op() != pb::SET_OPERATION_UNDEFINED) {
    return Refusal{"42501",
                   "UNION/INTERSECT/EXCEPT" + where_said +
                       "is refused: set operations combine row sets and can repeat or compare "
                       "raw rows (docs/REWRITER.md §5.1); run each aggregate as its own query",
                   at};
  }
  if (auto refusal = MergeDerivedRelations(inner)) return *refusal;
  if (inner->has_with_clause()) {
    return NotYet("a WITH" + where_said + "that is not one CTE read once",
                  inner->with_clause().location());
  }
  if (inner->distinct_clause_size() > 0) {
    return Refusal{"42501",
                   "DISTINCT" + where_said +
                       "is refused: it merges rows of different privacy units into one, so no "
                       "unit's contribution can be bounded (docs/REWRITER.md §5.4); use "
                       "count(DISTINCT col) in the outer query",
                   at};
  }
  if (inner->group_clause_size() > 0 || inner->has_having_clause()) {
    return NotYet("GROUP BY or HAVING" + where_said +
                      "(an aggregate of aggregates); write one aggregate query over the tables: "
                      "dpgate already bounds each unit's rows before aggregating",
                  at);
  }
  if (inner->window_clause_size() > 0) {
    return Refusal{"42501",
                   "WINDOW" + where_said +
                       "is refused: window functions compute a value per row from other rows "
                       "(docs/REWRITER.md §5.1)",
                   at};
  }
  if (inner->has_limit_count() || inner->has_limit_offset()) {
    return Refusal{"42501",
                   "LIMIT/OFFSET" + where_said +
                       "is refused: it keeps rows chosen across all units, so one unit's rows "
                       "decide which rows of others are counted (docs/REWRITER.md §5.4); filter "
                       "with WHERE instead",
                   at};
  }
  if (inner->locking_clause_size() > 0 || inner->has_into_clause()) {
    return Refusal{"42501", "FOR UPDATE/SHARE or INTO" + where_said + "is refused", at};
  }
  if (inner->values_lists_size() > 0 || inner->from_clause_size() == 0) {
    return NotYet("a subquery in FROM without a FROM clause of its own (" + alias + ")", at);
  }
  DerivedRelation derived;
  derived.node = node;
  derived.alias = alias;
  std::set<std::string> unaliased;
  for (const auto& item : inner->from_clause()) {
    VisibleNames(item, &derived.inner_names, &unaliased);
  }
  for (const auto& item : inner->target_list()) {
    if (!item.has_res_target() || !item.res_target().has_val()) {
      return NotYet("this select list" + where_said, at);
    }
    const auto& target = item.res_target();
    const auto& value = target.val();
    if (value.has_column_ref()) {
      const auto& fields = value.column_ref().fields();
      if (!fields.empty() && fields.rbegin()->has_a_star()) {
        // `*` (or `x.*`) over exactly one table: the subquery's columns are
        // that table's, under the same names.
        const bool one_table = inner->target_list_size() == 1 && inner->from_clause_size() == 1 &&
                               inner->from_clause(0).has_range_var();
        const bool own_name =
            fields.size() == 1 || (fields.size() == 2 && fields[0].has_string() &&
                                   fields[0].string().sval() == derived.inner_names.front());
        if (!one_table || !own_name) {
          return NotYet("*" + where_said +
                            "unless it is the whole select list over one table; list the "
                            "columns the outer query reads",
                        value.column_ref().location());
        }
        derived.star_relation = derived.inner_names.front();
        continue;
      }
    }
    const std::string name = target.name().empty() ? DerivedColumnName(value) : target.name();
    if (derived.outputs.count(name) > 0) {
      derived.ambiguous.insert(name);
    } else {
      derived.outputs.emplace(name, value);
    }
  }
  if (inner->from_clause_size() == 1 && inner->from_clause(0).has_range_var()) {
    for (auto& [name, value] : derived.outputs) QualifyColumns(&value, derived.inner_names.front());
    if (inner->has_where_clause()) {
      QualifyColumns(inner->mutable_where_clause(), derived.inner_names.front());
    }
  }
  for (auto& item : *inner->mutable_from_clause()) derived.from.push_back(std::move(item));
  if (inner->has_where_clause()) derived.where = std::move(*inner->mutable_where_clause());
  // ORDER BY without LIMIT orders nothing an aggregate can see: dropped.
  return derived;
}

// Rewrites the outer query's column references into the merged subqueries'
// expressions, refusing references that would change meaning once the
// subqueries' own FROM items become visible.
class ReferenceSubstitution {
 public:
  ReferenceSubstitution(const std::vector<DerivedRelation>& derived,
                        std::vector<std::string> outer_names, std::set<std::string> unaliased,
                        std::set<std::string> output_names)
      : derived_(derived),
        outer_names_(std::move(outer_names)),
        unaliased_(std::move(unaliased)),
        output_names_(std::move(output_names)) {
    for (const auto& relation : derived_) {
      if (relation.star_relation.empty()) all_star_ = false;
    }
  }

  void Run(pb::SelectStmt* select) {
    for (auto& target : *select->mutable_target_list()) Walk(&target, Clause::kOther);
    for (auto& item : *select->mutable_from_clause()) Walk(&item, Clause::kOther);
    if (select->has_where_clause()) Walk(select->mutable_where_clause(), Clause::kOther);
    for (auto& item : *select->mutable_group_clause()) Walk(&item, Clause::kGroupBy);
    if (select->has_having_clause()) Walk(select->mutable_having_clause(), Clause::kOther);
    for (auto& item : *select->mutable_sort_clause()) Walk(&item, Clause::kOrderBy);
  }

  const std::optional<Refusal>& refusal() const { return refusal_; }

 private:
  enum class Clause { kOther, kGroupBy, kOrderBy };

  void Walk(Message* message, Clause clause) {
    if (refusal_) return;
    const auto* descriptor = message->GetDescriptor();
    // A subquery expression has its own scope; the rewrite refuses it anyway.
    if (descriptor == pb::SubLink::descriptor()) return;
    if (descriptor == pb::ResTarget::descriptor()) {
      // Keep the output column's name: `SELECT t.month` answers a column
      // named month, whatever expression month stands for.
      auto* target = static_cast<pb::ResTarget*>(message);
      if (target->name().empty() && target->has_val()) {
        const std::string before = DerivedColumnName(target->val());
        Walk(target->mutable_val(), clause);
        if (DerivedColumnName(target->val()) != before) target->set_name(before);
        return;
      }
    }
    if (descriptor == pb::Node::descriptor()) {
      auto* node = static_cast<pb::Node*>(message);
      if (node->has_range_subselect()) return;  // a merged subquery: replaced afterwards
      if (node->has_column_ref()) {
        Substitute(node, clause);
        return;
      }
    }
    AnyMutableChild(message, [this, clause](Message* child) {
      Walk(child, clause);
      return refusal_.has_value();
    });
  }

  const DerivedRelation* FindAlias(const std::string& name) const {
    for (const auto& relation : derived_) {
      if (relation.alias == name) return &relation;
    }
    return nullptr;
  }

  bool IsOuterName(const std::string& name) const {
    return std::find(outer_names_.begin(), outer_names_.end(), name) != outer_names_.end();
  }

  // `relation.column` replaced by what the subquery computes for it.
  void Replace(pb::Node* node, const DerivedRelation& relation, const std::string& column, int at) {
    if (relation.ambiguous.count(column) > 0) {
      refusal_ = Refusal{"42702", "column reference " + column + " is ambiguous", at};
      return;
    }
    const auto found = relation.outputs.find(column);
    if (found != relation.outputs.end()) {
      *node = found->second;
    } else if (!relation.star_relation.empty()) {
      *node = MakeColumnRef({relation.star_relation, column});
    } else {
      refusal_ = Refusal{"42703",
                         "column " + relation.alias + "." + column + " does not exist: subquery " +
                             relation.alias + " has no output column of that name",
                         at};
    }
  }

  void Substitute(pb::Node* node, Clause clause) {
    const auto& ref = node->column_ref();
    const int at = ref.location();
    std::vector<std::string> parts;
    for (const auto& field : ref.fields()) {
      parts.push_back(field.has_string() ? field.string().sval() : "*");
    }
    if (parts.size() == 1) {
      const std::string& name = parts[0];
      if (name == "*") return;  // the rewrite refuses *
      if (FindAlias(name) != nullptr && !IsOuterName(name)) {
        refusal_ = Refusal{"42501",
                           "the whole-row reference " + name +
                               " is refused: it is a raw row of a subquery over a private table",
                           at};
        return;
      }
      if (clause == Clause::kOrderBy && output_names_.count(name) > 0) return;
      const DerivedRelation* holder = nullptr;
      for (const auto& relation : derived_) {
        if (relation.outputs.count(name) == 0 && relation.ambiguous.count(name) == 0) continue;
        if (holder != nullptr) {
          refusal_ = Refusal{"42702", "column reference " + name + " is ambiguous", at};
          return;
        }
        holder = &relation;
      }
      if (holder != nullptr) {
        Replace(node, *holder, name, at);
        return;
      }
      if (clause == Clause::kGroupBy && output_names_.count(name) > 0) return;
      // Every subquery is `*` over one table: its columns are visible as they
      // were. Otherwise the name could reach a column a subquery's select
      // list hid, once its FROM items are merged.
      if (all_star_) return;
      refusal_ = Refusal{"42703",
                         "column " + name +
                             " is not an output column of the subquery in FROM; qualify the "
                             "columns of other tables with their alias (docs/REWRITER.md §5.4)",
                         at};
      return;
    }
    if (parts.size() == 2) {
      if (const auto* relation = FindAlias(parts[0])) {
        if (parts[1] == "*") {
          refusal_ = Refusal{"42501",
                             parts[0] +
                                 ".* is refused: it selects raw rows of a subquery over a private "
                                 "table (docs/REWRITER.md §5.2)",
                             at};
          return;
        }
        Replace(node, *relation, parts[1], at);
        return;
      }
      if (IsOuterName(parts[0])) return;
      refusal_ = Refusal{"42P01", "missing FROM-clause entry for table " + parts[0], at};
      return;
    }
    if (parts.size() == 3 && unaliased_.count(parts[0] + "." + parts[1]) == 0) {
      refusal_ =
          Refusal{"42P01", "missing FROM-clause entry for table " + parts[0] + "." + parts[1], at};
    }
  }

  const std::vector<DerivedRelation>& derived_;
  std::vector<std::string> outer_names_;
  std::set<std::string> unaliased_;
  std::set<std::string> output_names_;
  bool all_star_ = true;
  std::optional<Refusal> refusal_;
};

// Finds the subqueries in FROM whose WHERE may move to the outer WHERE: at
// the top, under inner joins, or on the preserved side of an outer join. On
// the NULL-filled side, moving the filter out would drop the rows the outer
// join keeps, so that is refused.
std::optional<Refusal> CollectDerived(pb::Node* item, bool movable,
                                      std::vector<DerivedRelation>* derived,
                                      std::vector<std::string>* outer_names,
                                      std::set<std::string>* unaliased) {
  if (item->has_range_subselect()) {
    if (!movable) {
      return NotYet(
          "a subquery in FROM on the NULL-filled side of an outer join; put it on "
          "the preserved side or join its tables directly",
          FirstLocation(*item));
    }
    auto taken = TakeApart(item);
    if (auto* refusal = std::get_if<Refusal>(&taken)) return *refusal;
    derived->push_back(std::move(std::get<DerivedRelation>(taken)));
    return std::nullopt;
  }
  if (item->has_join_expr()) {
    auto* join = item->mutable_join_expr();
    const auto type = join->jointype();
    const bool left = movable && (type == pb::JOIN_INNER || type == pb::JOIN_LEFT);
    const bool right = movable && (type == pb::JOIN_INNER || type == pb::JOIN_RIGHT);
    if (auto refusal = CollectDerived(join->mutable_larg(), left, derived, outer_names, unaliased))
      return refusal;
    if (auto refusal = CollectDerived(join->mutable_rarg(), right, derived, outer_names, unaliased))
      return refusal;
    if (join->has_alias()) outer_names->push_back(join->alias().aliasname());
    return std::nullopt;
  }
  VisibleNames(*item, outer_names, unaliased);
  return std::nullopt;
}

std::optional<Refusal> MergeDerivedRelations(pb::SelectStmt* select) {
  InlineCtes(select);
  std::vector<DerivedRelation> derived;
  std::vector<std::string> outer_names;
  std::set<std::string> unaliased;
  for (auto& item : *select->mutable_from_clause()) {
    if (auto refusal = CollectDerived(&item, true, &derived, &outer_names, &unaliased))
      return refusal;
  }
  if (derived.empty()) return std::nullopt;

  // Once merged, the subqueries' own FROM names share the outer scope: a
  // name used twice would make references mean something else.
  std::vector<std::string> final_names = outer_names;
  for (const auto& relation : derived) {
    if (std::find(outer_names.begin(), outer_names.end(), relation.alias) != outer_names.end()) {
      return Refusal{"42712", "table name " + relation.alias + " specified more than once", -1};
    }
    final_names.insert(final_names.end(), relation.inner_names.begin(), relation.inner_names.end());
  }
  std::set<std::string> seen;
  for (const auto& name : final_names) {
    if (!seen.insert(name).second) {
      return NotYet("the name " + name +
                        " both inside a subquery in FROM and outside it (or in two of them); "
                        "give one of them another alias",
                    -1);
    }
  }

  std::set<std::string> output_names;
  for (const auto& item : select->target_list()) {
    if (!item.has_res_target()) continue;
    const auto& target = item.res_target();
    output_names.insert(target.name().empty() && target.has_val() ? DerivedColumnName(target.val())
                                                                  : target.name());
  }
  ReferenceSubstitution substitution(derived, outer_names, std::move(unaliased),
                                     std::move(output_names));
  substitution.Run(select);
  if (substitution.refusal()) return substitution.refusal();

  std::vector<pb::Node> conditions;
  if (select->has_where_clause()) conditions.push_back(std::move(*select->mutable_where_clause()));
  for (auto& relation : derived) {
    // Several FROM items of the subquery: a cross join, as a comma list is.
    pb::Node merged = std::move(relation.from.front());
    for (size_t i = 1; i < relation.from.size(); ++i) {
      pb::Node join;
      auto* expr = join.mutable_join_expr();
      expr->set_jointype(pb::JOIN_INNER);
      *expr->mutable_larg() = std::move(merged);
      *expr->mutable_rarg() = std::move(relation.from[i]);
      merged = std::move(join);
    }
    *relation.node = std::move(merged);
    if (relation.where) conditions.push_back(std::move(*relation.where));
  }
  if (conditions.size() == 1) {
    *select->mutable_where_clause() = std::move(conditions.front());
  } else if (conditions.size() > 1) {
    *select->mutable_where_clause() = MakeAnd(std::move(conditions));
  }
  return std::nullopt;
}

}  // namespace

std::optional<Refusal> InlineDerivedRelations(pb::SelectStmt* select) {
  return MergeDerivedRelations(select);
}

}  // namespace dpgate::rewriter::internal
