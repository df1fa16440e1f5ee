// Catalog statements as BI tools and drivers send them (docs/REWRITER.md
// §3.3, §4.4): the masking of table sizes they read, and the session
// functions dpgate answers for the client's session instead of the upstream's
// pinned one.
#include "catalog_query.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace dpgate::rewriter::internal {

namespace {

using google::protobuf::Message;

// pg_class's columns that are statistics of the table's contents (its size).
bool IsSizeColumnName(const std::string& name) {
  const std::string lowered = Lower(name);
  return lowered == "reltuples" || lowered == "relpages" || lowered == "relallvisible";
}

bool IsClassRange(const pb::RangeVar& range) {
  return range.schemaname() == "pg_catalog" && range.relname() == "pg_class";
}

// Whether a FROM item holds pg_class at its own level: itself, or inside a
// join tree (not inside a subquery, whose columns are its select list).
bool FromItemHasClass(const pb::Node& item) {
  if (item.has_range_var()) return IsClassRange(item.range_var());
  if (item.has_join_expr()) {
    return FromItemHasClass(item.join_expr().larg()) || FromItemHasClass(item.join_expr().rarg());
  }
  return false;
}

// Aliases of join trees that hold pg_class: `j.*` and a whole-row `j` carry
// pg_class's columns like `c.*` and `c` do.
void CollectJoinAliases(const Message& message, std::vector<std::string>* names) {
  const auto* descriptor = message.GetDescriptor();
  if (descriptor == pb::Node::descriptor()) {
    const auto& node = static_cast<const pb::Node&>(message);
    if (node.has_join_expr() && node.join_expr().has_alias() && FromItemHasClass(node)) {
      names->push_back(node.join_expr().alias().aliasname());
    }
  }
  AnyChild(message, [names](const Message& child) {
    CollectJoinAliases(child, names);
    return false;
  });
}

bool NamesClass(const pb::Node& field, const std::vector<std::string>& names) {
  return field.has_string() &&
         std::find(names.begin(), names.end(), field.string().sval()) != names.end();
}

// `names`: the aliases (or names) of pg_class ranges and of join trees holding
// one. `level_has_class`: the innermost SELECT's own FROM holds pg_class.
// True when a star or whole-row reference carries pg_class's columns: those
// cannot be masked by substituting a named column (docs/REWRITER.md §3.3).
bool SeesWholeRow(const Message& message, const std::vector<std::string>& names,
                  bool level_has_class) {
  const auto* descriptor = message.GetDescriptor();
  if (descriptor == pb::SelectStmt::descriptor()) {
    // A star expands the FROM items of its own SELECT: pg_class's columns if
    // pg_class is one of them, a subquery's select list otherwise (checked
    // at that subquery's level).
    level_has_class = false;
    for (const auto& item : static_cast<const pb::SelectStmt&>(message).from_clause()) {
      level_has_class = level_has_class || FromItemHasClass(item);
    }
  }
  if (descriptor == pb::ColumnRef::descriptor()) {
    const auto& ref = static_cast<const pb::ColumnRef&>(message);
    const int n = ref.fields_size();
    if (n > 0 && ref.fields(n - 1).has_a_star()) {
      // `*` or `x.*` over pg_class at this level; `c.*` of a pg_class range
      // (or a join holding one) at any level, outer ones included.
      if (level_has_class) return true;
      if (n >= 2 && NamesClass(ref.fields(n - 2), names)) return true;
    } else if (n > 0 && NamesClass(ref.fields(n - 1), names)) {
      // A whole-row reference (`c`, `row_to_json(c)`, `(c).relname`,
      // `relpages(c)`) carries every column. PostgreSQL reads `c` as a whole
      // row only when no column is named c: erring on the side of refusal.
      return true;
    }
  }
  return AnyChild(message, [&names, level_has_class](const Message& child) {
    return SeesWholeRow(child, names, level_has_class);
  });
}

// A NATURAL join involving pg_class, or USING naming a size column, compares
// the size column without naming it in a column reference.
bool JoinsOnSizeColumn(const Message& message) {
  const auto* descriptor = message.GetDescriptor();
  if (descriptor == pb::Node::descriptor()) {
    const auto& node = static_cast<const pb::Node&>(message);
    if (node.has_join_expr()) {
      const auto& join = node.join_expr();
      if (join.is_natural() && FromItemHasClass(node)) return true;
      for (const auto& name : join.using_clause()) {
        if (name.has_string() && IsSizeColumnName(name.string().sval())) return true;
      }
    }
  }
  return AnyChild(message, [](const Message& child) { return JoinsOnSizeColumn(child); });
}

// ARRAY['a', 'b']::pg_catalog.name[]
pb::Node MakeNameArray(const std::vector<std::string>& names) {
  pb::Node array;
  auto* expr = array.mutable_a_array_expr();
  for (const auto& name : names) *expr->add_elements() = MakeString(name);
  expr->set_location(-1);
  return MakeCast(std::move(array), {"pg_catalog", "name"}, true);
}

// PostgreSQL's RelationIsVisible / TypeIsVisible over the client's path: the
// object's schema is on the path and no object of the same name lives in a
// schema earlier on it. $1 is the oid argument, $2 the path. A constant
// template with no user input; the argument is spliced in as a node.
constexpr const char* kRelationVisible =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class dp_vis_obj"
    " JOIN pg_catalog.pg_namespace dp_vis_ns ON dp_vis_ns.oid = dp_vis_obj.relnamespace"
    " WHERE dp_vis_obj.oid = $1 AND dp_vis_ns.nspname = ANY ($2)"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class dp_vis_other"
    " JOIN pg_catalog.pg_namespace dp_vis_other_ns"
    " ON dp_vis_other_ns.oid = dp_vis_other.relnamespace"
    " WHERE dp_vis_other.relname = dp_vis_obj.relname"
    " AND pg_catalog.array_position($2, dp_vis_other_ns.nspname)"
    " < pg_catalog.array_position($2, dp_vis_ns.nspname)))";
constexpr const char* kTypeVisible =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_type dp_vis_obj"
    " JOIN pg_catalog.pg_namespace dp_vis_ns ON dp_vis_ns.oid = dp_vis_obj.typnamespace"
    " WHERE dp_vis_obj.oid = $1 AND dp_vis_ns.nspname = ANY ($2)"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type dp_vis_other"
    " JOIN pg_catalog.pg_namespace dp_vis_other_ns"
    " ON dp_vis_other_ns.oid = dp_vis_other.typnamespace"
    " WHERE dp_vis_other.typname = dp_vis_obj.typname"
    " AND pg_catalog.array_position($2, dp_vis_other_ns.nspname)"
    " < pg_catalog.array_position($2, dp_vis_ns.nspname)))";

void FillParameters(Message* message, const pb::Node& first, const pb::Node& second) {
  const auto* descriptor = message->GetDescriptor();
  const auto* reflection = message->GetReflection();
  if (descriptor == pb::Node::descriptor()) {
    auto* node = static_cast<pb::Node*>(message);
    if (node->has_param_ref()) {
      const int number = node->param_ref().number();
      *node = number == 1 ? first : second;
      return;
    }
  }
  for (const auto* field : ChildFields(*message)) {
    if (field->is_repeated()) {
      for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
        FillParameters(reflection->MutableRepeatedMessage(message, field, j), first, second);
      }
    } else if (reflection->HasField(*message, field)) {
      FillParameters(reflection->MutableMessage(message, field), first, second);
    }
  }
}

std::optional<pb::Node> Visibility(const char* templ, const pb::Node& argument,
                                   const SessionPath& session) {
  auto tree = Parse(templ);
  if (!tree || tree->stmts_size() != 1) return std::nullopt;
  pb::Node expression = tree->stmts(0).stmt().select_stmt().target_list(0).res_target().val();
  FillParameters(&expression, argument, MakeNameArray(session.path));
  return expression;
}

std::optional<bool> ConstantBool(const pb::Node& node) {
  if (node.has_a_const() && node.a_const().has_boolval()) {
    return node.a_const().boolval().boolval();
  }
  if (node.has_type_cast()) return ConstantBool(node.type_cast().arg());
  return std::nullopt;
}

bool IsBuiltinCall(const pb::FuncCall& call) {
  std::string schema;
  FunctionName(call, &schema);
  return (schema.empty() || schema == "pg_catalog") && !call.agg_star() && !call.agg_distinct() &&
         !call.func_variadic() && !call.has_over() && !call.has_agg_filter() &&
         call.agg_order_size() == 0;
}

// The name PostgreSQL gives the column of a call answered from the session,
// or nullopt when `node` is not one.
std::optional<std::string> SessionCall(const pb::Node& node) {
  if (node.has_sqlvalue_function()) {
    if (node.sqlvalue_function().op() == pb::SVFOP_CURRENT_SCHEMA) return "current_schema";
    return std::nullopt;
  }
  if (!node.has_func_call() || !IsBuiltinCall(node.func_call())) return std::nullopt;
  const auto& call = node.func_call();
  const std::string name = FunctionName(call);
  const int args = call.args_size();
  if ((name == "current_schema" && args == 0) || (name == "current_schemas" && args == 1) ||
      ((name == "pg_table_is_visible" || name == "pg_type_is_visible") && args == 1)) {
    return name;
  }
  return std::nullopt;
}

// The session's answer for a call SessionCall recognised.
std::optional<pb::Node> SessionAnswer(const pb::Node& node, const std::string& name,
                                      const SessionPath& session) {
  if (name == "current_schema") {
    return MakeCast(session.current_schema ? MakeString(*session.current_schema) : MakeNull(),
                    {"pg_catalog", "name"}, false);
  }
  const auto& call = node.func_call();
  if (name == "current_schemas") {
    // true: with the implicitly searched pg_catalog, as PostgreSQL does.
    const auto implicit = ConstantBool(call.args(0));
    if (implicit) return MakeNameArray(*implicit ? session.path : session.explicit_path);
    return MakeCaseWhen(call.args(0), MakeNameArray(session.path),
                        MakeNameArray(session.explicit_path));
  }
  return Visibility(name == "pg_table_is_visible" ? kRelationVisible : kTypeVisible, call.args(0),
                    session);
}

void Substitute(Message* message, const SessionPath& session) {
  const auto* descriptor = message->GetDescriptor();
  const auto* reflection = message->GetReflection();
  if (descriptor == pb::ResTarget::descriptor()) {
    // Keep the output column's name: `SELECT current_schema()` answers a
    // column named current_schema, not one named after the replacing cast.
    auto* target = static_cast<pb::ResTarget*>(message);
    if (target->name().empty() && target->has_val()) {
      if (auto column = SessionCall(target->val())) target->set_name(*column);
    }
  }
  // Children first, so an argument's own calls are answered before it is
  // spliced into a replacement.
  for (const auto* field : ChildFields(*message)) {
    if (field->is_repeated()) {
      for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
        Substitute(reflection->MutableRepeatedMessage(message, field, j), session);
      }
    } else if (reflection->HasField(*message, field)) {
      Substitute(reflection->MutableMessage(message, field), session);
    }
  }
  if (descriptor != pb::Node::descriptor()) return;
  auto* node = static_cast<pb::Node*>(message);
  const auto name = SessionCall(*node);
  if (!name) return;
  if (auto answer = SessionAnswer(*node, *name, session)) *node = std::move(*answer);
}

// PostgreSQL's own "not known" values for pg_class's statistics: reltuples
// -1 (never vacuumed or analyzed, since PostgreSQL 14), relpages and
// relallvisible 0. Casts, so a masked `ORDER BY relpages` does not turn into
// the positional `ORDER BY 0`.
pb::Node MaskedSizeColumn(const std::string& column) {
  if (Lower(column) == "reltuples") {
    return MakeCast(MakeInteger(-1), {"pg_catalog", "float4"}, false);
  }
  return MakeCast(MakeInteger(0), {"pg_catalog", "int4"}, false);
}

// Any call of a built-in size function, whatever its modifiers (OVER,
// VARIADIC, ... would make PostgreSQL reject it anyway): masked, not skipped.
bool IsSizeCall(const pb::FuncCall& call) {
  std::string schema;
  const std::string name = FunctionName(call, &schema);
  return (schema.empty() || schema == "pg_catalog") && IsSizeFunctionName(name);
}

// Replaces size reads below `message`. `names`: pg_class range names and
// aliases of joins holding one; `level_has_class` / `outer_has_class`: the
// current SELECT's own FROM, or an enclosing one, holds pg_class.
class SizeMasker {
 public:
  explicit SizeMasker(std::vector<std::string> names) : names_(std::move(names)) {}

  void Mask(Message* message, bool level_has_class, bool outer_has_class) {
    if (refusal_) return;
    const auto* descriptor = message->GetDescriptor();
    const auto* reflection = message->GetReflection();
    if (descriptor == pb::SelectStmt::descriptor()) {
      outer_has_class = outer_has_class || level_has_class;
      level_has_class = false;
      for (const auto& item : static_cast<pb::SelectStmt*>(message)->from_clause()) {
        level_has_class = level_has_class || FromItemHasClass(item);
      }
    }
    if (descriptor == pb::ResTarget::descriptor()) {
      // Keep the output column's name: `SELECT c.reltuples::bigint` answers a
      // column named reltuples, not one named after the replacing constant.
      auto* target = static_cast<pb::ResTarget*>(message);
      if (target->name().empty() && target->has_val()) {
        const std::string before = DerivedColumnName(target->val());
        Mask(target->mutable_val(), level_has_class, outer_has_class);
        if (DerivedColumnName(target->val()) != before) target->set_name(before);
        return;  // a select item has no indirection (that is UPDATE's SET a[1])
      }
    }
    if (descriptor == pb::Node::descriptor()) {
      auto* node = static_cast<pb::Node*>(message);
      if (node->has_func_call() && IsSizeCall(node->func_call())) {
        *node = MakeCast(MakeNull(), {"pg_catalog", "int8"}, false);
        return;
      }
      if (node->has_column_ref()) {
        MaskColumn(node, level_has_class, outer_has_class);
        return;
      }
    }
    for (const auto* field : ChildFields(*message)) {
      if (refusal_) break;
      if (field->is_repeated()) {
        for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
          Mask(reflection->MutableRepeatedMessage(message, field, j), level_has_class,
               outer_has_class);
        }
      } else if (reflection->HasField(*message, field)) {
        Mask(reflection->MutableMessage(message, field), level_has_class, outer_has_class);
      }
    }
  }

  const std::optional<std::string>& refusal() const { return refusal_; }

 private:
  void MaskColumn(pb::Node* node, bool level_has_class, bool outer_has_class) {
    const auto& fields = node->column_ref().fields();
    const int n = fields.size();
    if (n == 0 || !fields[n - 1].has_string()) return;
    const std::string column = fields[n - 1].string().sval();
    if (!IsSizeColumnName(column)) return;
    if (n >= 2) {
      // Qualified: pg_class's column only when the qualifier names a pg_class
      // range (or a join holding one); `s.reltuples` of a subquery or another
      // table is that relation's own column, itself masked where it was read.
      // An inner alias shadowing an outer pg_class alias is masked too: a
      // harmless over-approximation.
      if (NamesClass(fields[n - 2], names_)) *node = MaskedSizeColumn(column);
      return;
    }
    if (level_has_class) {
      // Unqualified next to pg_class: pg_class's column (another column of
      // that name would make PostgreSQL report it ambiguous).
      *node = MaskedSizeColumn(column);
    } else if (outer_has_class) {
      // It may be an outer pg_class's column or one of this level's
      // relations; dpgate does not know other relations' columns.
      refusal_ = "column reference " + column +
                 " cannot be masked: it is unqualified in a subquery whose own FROM has no "
                 "pg_class while an enclosing query reads pg_catalog.pg_class, so dpgate cannot "
                 "tell whose column it is; qualify it (c." +
                 column + ") (docs/REWRITER.md §3.3)";
    }
    // Otherwise no pg_class is in scope: another relation's column.
  }

  std::vector<std::string> names_;
  std::optional<std::string> refusal_;
};

// ---- per-relation statistics views (docs/REWRITER.md §3.3) -----------------

// What a statistics view's column becomes in its masked replacement: an
// identity column (oid or name, the same catalog facts pg_class shows) is
// read from the real view; a counter becomes 0::bigint and a timestamp
// NULL::timestamptz, what PostgreSQL shows for a table with no activity
// recorded, so no count of rows, scans or blocks leaves the upstream.
enum class StatisticsColumnKind { kIdentity, kCounter, kTimestamp };

struct StatisticsColumn {
  const char* name;
  StatisticsColumnKind kind;
};

using StatisticsColumns = std::vector<StatisticsColumn>;

// PostgreSQL 15's columns of each family of views (src/backend/catalog/
// system_views.sql), in order, with their names and types: a `SELECT *` or a
// positional reference through dpgate sees the view's own shape. The
// integration test stat_mask_test.cpp compares them with the real server.
const StatisticsColumns* StatisticsViewColumns(const std::string& view) {
  constexpr auto kId = StatisticsColumnKind::kIdentity;
  constexpr auto kCount = StatisticsColumnKind::kCounter;
  constexpr auto kTime = StatisticsColumnKind::kTimestamp;
  static const StatisticsColumns kTables = {{"relid", kId},
                                            {"schemaname", kId},
                                            {"relname", kId},
                                            {"seq_scan", kCount},
                                            {"seq_tup_read", kCount},
                                            {"idx_scan", kCount},
                                            {"idx_tup_fetch", kCount},
                                            {"n_tup_ins", kCount},
                                            {"n_tup_upd", kCount},
                                            {"n_tup_del", kCount},
                                            {"n_tup_hot_upd", kCount},
                                            {"n_live_tup", kCount},
                                            {"n_dead_tup", kCount},
                                            {"n_mod_since_analyze", kCount},
                                            {"n_ins_since_vacuum", kCount},
                                            {"last_vacuum", kTime},
                                            {"last_autovacuum", kTime},
                                            {"last_analyze", kTime},
                                            {"last_autoanalyze", kTime},
                                            {"vacuum_count", kCount},
                                            {"autovacuum_count", kCount},
                                            {"analyze_count", kCount},
                                            {"autoanalyze_count", kCount}};
  // pg_stat_xact_*_tables: the first eleven columns of pg_stat_*_tables
  // (relid ... n_tup_hot_upd), the counters of the current transaction.
  static const StatisticsColumns kTransactionTables(kTables.begin(), kTables.begin() + 11);
  static const StatisticsColumns kIoTables = {{"relid", kId},
                                              {"schemaname", kId},
                                              {"relname", kId},
                                              {"heap_blks_read", kCount},
                                              {"heap_blks_hit", kCount},
                                              {"idx_blks_read", kCount},
                                              {"idx_blks_hit", kCount},
                                              {"toast_blks_read", kCount},
                                              {"toast_blks_hit", kCount},
                                              {"tidx_blks_read", kCount},
                                              {"tidx_blks_hit", kCount}};
  static const StatisticsColumns kIndexes = {{"relid", kId},           {"indexrelid", kId},
                                             {"schemaname", kId},      {"relname", kId},
                                             {"indexrelname", kId},    {"idx_scan", kCount},
                                             {"idx_tup_read", kCount}, {"idx_tup_fetch", kCount}};
  static const StatisticsColumns kIoIndexes = {
      {"relid", kId},        {"indexrelid", kId},       {"schemaname", kId},     {"relname", kId},
      {"indexrelname", kId}, {"idx_blks_read", kCount}, {"idx_blks_hit", kCount}};
  static const StatisticsColumns kIoSequences = {{"relid", kId},
                                                 {"schemaname", kId},
                                                 {"relname", kId},
                                                 {"blks_read", kCount},
                                                 {"blks_hit", kCount}};
  static const std::map<std::string, const StatisticsColumns*> kViews = [&] {
    std::map<std::string, const StatisticsColumns*> views;
    for (const std::string scope : {"all", "user", "sys"}) {
      views["pg_stat_" + scope + "_tables"] = &kTables;
      views["pg_stat_xact_" + scope + "_tables"] = &kTransactionTables;
      views["pg_statio_" + scope + "_tables"] = &kIoTables;
      views["pg_stat_" + scope + "_indexes"] = &kIndexes;
      views["pg_statio_" + scope + "_indexes"] = &kIoIndexes;
      views["pg_statio_" + scope + "_sequences"] = &kIoSequences;
    }
    return views;
  }();
  const auto found = kViews.find(view);
  return found == kViews.end() ? nullptr : found->second;
}

bool IsMaskedStatisticsRange(const pb::RangeVar& range) {
  return range.catalogname().empty() && range.schemaname() == "pg_catalog" &&
         StatisticsViewColumns(range.relname()) != nullptr;
}

// `(SELECT relid, schemaname, relname, 0::bigint AS seq_scan, ...,
// NULL::timestamptz AS last_vacuum, ... FROM pg_catalog.<view>) AS <alias>`,
// built as nodes from the constant column list: the only thing taken from the
// client's range is its alias (or the view's name, so `view.column` still
// resolves), never text.
pb::Node MaskedStatisticsView(const pb::RangeVar& range, const StatisticsColumns& columns) {
  pb::Node view_query;
  auto* select = view_query.mutable_select_stmt();
  for (const auto& column : columns) {
    switch (column.kind) {
      case StatisticsColumnKind::kIdentity:
        *select->add_target_list() = MakeResTarget("", MakeColumnRef({column.name}));
        break;
      case StatisticsColumnKind::kCounter:
        *select->add_target_list() =
            MakeResTarget(column.name, MakeCast(MakeInteger(0), {"pg_catalog", "int8"}, false));
        break;
      case StatisticsColumnKind::kTimestamp:
        *select->add_target_list() =
            MakeResTarget(column.name, MakeCast(MakeNull(), {"pg_catalog", "timestamptz"}, false));
        break;
    }
  }
  auto* view = select->add_from_clause()->mutable_range_var();
  view->set_schemaname("pg_catalog");
  view->set_relname(range.relname());
  view->set_inh(true);
  view->set_relpersistence("p");
  view->set_location(-1);
  select->set_limit_option(pb::LIMIT_OPTION_DEFAULT);
  select->set_op(pb::SETOP_NONE);

  pb::Node replacement;
  auto* subselect = replacement.mutable_range_subselect();
  *subselect->mutable_subquery() = std::move(view_query);
  if (range.has_alias()) {
    *subselect->mutable_alias() = range.alias();
  } else {
    subselect->mutable_alias()->set_aliasname(range.relname());
  }
  return replacement;
}

// Replaces the masked statistics views in FROM-item position (a SELECT's FROM
// list and the two sides of a join, at any depth); counts what it replaced
// and records any other RangeVar naming one (TABLESAMPLE's relation), which
// cannot hold a subquery. A replacement is not walked again.
class StatisticsViewMasker {
 public:
  void Walk(Message* message) {
    const auto* descriptor = message->GetDescriptor();
    const auto* reflection = message->GetReflection();
    if (descriptor == pb::RangeVar::descriptor()) {
      const auto& range = static_cast<const pb::RangeVar&>(*message);
      if (IsMaskedStatisticsRange(range)) unmaskable_.push_back(range.relname());
      return;
    }
    for (const auto* field : ChildFields(*message)) {
      const bool from_item =
          (descriptor == pb::SelectStmt::descriptor() && field->name() == "from_clause") ||
          (descriptor == pb::JoinExpr::descriptor() &&
           (field->name() == "larg" || field->name() == "rarg"));
      if (field->is_repeated()) {
        for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
          Visit(reflection->MutableRepeatedMessage(message, field, j), from_item);
        }
      } else if (reflection->HasField(*message, field)) {
        Visit(reflection->MutableMessage(message, field), from_item);
      }
    }
  }

  int replaced() const { return replaced_; }
  const std::vector<std::string>& unmaskable() const { return unmaskable_; }

 private:
  void Visit(Message* child, bool from_item) {
    if (from_item && child->GetDescriptor() == pb::Node::descriptor()) {
      auto* node = static_cast<pb::Node*>(child);
      if (node->has_range_var() && IsMaskedStatisticsRange(node->range_var())) {
        const auto* columns = StatisticsViewColumns(node->range_var().relname());
        *node = MaskedStatisticsView(node->range_var(), *columns);
        ++replaced_;
        return;
      }
    }
    Walk(child);
  }

  int replaced_ = 0;
  std::vector<std::string> unmaskable_;
};

bool HoldsConfiguredTables(const config::Config& config, const std::string& schema) {
  for (const auto& dataset : config.datasets) {
    for (const auto& table : dataset.tables) {
      if (table.schema == schema) return true;
    }
  }
  return false;
}

// quote_ident's rule, without the keyword list: plain lower-case names bare.
std::string QuoteIdent(const std::string& name) {
  bool plain =
      !name.empty() && (std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_');
  for (const char ch : name) {
    if (!(std::islower(static_cast<unsigned char>(ch)) ||
          std::isdigit(static_cast<unsigned char>(ch)) || ch == '_')) {
      plain = false;
    }
  }
  return plain ? name : DelimitedIdentifier(name);
}

}  // namespace

SessionPath MakeSessionPath(const config::Config& config, const SessionContext& session) {
  SessionPath out;
  // Resolution skips a "$user" schema the config does not know
  // (docs/REWRITER.md §2.2), so visibility and current_schema() do too.
  for (const auto& schema : session.search_path) {
    if (schema == "$user") {
      if (!session.user.empty() && HoldsConfiguredTables(config, session.user)) {
        out.explicit_path.push_back(session.user);
      }
      continue;
    }
    out.explicit_path.push_back(schema);
  }
  if (std::find(out.explicit_path.begin(), out.explicit_path.end(), "pg_catalog") ==
      out.explicit_path.end()) {
    out.path.emplace_back("pg_catalog");
  }
  out.path.insert(out.path.end(), out.explicit_path.begin(), out.explicit_path.end());
  if (!out.explicit_path.empty()) out.current_schema = out.explicit_path.front();
  for (size_t i = 0; i < session.search_path.size(); ++i) {
    if (i > 0) out.search_path_text += ", ";
    out.search_path_text += QuoteIdent(session.search_path[i]);
  }
  return out;
}

bool IsSizeFunctionName(const std::string& name) {
  return name == "pg_relation_size" || name == "pg_table_size" ||
         name == "pg_total_relation_size" || name == "pg_indexes_size" ||
         name == "pg_database_size" || name == "pg_tablespace_size";
}

std::optional<std::string> MaskSizeReads(pb::Node* statement,
                                         const std::vector<ClassReference>& classes) {
  std::vector<std::string> names;
  for (const auto& reference : classes) {
    if (reference.renames_columns) {
      return "pg_catalog.pg_class with a column alias list (AS " + reference.name +
             "(a, b, ...)) is refused: dpgate masks reltuples, relpages and relallvisible by "
             "name and cannot follow renamed columns; drop the column list (docs/REWRITER.md "
             "§3.3)";
    }
    names.push_back(reference.name);
  }
  CollectJoinAliases(*statement, &names);
  if (!classes.empty() && SeesWholeRow(*statement, names, false)) {
    return "a * , x.* or whole-row reference over pg_catalog.pg_class is refused: it would carry "
           "reltuples, relpages and relallvisible, which dpgate masks only in named column "
           "references; list the columns you need (docs/REWRITER.md §3.3)";
  }
  if (!classes.empty() && JoinsOnSizeColumn(*statement)) {
    return "a NATURAL join with pg_catalog.pg_class, or USING (reltuples/relpages/"
           "relallvisible), is refused: it compares a size column dpgate cannot mask; write the "
           "join condition with ON (docs/REWRITER.md §3.3)";
  }
  SizeMasker masker(std::move(names));
  masker.Mask(statement, false, false);
  return masker.refusal();
}

bool IsMaskedStatisticsView(const std::string& name) {
  return StatisticsViewColumns(name) != nullptr;
}

std::optional<std::string> MaskStatisticsViews(pb::Node* statement, int resolved) {
  StatisticsViewMasker masker;
  masker.Walk(statement);
  if (!masker.unmaskable().empty() || masker.replaced() != resolved) {
    const std::string name =
        masker.unmaskable().empty() ? "statistics view" : "pg_catalog." + masker.unmaskable()[0];
    return "relation " + name +
           " is answered masked only as a plain FROM item (its counters replaced by 0 and "
           "NULL); TABLESAMPLE over it is refused (docs/REWRITER.md §3.3)";
  }
  return std::nullopt;
}

void SubstituteSessionFunctions(pb::Node* statement, const SessionPath& session) {
  Substitute(statement, session);
}

pb::Node ShowSearchPathQuery(const SessionPath& session) {
  pb::Node node;
  auto* select = node.mutable_select_stmt();
  *select->add_target_list() = MakeResTarget(
      "search_path", MakeCast(MakeString(session.search_path_text), {"pg_catalog", "text"}, false));
  select->set_limit_option(pb::LIMIT_OPTION_DEFAULT);
  select->set_op(pb::SETOP_NONE);
  return node;
}

}  // namespace dpgate::rewriter::internal
