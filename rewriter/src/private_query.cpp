// Validation and bounded rewrite of a private aggregate over one private
// table (docs/REWRITER.md §5–§10). Every refusal names the construct, its
// position, why it is refused and what to write instead.
#include "private_query.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace dpgate::rewriter::internal {

namespace {

// Every intermediate value of accepted arithmetic stays within ±1e15: far
// inside float4 (3.4e38), float8, int8 (9.2e18) and numeric, so no accepted
// expression can overflow on any row (docs/REWRITER.md §6.3).
constexpr double kArithmeticLimit = 1e15;

struct Interval {
  double lo = 0;
  double hi = 0;
};

bool IsComparison(const std::string& op) {
  return op == "=" || op == "<>" || op == "!=" || op == "<" || op == "<=" || op == ">" ||
         op == ">=";
}

bool IsArithmetic(const std::string& op) {
  return op == "+" || op == "-" || op == "*" || op == "/" || op == "%";
}

bool IsAggregateName(const std::string& name) {
  static const std::set<std::string> kAggregates = {"count",
                                                    "sum",
                                                    "avg",
                                                    "variance",
                                                    "var_samp",
                                                    "var_pop",
                                                    "stddev",
                                                    "stddev_samp",
                                                    "stddev_pop",
                                                    "min",
                                                    "max",
                                                    "array_agg",
                                                    "string_agg",
                                                    "json_agg",
                                                    "jsonb_agg",
                                                    "percentile_cont",
                                                    "percentile_disc",
                                                    "mode",
                                                    "bool_and",
                                                    "bool_or",
                                                    "every",
                                                    "bit_and",
                                                    "bit_or",
                                                    "xmlagg",
                                                    "json_object_agg",
                                                    "jsonb_object_agg",
                                                    "corr",
                                                    "covar_pop",
                                                    "covar_samp",
                                                    "regr_count",
                                                    "std",
                                                    "var",
                                                    "stdev"};
  return kAggregates.count(name) > 0;
}

// Field names date_trunc/extract/date_part accept; any other constant raises
// at run time, and only when a row is evaluated (docs/REWRITER.md §6.2).
bool IsDateField(const std::string& field, bool for_trunc) {
  static const std::set<std::string> kTrunc = {
      "microseconds", "milliseconds", "second", "minute", "hour",    "day",       "week",
      "month",        "quarter",      "year",   "decade", "century", "millennium"};
  static const std::set<std::string> kExtract = {"dow",      "doy",           "epoch",
                                                 "isodow",   "isoyear",       "julian",
                                                 "timezone", "timezone_hour", "timezone_minute"};
  std::string lower = field;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (kTrunc.count(lower) > 0) return true;
  return !for_trunc && kExtract.count(lower) > 0;
}

// A LIKE pattern raises "LIKE pattern must not end with escape character"
// when it ends in an unescaped backslash; nothing else in it can raise.
bool IsValidLikePattern(const std::string& pattern) {
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\') {
      if (i + 1 == pattern.size()) return false;
      ++i;
    }
  }
  return true;
}

std::string NodeKind(const pb::Node& node) {
  const auto* field = pb::Node::descriptor()->FindFieldByNumber(static_cast<int>(node.node_case()));
  return field != nullptr && field->message_type() != nullptr ? field->message_type()->name()
                                                              : "expression";
}

int NodeLocation(const pb::Node& node) {
  const google::protobuf::Message* message = nullptr;
  const auto* field = pb::Node::descriptor()->FindFieldByNumber(static_cast<int>(node.node_case()));
  if (field == nullptr) return -1;
  message = &node.GetReflection()->GetMessage(node, field);
  const auto* location = message->GetDescriptor()->FindFieldByName("location");
  if (location == nullptr ||
      location->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_INT32) {
    return -1;
  }
  return message->GetReflection()->GetInt32(*message, location);
}

std::optional<double> ConstantNumber(const pb::Node& node) {
  if (node.has_a_const()) {
    const auto& constant = node.a_const();
    if (constant.has_ival()) return static_cast<double>(constant.ival().ival());
    if (constant.has_fval()) {
      char* end = nullptr;
      const std::string& text = constant.fval().fval();
      const double value = std::strtod(text.c_str(), &end);
      if (end != nullptr && *end == '\0' && std::isfinite(value)) return value;
    }
    return std::nullopt;
  }
  // Unary minus on a constant.
  if (node.has_a_expr() && node.a_expr().kind() == pb::AEXPR_OP && !node.a_expr().has_lexpr() &&
      node.a_expr().name_size() == 1 && node.a_expr().name(0).string().sval() == "-") {
    auto inner = ConstantNumber(node.a_expr().rexpr());
    if (inner) return -*inner;
  }
  return std::nullopt;
}

struct Aggregate {
  ColumnRole role = ColumnRole::kCount;
  std::string function;  // as written, lower case
  std::string column;    // "" for COUNT(*)
  pb::Node argument;     // the column reference as written (COUNT(col) may count a public column)
  const config::ColumnSpec* spec = nullptr;
  const config::TableSpec* table = nullptr;  // whose column `spec` is
};

struct GroupKey {
  pb::Node normalized;  // for matching select-list and HAVING/ORDER BY items
  pb::Node rewritten;   // validated, clamped, pg_catalog-qualified: goes into the SQL
  const config::ColumnSpec* public_values = nullptr;  // a plain column with declared values
};

struct Target {
  std::string name;
  pb::Node normalized;
  std::optional<Aggregate> aggregate;
  int group_key = -1;
};

class PrivateAnalyser {
 public:
  PrivateAnalyser(const pb::SelectStmt& select, const config::Dataset& dataset,
                  std::vector<const config::TableSpec*> private_tables,
                  std::vector<std::string> public_relations, const SchemaFacts& facts)
      : select_(select),
        dataset_(dataset),
        private_tables_(std::move(private_tables)),
        table_(private_tables_.front()),
        public_relations_(std::move(public_relations)),
        facts_(facts) {}

  std::variant<PrivateRewrite, Refusal> Run() {
    CheckShape();
    if (!refusal_) AnalyseGroupBy();
    if (!refusal_) AnalyseTargets();
    if (!refusal_) AnalyseJoinConditions();
    if (!refusal_) GuardUnitJoins();
    if (!refusal_) AnalyseWhere();
    if (!refusal_) AnalyseHaving();
    if (!refusal_) AnalyseOrderAndLimit();
    if (!refusal_) Build();
    if (refusal_) return *refusal_;
    return PrivateRewrite{std::move(statement_), std::move(plan_)};
  }

 private:
  void Refuse(std::string code, std::string message, int location) {
    if (!refusal_) refusal_ = Refusal{std::move(code), std::move(message), location};
  }
  void NotYet(std::string what, int location) {
    Refuse("0A000", "not yet supported in a private query: " + std::move(what), location);
  }

  std::string TableName() const { return table_->qualified_name(); }
  // The private tables the query reads, for messages about all of them.
  std::string PrivateTableNames() const {
    std::string names = TableName();
    for (const auto& joined : joined_private_) names += " or " + joined.spec->qualified_name();
    return names;
  }

  // ---- shape ---------------------------------------------------------------

  void CheckShape() {
    const int at = -1;
    if (select_.op() != pb::SETOP_NONE && select_.op() != pb::SET_OPERATION_UNDEFINED) {
      Refuse("42501",
             "UNION/INTERSECT/EXCEPT over private table " + TableName() +
                 " is refused: set operations combine row sets and can release or compare raw "
                 "rows (docs/REWRITER.md §5.1); run each aggregate as its own query",
             at);
      return;
    }
    if (select_.has_with_clause()) {
      NotYet("WITH (common table expressions) over private table " + TableName() +
                 "; write the aggregate directly over the table",
             select_.with_clause().location());
      return;
    }
    if (select_.distinct_clause_size() > 0) {
      Refuse("42501",
             "SELECT DISTINCT over private table " + TableName() +
                 " is refused: it releases every distinct value, which can be one person's "
                 "(docs/REWRITER.md §5.1); write GROUP BY with an aggregate such as count(*)",
             at);
      return;
    }
    if (select_.window_clause_size() > 0) {
      Refuse("42501",
             "WINDOW over private table " + TableName() +
                 " is refused: window functions compute a value per row (docs/REWRITER.md §5.1)",
             at);
      return;
    }
    if (select_.group_distinct()) {
      NotYet("GROUP BY DISTINCT", at);
      return;
    }
    // FROM: the private table once, optionally joined with public tables
    // (docs/REWRITER.md §5.1). Per-unit bounding happens after the join, so
    // however a join multiplies a unit's rows, its contribution stays clamped.
    for (const auto& item : select_.from_clause()) from_.push_back(item);
    int items_with_private = 0;
    for (auto& item : from_) {
      if (!CheckFromItem(&item, true)) return;
      if (!PrivatesIn(item).empty()) ++items_with_private;
    }
    if (private_count_ != 1) {
      NotYet(private_count_ == 0 ? "the private table " + TableName() +
                                       " outside FROM (in a subquery); the FROM clause must name it"
                                 : "joining private table " + TableName() + " with itself",
             -1);
      return;
    }
    if (joined_private_.empty()) return;
    // Several private tables (docs/REWRITER.md §5.5): every row must hold
    // rows of one unit only, which JOIN ... ON on the units proves; a comma
    // list pairs every unit with every other.
    if (items_with_private > 1) {
      Refuse("42501",
             "private tables in a comma-separated FROM list (a cross join) are refused: it pairs "
             "every person's rows with every other person's, so no row belongs to one privacy "
             "unit (docs/REWRITER.md §5.5); write JOIN ... ON a.unit = b.unit",
             -1);
      return;
    }
    if (!primary_preserved_) {
      NotYet("private table " + TableName() +
                 " on the NULL-filled side of an outer join with another private table; name "
                 "first the private table whose rows are all kept (FROM a LEFT JOIN b ON ...)",
             range_.location());
    }
  }

  // The private tables below a FROM item: visible name and config entry.
  std::vector<std::pair<std::string, const config::TableSpec*>> PrivatesIn(
      const pb::Node& item) const {
    std::vector<std::pair<std::string, const config::TableSpec*>> out;
    std::vector<FromRelation> relations;
    CollectRelations(item, &relations);
    for (const auto& relation : relations) {
      if (const auto* spec = PrivateSpec(relation.qualified())) {
        out.emplace_back(relation.visible, spec);
      }
    }
    return out;
  }

  const config::TableSpec* PrivateSpec(const std::string& qualified) const {
    for (const auto* spec : private_tables_) {
      if (spec->qualified_name() == qualified) return spec;
    }
    return nullptr;
  }

  // A join between two sides that both hold private tables must equate the
  // units of one table on each side in a top-level conjunct of its ON, so
  // every row it produces pairs rows of one unit (docs/REWRITER.md §5.5).
  bool CheckPrivateJoin(pb::JoinExpr* join) {
    const auto left = PrivatesIn(join->larg());
    const auto right = PrivatesIn(join->rarg());
    if (left.empty() || right.empty()) return true;
    const std::string tables =
        left.front().second->qualified_name() + " and " + right.front().second->qualified_name();
    if (join->is_natural() || join->using_clause_size() > 0 || !join->has_quals()) {
      Refuse("42501",
             "joining private tables " + tables +
                 " is supported only with JOIN ... ON on their privacy units (docs/REWRITER.md "
                 "§5.5); write ON " +
                 left.front().first + "." + left.front().second->privacy_unit + " = " +
                 right.front().first + "." + right.front().second->privacy_unit,
             -1);
      return false;
    }
    const auto unit_of =
        [](const pb::Node& node,
           const std::vector<std::pair<std::string, const config::TableSpec*>>& side) -> bool {
      if (!node.has_column_ref() || node.column_ref().fields_size() != 2) return false;
      const auto& fields = node.column_ref().fields();
      if (!fields[0].has_string() || !fields[1].has_string()) return false;
      for (const auto& [alias, spec] : side) {
        if (fields[0].string().sval() == alias && fields[1].string().sval() == spec->privacy_unit) {
          return true;
        }
      }
      return false;
    };
    std::vector<const pb::Node*> conjuncts;
    Conjuncts(join->quals(), &conjuncts);
    for (const auto* conjunct : conjuncts) {
      if (!conjunct->has_a_expr() || !IsEquality(conjunct->a_expr())) continue;
      const auto& l = conjunct->a_expr().lexpr();
      const auto& r = conjunct->a_expr().rexpr();
      if ((unit_of(l, left) && unit_of(r, right)) || (unit_of(l, right) && unit_of(r, left))) {
        unit_links_.push_back(UnitLink{join, l, r});
        return true;
      }
    }
    Refuse("42501",
           "joining private tables " + tables +
               " is supported only on their privacy units: the ON condition has no conjunct "
               "equating them, so a row could pair two people's rows (docs/REWRITER.md §5.5); "
               "add " +
               left.front().first + "." + left.front().second->privacy_unit + " = " +
               right.front().first + "." + right.front().second->privacy_unit,
           NodeLocation(join->quals()));
    return false;
  }

  // Equality under the unit columns' own types could match two different
  // units (bigint = double precision rounds; a nondeterministic collation
  // equates distinct strings), which would let one person's rows join
  // another's. The conjunct added here requires the units' text forms to be
  // byte-equal as well, so a joined row holds rows of one unit only
  // (docs/PRIVACY.md §2.5). Added after validation: it is dpgate's own
  // expression, and text output cannot fail.
  void GuardUnitJoins() {
    for (auto& link : unit_links_) {
      std::vector<pb::Node> both;
      both.push_back(std::move(*link.join->mutable_quals()));
      both.push_back(MakeOp("=", MakeTextKey(link.left), MakeTextKey(link.right)));
      *link.join->mutable_quals() = MakeAnd(std::move(both));
    }
  }

  bool IsJoinedPrivateAlias(const std::string& name) const {
    for (const auto& joined : joined_private_) {
      if (joined.alias == name) return true;
    }
    return false;
  }

  // The config entry of the column a reference names: the joined private
  // table's when qualified with its alias, none for a public table's, the
  // partitioning table's otherwise.
  const config::ColumnSpec* SpecOf(const pb::ColumnRef& ref, const std::string& column) const {
    const auto* table = TableOf(ref);
    return table == nullptr ? nullptr : table->FindColumn(column);
  }
  const config::TableSpec* TableOf(const pb::ColumnRef& ref) const {
    if (ref.fields_size() >= 2 && ref.fields(0).has_string()) {
      const std::string& qualifier = ref.fields(ref.fields_size() - 2).string().sval();
      for (const auto& joined : joined_private_) {
        if (joined.alias == qualifier ||
            (!joined.aliased && ref.fields_size() == 3 && joined.spec->name == qualifier)) {
          return joined.spec;
        }
      }
    }
    return IsPublicColumn(ref) ? nullptr : table_;
  }

  // `h.col` or `schema.table.col` of a joined private table.
  bool IsJoinedPrivateColumn(const pb::ColumnRef& ref) const {
    const auto* table = TableOf(ref);
    return table != nullptr && table != table_;
  }

  // k and c when several private tables are joined: the largest of theirs.
  // The noise is calibrated to whatever bound the SQL enforces, so any k and
  // c give the same ε (docs/PRIVACY.md §2.1); they trade clamping bias for
  // noise. A join has the row multiplicity of its "many" side, so the
  // largest bound keeps each table's rows within the bound configured for
  // it (docs/REWRITER.md §5.5).
  int MaxGroups() const {
    int k = table_->max_groups_contributed;
    for (const auto& joined : joined_private_) k = std::max(k, joined.spec->max_groups_contributed);
    return k;
  }
  int MaxRows() const {
    int c = table_->max_rows_per_group;
    for (const auto& joined : joined_private_) c = std::max(c, joined.spec->max_rows_per_group);
    return c;
  }

  // `preserved`: no outer join above this item fills it with NULLs.
  bool CheckFromItem(pb::Node* item, bool preserved) {
    if (item->has_range_var()) {
      const auto& range = item->range_var();
      const std::string qualified = range.schemaname() + "." + range.relname();
      const std::string alias = range.has_alias() ? range.alias().aliasname() : range.relname();
      if (range.has_alias() && range.alias().colnames_size() > 0) {
        NotYet("column aliases on a table in FROM", range.location());
        return false;
      }
      if (const auto* spec = PrivateSpec(qualified)) {
        const bool seen = (private_count_ > 0 && spec == table_) ||
                          std::any_of(joined_private_.begin(), joined_private_.end(),
                                      [spec](const JoinedPrivate& j) { return j.spec == spec; });
        if (seen) {
          NotYet("joining private table " + qualified + " with itself", range.location());
          return false;
        }
        if (private_count_ == 0) {
          ++private_count_;
          table_ = spec;
          range_ = range;
          alias_ = alias;
          primary_preserved_ = preserved;
        } else {
          joined_private_.push_back(JoinedPrivate{spec, alias, range.has_alias()});
        }
        return true;
      }
      if (std::find(public_relations_.begin(), public_relations_.end(), qualified) ==
          public_relations_.end()) {
        NotYet("joining private table " + TableName() + " with " + qualified +
                   ", which is not a public table of the config",
               range.location());
        return false;
      }
      public_aliases_.push_back(alias);
      return true;
    }
    if (item->has_join_expr()) {
      auto* join = item->mutable_join_expr();
      if (join->has_alias() || join->has_join_using_alias()) {
        NotYet("an alias on a join", -1);
        return false;
      }
      if (join->jointype() != pb::JOIN_INNER && join->jointype() != pb::JOIN_LEFT &&
          join->jointype() != pb::JOIN_RIGHT && join->jointype() != pb::JOIN_FULL) {
        NotYet("this join type", -1);
        return false;
      }
      const auto type = join->jointype();
      const bool left_kept = preserved && (type == pb::JOIN_INNER || type == pb::JOIN_LEFT);
      const bool right_kept = preserved && (type == pb::JOIN_INNER || type == pb::JOIN_RIGHT);
      if (!CheckFromItem(join->mutable_larg(), left_kept) ||
          !CheckFromItem(join->mutable_rarg(), right_kept) || !CheckPrivateJoin(join))
        return false;
      if (join->has_quals()) join_quals_.push_back(join->mutable_quals());
      return true;
    }
    NotYet("subqueries, functions, VALUES or TABLESAMPLE in FROM together with private table " +
               TableName() +
               "; FROM may name the private table, joined with public tables "
               "(docs/REWRITER.md §5.1)",
           NodeLocation(*item));
    return false;
  }

  void AnalyseJoinConditions() {
    // Join conditions run on every row pair: the side-channel rule applies (§6).
    for (auto* quals : join_quals_) {
      if (ContainsAggregate(*quals)) {
        Refuse("42803", "aggregate functions are not allowed in JOIN conditions",
               NodeLocation(*quals));
        return;
      }
      if (!Safe(quals)) return;
    }
  }

  bool IsPublicAlias(const std::string& name) const {
    return std::find(public_aliases_.begin(), public_aliases_.end(), name) != public_aliases_.end();
  }

  // True for a column reference qualified with a public table's alias.
  bool IsPublicColumn(const pb::ColumnRef& ref) const {
    return ref.fields_size() == 2 && ref.fields(0).has_string() &&
           IsPublicAlias(ref.fields(0).string().sval()) && ref.fields(0).string().sval() != alias_;
  }

  // ---- columns -------------------------------------------------------------

  // The column a ColumnRef names, if it names a column of the private table.
  std::optional<std::string> ColumnName(const pb::ColumnRef& ref) {
    std::vector<std::string> parts;
    for (const auto& field : ref.fields()) {
      if (field.has_a_star()) {
        Refuse("42501",
               "* over private table " + TableName() +
                   " is refused: it selects raw rows (docs/REWRITER.md §5.2); select group keys "
                   "and aggregates such as count(*) instead",
               ref.location());
        return std::nullopt;
      }
      parts.push_back(field.string().sval());
    }
    if (parts.size() == 2 && (parts[0] == alias_ || parts[0] == range_.relname())) {
      return parts[1];
    }
    if (parts.size() == 2 && (IsPublicAlias(parts[0]) || IsJoinedPrivateAlias(parts[0]))) {
      return parts[1];
    }
    if (parts.size() == 3) {
      for (const auto& joined : joined_private_) {
        if (!joined.aliased && parts[0] == joined.spec->schema && parts[1] == joined.spec->name) {
          return parts[2];
        }
      }
    }
    if (parts.size() == 3 && parts[0] == range_.schemaname() && parts[1] == range_.relname()) {
      return parts[2];
    }
    if (parts.size() != 1) {
      Refuse("42P01",
             "column reference " + Join(parts) + " does not name a column of " + TableName(),
             ref.location());
      return std::nullopt;
    }
    if (parts[0] == alias_ || parts[0] == range_.relname() || IsPublicAlias(parts[0]) ||
        IsJoinedPrivateAlias(parts[0])) {
      Refuse(
          "42501",
          "the whole-row reference " + parts[0] + " is refused: it is a raw row of " + TableName(),
          ref.location());
      return std::nullopt;
    }
    return parts[0];
  }

  static std::string Join(const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& part : parts) out += (out.empty() ? "" : ".") + part;
    return out;
  }

  // A copy where references to the private table's columns are unqualified,
  // so `p.married` and `married` compare equal, and without locations, so
  // normalized trees compare with SameClearedTree (no copies per comparison).
  // Used only to compare expressions, never deparsed.
  pb::Node Normalize(const pb::Node& node) {
    pb::Node copy = node;
    NormalizeInPlace(&copy);
    ClearLocations(&copy);
    return copy;
  }
  void NormalizeInPlace(google::protobuf::Message* message) {
    if (message->GetDescriptor() == pb::ColumnRef::descriptor()) {
      auto* ref = static_cast<pb::ColumnRef*>(message);
      if (ref->fields_size() >= 2 && ref->fields(ref->fields_size() - 1).has_string()) {
        std::optional<std::string> name;
        std::vector<std::string> parts;
        for (const auto& field : ref->fields())
          parts.push_back(field.has_string() ? field.string().sval() : "*");
        if ((parts.size() == 2 && (parts[0] == alias_ || parts[0] == range_.relname())) ||
            (parts.size() == 3 && parts[0] == range_.schemaname() &&
             parts[1] == range_.relname())) {
          const std::string column = parts.back();
          ref->clear_fields();
          ref->add_fields()->mutable_string()->set_sval(column);
        }
      }
      return;
    }
    const auto* reflection = message->GetReflection();
    for (const auto* field : ChildFields(*message)) {
      if (field->is_repeated()) {
        for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
          NormalizeInPlace(reflection->MutableRepeatedMessage(message, field, j));
        }
      } else if (reflection->HasField(*message, field)) {
        NormalizeInPlace(reflection->MutableMessage(message, field));
      }
    }
  }

  bool MentionsPrivacyUnit(const google::protobuf::Message& message) {
    if (message.GetDescriptor() == pb::ColumnRef::descriptor()) {
      const auto& ref = static_cast<const pb::ColumnRef&>(message);
      if (ref.fields_size() == 0 || !ref.fields(ref.fields_size() - 1).has_string()) return false;
      const std::string& column = ref.fields(ref.fields_size() - 1).string().sval();
      // Any private table's unit name: a joined table's unit is the same
      // person as the partitioning table's (over-approximates for a public
      // column of that name, which is then refused too).
      if (column == table_->privacy_unit) return true;
      for (const auto& joined : joined_private_) {
        if (column == joined.spec->privacy_unit) return true;
      }
      return false;
    }
    // The loop stays written out here: routed through AnyChild, GCC 12
    // inlines this function into its callers and reports a false
    // -Warray-bounds on the ColumnRef cast of a Node.
    const auto* reflection = message.GetReflection();
    for (const auto* field : ChildFields(message)) {
      if (field->is_repeated()) {
        for (int j = 0; j < reflection->FieldSize(message, field); ++j) {
          if (MentionsPrivacyUnit(reflection->GetRepeatedMessage(message, field, j))) return true;
        }
      } else if (reflection->HasField(message, field) &&
                 MentionsPrivacyUnit(reflection->GetMessage(message, field))) {
        return true;
      }
    }
    return false;
  }

  // ---- the side-channel rule (docs/REWRITER.md §6) -------------------------

  // NULL-preserving clamp: GREATEST/LEAST ignore NULLs in PostgreSQL, so a
  // bare least(greatest(NULL, lo), hi) would turn NULL into lo.
  static pb::Node ClampColumn(const pb::Node& column, double lo, double hi) {
    return MakeCaseWhen(MakeNullTest(column, true), MakeNull(), MakeClamp(column, lo, hi));
  }

  // Interval analysis of arithmetic; clamps bounded columns in place.
  std::optional<Interval> Arithmetic(pb::Node* node) {
    if (auto constant = ConstantNumber(*node)) return Interval{*constant, *constant};
    if (node->has_column_ref()) {
      auto name = ColumnName(node->column_ref());
      if (!name) return std::nullopt;
      const auto* spec = SpecOf(node->column_ref(), *name);
      if (spec == nullptr || !spec->has_bounds()) {
        Refuse("0A000",
               "arithmetic on column " + *name + " of " + TableName() +
                   " is refused: it has no lower/upper bounds in the config, so the result could "
                   "overflow on some row and the error would reveal it (docs/REWRITER.md §6.3); "
                   "ask an administrator to declare bounds for " +
                   *name,
               node->column_ref().location());
        return std::nullopt;
      }
      *node = ClampColumn(*node, *spec->lower, *spec->upper);
      return Interval{*spec->lower, *spec->upper};
    }
    if (node->has_a_expr() && node->a_expr().kind() == pb::AEXPR_OP &&
        node->a_expr().name_size() == 1 && IsArithmetic(node->a_expr().name(0).string().sval())) {
      auto* expr = node->mutable_a_expr();
      const std::string op = expr->name(0).string().sval();
      if (!expr->has_lexpr()) {  // unary
        auto inner = Arithmetic(expr->mutable_rexpr());
        if (!inner) return std::nullopt;
        if (op == "-") return Interval{-inner->hi, -inner->lo};
        if (op == "+") return inner;
        NotYet("unary operator " + op, expr->location());
        return std::nullopt;
      }
      if (op == "/" || op == "%") {
        auto divisor = ConstantNumber(expr->rexpr());
        if (!divisor || *divisor == 0) {
          Refuse("0A000",
                 std::string(op == "/" ? "division" : "modulo") +
                     " by anything but a non-zero constant is refused: a zero on some row would "
                     "raise an error that reveals that row (docs/REWRITER.md §6.1); divide by a "
                     "constant, or compute the ratio from released aggregates",
                 expr->location());
          return std::nullopt;
        }
        auto left = Arithmetic(expr->mutable_lexpr());
        if (!left) return std::nullopt;
        Interval result;
        if (op == "/") {
          const double a = left->lo / *divisor;
          const double b = left->hi / *divisor;
          result = Interval{std::min(a, b), std::max(a, b)};
        } else {
          result = Interval{-std::fabs(*divisor), std::fabs(*divisor)};
        }
        return CheckLimit(result, expr->location());
      }
      auto left = Arithmetic(expr->mutable_lexpr());
      if (!left) return std::nullopt;
      auto right = Arithmetic(expr->mutable_rexpr());
      if (!right) return std::nullopt;
      Interval result;
      if (op == "+") {
        result = Interval{left->lo + right->lo, left->hi + right->hi};
      } else if (op == "-") {
        result = Interval{left->lo - right->hi, left->hi - right->lo};
      } else {
        const double products[] = {left->lo * right->lo, left->lo * right->hi, left->hi * right->lo,
                                   left->hi * right->hi};
        result = Interval{*std::min_element(std::begin(products), std::end(products)),
                          *std::max_element(std::begin(products), std::end(products))};
      }
      return CheckLimit(result, expr->location());
    }
    Refuse(
        "0A000",
        NodeKind(*node) +
            " inside arithmetic is refused in a private query: only bounded "
            "columns, numeric constants and + - * (and / % by a non-zero constant) are accepted, "
            "so that no row can make the expression overflow (docs/REWRITER.md §6.3)",
        NodeLocation(*node));
    return std::nullopt;
  }

  std::optional<Interval> CheckLimit(Interval interval, int location) {
    if (!(std::fabs(interval.lo) <= kArithmeticLimit &&
          std::fabs(interval.hi) <= kArithmeticLimit)) {
      Refuse("0A000",
             "arithmetic whose value can reach " +
                 FormatNumber(std::max(std::fabs(interval.lo), std::fabs(interval.hi))) +
                 " is refused: above 1e15 it could overflow on some row (docs/REWRITER.md §6.3)",
             location);
      return std::nullopt;
    }
    return interval;
  }

  // Validates an expression for WHERE or GROUP BY; qualifies allowed
  // functions with pg_catalog and clamps columns under arithmetic.
  bool Safe(pb::Node* node) {
    if (refusal_) return false;
    switch (node->node_case()) {
      case pb::Node::kColumnRef:
        return ColumnName(node->column_ref()).has_value();
      case pb::Node::kAConst:
      case pb::Node::kParamRef:
      case pb::Node::kSqlvalueFunction:
        return true;
      case pb::Node::kTypeCast: {
        auto* cast = node->mutable_type_cast();
        if (cast->arg().has_a_const() || cast->arg().has_param_ref())
          return true;  // checked when planned
        std::string type;
        if (cast->type_name().names_size() > 0) {
          type = cast->type_name().names(cast->type_name().names_size() - 1).string().sval();
        }
        if ((type == "text" || type == "varchar") && cast->type_name().typmods_size() == 0 &&
            cast->type_name().array_bounds_size() == 0) {
          return Safe(cast->mutable_arg());
        }
        Refuse("0A000",
               "the cast to " + (type.empty() ? std::string("this type") : type) +
                   " is refused in a private query: casting a column can fail on some rows "
                   "(e.g. text that is not a number), and the error would reveal them "
                   "(docs/REWRITER.md §6.2); compare with a constant of the column's own type, "
                   "or cast to text",
               cast->location());
        return false;
      }
      case pb::Node::kBoolExpr:
        for (auto& arg : *node->mutable_bool_expr()->mutable_args()) {
          if (!Safe(&arg)) return false;
        }
        return true;
      case pb::Node::kNullTest:
        return Safe(node->mutable_null_test()->mutable_arg());
      case pb::Node::kBooleanTest:
        return Safe(node->mutable_boolean_test()->mutable_arg());
      case pb::Node::kAExpr:
        return SafeAExpr(node);
      case pb::Node::kCaseExpr: {
        auto* expr = node->mutable_case_expr();
        if (expr->has_arg() && !Safe(expr->mutable_arg())) return false;
        for (auto& when : *expr->mutable_args()) {
          if (!when.has_case_when()) return false;
          if (!Safe(when.mutable_case_when()->mutable_expr())) return false;
          if (!Safe(when.mutable_case_when()->mutable_result())) return false;
        }
        return !expr->has_defresult() || Safe(expr->mutable_defresult());
      }
      case pb::Node::kCoalesceExpr:
        for (auto& arg : *node->mutable_coalesce_expr()->mutable_args()) {
          if (!Safe(&arg)) return false;
        }
        return true;
      case pb::Node::kMinMaxExpr:
        for (auto& arg : *node->mutable_min_max_expr()->mutable_args()) {
          if (!Safe(&arg)) return false;
        }
        return true;
      case pb::Node::kFuncCall:
        return SafeFunction(node);
      case pb::Node::kSubLink:
        NotYet("subqueries (the query reads private table " + TableName() +
                   "); a subquery could read raw rows of it",
               node->sub_link().location());
        return false;
      default:
        Refuse("0A000",
               NodeKind(*node) +
                   " is not on the allowlist of expressions for private queries "
                   "(docs/REWRITER.md §6)",
               NodeLocation(*node));
        return false;
    }
  }

  bool SafeAExpr(pb::Node* node) {
    auto* expr = node->mutable_a_expr();
    std::string op;
    if (expr->name_size() == 1 && expr->name(0).has_string()) {
      op = expr->name(0).string().sval();
    } else if (expr->name_size() == 2 && expr->name(0).string().sval() == "pg_catalog") {
      op = expr->name(1).string().sval();
    } else if (expr->name_size() > 0) {
      Refuse("0A000", "operators outside pg_catalog are refused in a private query",
             expr->location());
      return false;
    }
    switch (expr->kind()) {
      case pb::AEXPR_OP:
        if (IsComparison(op)) return Safe(expr->mutable_lexpr()) && Safe(expr->mutable_rexpr());
        if (IsArithmetic(op)) return Arithmetic(node).has_value();
        if (op == "~" || op == "~*" || op == "!~" || op == "!~*") {
          Refuse("0A000",
                 "the regular-expression operator " + op +
                     " is refused in a private query: an invalid or too complex pattern raises an "
                     "error only when a row is evaluated (docs/REWRITER.md §6.2); use LIKE",
                 expr->location());
          return false;
        }
        Refuse(
            "0A000",
            "operator " + op +
                " is not on the allowlist for private queries "
                "(docs/REWRITER.md §6): comparisons, + - * / by constants, LIKE, IN, BETWEEN and "
                "IS NULL are",
            expr->location());
        return false;
      case pb::AEXPR_DISTINCT:
      case pb::AEXPR_NOT_DISTINCT:
      case pb::AEXPR_NULLIF:
        return Safe(expr->mutable_lexpr()) && Safe(expr->mutable_rexpr());
      case pb::AEXPR_IN:
      case pb::AEXPR_BETWEEN:
      case pb::AEXPR_NOT_BETWEEN:
      case pb::AEXPR_BETWEEN_SYM:
      case pb::AEXPR_NOT_BETWEEN_SYM: {
        if (!Safe(expr->mutable_lexpr())) return false;
        if (!expr->rexpr().has_list()) {
          NotYet("IN with a subquery or a non-list right side", expr->location());
          return false;
        }
        for (auto& item : *expr->mutable_rexpr()->mutable_list()->mutable_items()) {
          if (!Safe(&item)) return false;
        }
        return true;
      }
      case pb::AEXPR_LIKE:
      case pb::AEXPR_ILIKE: {
        if (!Safe(expr->mutable_lexpr())) return false;
        const auto& pattern = expr->rexpr();
        if (!pattern.has_a_const() || !pattern.a_const().has_sval()) {
          Refuse("0A000",
                 "LIKE with a pattern that is not a string constant is refused in a private "
                 "query: dpgate checks the pattern before running it (docs/REWRITER.md §6.2); "
                 "write the pattern as a literal, without ESCAPE",
                 expr->location());
          return false;
        }
        if (!IsValidLikePattern(pattern.a_const().sval().sval())) {
          Refuse("0A000",
                 "the LIKE pattern ends with an escape character: PostgreSQL would raise an "
                 "error only when a row is evaluated, which reveals whether rows match the "
                 "filter (docs/REWRITER.md §6.2); escape the trailing backslash",
                 expr->location());
          return false;
        }
        return true;
      }
      case pb::AEXPR_SIMILAR:
        Refuse("0A000",
               "SIMILAR TO is refused in a private query: it compiles a regular expression "
               "that can raise when a row is evaluated (docs/REWRITER.md §6.2); use LIKE",
               expr->location());
        return false;
      default:
        NotYet("ANY/ALL comparisons", expr->location());
        return false;
    }
  }

  bool SafeFunction(pb::Node* node) {
    auto* call = node->mutable_func_call();
    std::string schema;
    const std::string name = FunctionName(*call, &schema);
    if (call->has_over()) {
      Refuse("42501",
             "the window function " + name + " is refused over private table " + TableName() +
                 ": it computes a value per row, not per group (docs/REWRITER.md §5.2)",
             call->location());
      return false;
    }
    if (IsAggregateName(name)) {
      Refuse("42803",
             "the aggregate " + name +
                 " is not allowed here: aggregates belong in the select "
                 "list, or in HAVING",
             call->location());
      return false;
    }
    if (!schema.empty() && schema != "pg_catalog") {
      Refuse("0A000",
             "function " + schema + "." + name +
                 " is refused in a private query: only pg_catalog functions on the "
                 "allowlist are accepted (docs/REWRITER.md §6)",
             call->location());
      return false;
    }
    static const std::set<std::string> kText = {
        "lower", "upper", "length", "char_length", "character_length",
        "btrim", "ltrim", "rtrim",  "initcap",     "octet_length"};
    if (call->agg_star() || call->agg_distinct() || call->func_variadic() ||
        call->agg_order_size() > 0 || call->has_agg_filter()) {
      Refuse("0A000", "this form of call to " + name + " is refused in a private query",
             call->location());
      return false;
    }
    bool ok = false;
    if (kText.count(name) > 0) {
      ok = true;
    } else if (name == "date_trunc" || name == "date_part" || name == "extract") {
      const bool trunc = name == "date_trunc";
      if (call->args_size() != 2 || !call->args(0).has_a_const() ||
          !call->args(0).a_const().has_sval() ||
          !IsDateField(call->args(0).a_const().sval().sval(), trunc)) {
        Refuse("0A000",
               name +
                   " needs a constant, valid field name as its first argument in a private "
                   "query: an unknown field raises an error only when a row is evaluated "
                   "(docs/REWRITER.md §6.2)",
               call->location());
        return false;
      }
      ok = true;
    }
    if (!ok) {
      Refuse(
          "0A000",
          "function " + name +
              " is not on the allowlist for private queries: it could raise "
              "an error on some rows, which would reveal them (docs/REWRITER.md §6); allowed are "
              "lower, upper, length, btrim/ltrim/rtrim, initcap, date_trunc, date_part/extract, "
              "coalesce, nullif, greatest, least and CASE",
          call->location());
      return false;
    }
    for (auto& arg : *call->mutable_args()) {
      if (!Safe(&arg)) return false;
    }
    // Pin the function to pg_catalog: a schema earlier in a search_path could shadow it.
    call->clear_funcname();
    call->add_funcname()->mutable_string()->set_sval("pg_catalog");
    call->add_funcname()->mutable_string()->set_sval(name);
    return true;
  }

  // ---- GROUP BY --------------------------------------------------------------

  void AnalyseGroupBy() {
    for (const auto& item : select_.group_clause()) {
      pb::Node expression = item;
      if (item.has_a_const() && item.a_const().has_ival()) {
        const int ordinal = item.a_const().ival().ival();
        if (ordinal < 1 || ordinal > select_.target_list_size()) {
          Refuse("42P10", "GROUP BY position " + std::to_string(ordinal) + " is not in select list",
                 item.a_const().location());
          return;
        }
        expression = select_.target_list(ordinal - 1).res_target().val();
      }
      if (expression.has_grouping_set()) {
        NotYet("GROUPING SETS, ROLLUP and CUBE", expression.grouping_set().location());
        return;
      }
      if (MentionsPrivacyUnit(expression)) {
        Refuse("42501",
               "grouping by the privacy unit " + table_->privacy_unit + " of " + TableName() +
                   " is refused: every group would be one person, so the query would release "
                   "per-person values (docs/REWRITER.md §5.3); count them with "
                   "COUNT(DISTINCT " +
                   table_->privacy_unit + ") instead",
               NodeLocation(expression));
        return;
      }
      GroupKey key;
      key.normalized = Normalize(expression);
      bool duplicate = false;
      for (const auto& existing : group_keys_) {
        if (SameClearedTree(existing.normalized, key.normalized)) duplicate = true;
      }
      if (duplicate) continue;
      key.rewritten = expression;
      if (!Safe(&key.rewritten)) return;
      if (expression.has_column_ref()) {
        auto name = ColumnName(expression.column_ref());
        if (!name) return;
        const auto* spec = SpecOf(expression.column_ref(), *name);
        if (spec != nullptr && spec->has_public_values()) key.public_values = spec;
      }
      group_keys_.push_back(std::move(key));
    }
  }

  int FindGroupKey(const pb::Node& normalized) const {
    for (size_t i = 0; i < group_keys_.size(); ++i) {
      if (SameClearedTree(group_keys_[i].normalized, normalized)) return static_cast<int>(i);
    }
    return -1;
  }

  // ---- select list -----------------------------------------------------------

  bool ContainsAggregate(const google::protobuf::Message& message) {
    if (message.GetDescriptor() == pb::FuncCall::descriptor() &&
        IsAggregateName(FunctionName(static_cast<const pb::FuncCall&>(message)))) {
      return true;
    }
    return AnyChild(message, [this](const google::protobuf::Message& child) {
      return ContainsAggregate(child);
    });
  }

  std::optional<Aggregate> AnalyseAggregate(const pb::FuncCall& call) {
    std::string schema;
    Aggregate aggregate;
    aggregate.function = FunctionName(call, &schema);
    const std::string& name = aggregate.function;
    const int at = call.location();
    if (call.has_over()) {
      Refuse("42501",
             "the window function " + name + "() OVER (...) is refused over private table " +
                 TableName() +
                 ": it releases a value per row (docs/REWRITER.md §5.2); use GROUP BY",
             at);
      return std::nullopt;
    }
    if (!schema.empty() && schema != "pg_catalog") {
      Refuse("0A000", "aggregate " + schema + "." + name + " is not a pg_catalog aggregate", at);
      return std::nullopt;
    }
    if (call.has_agg_filter()) {
      NotYet("FILTER (WHERE ...) on an aggregate; move the condition into WHERE", at);
      return std::nullopt;
    }
    if (call.agg_order_size() > 0 || call.agg_within_group() || call.func_variadic()) {
      NotYet("ORDER BY / WITHIN GROUP / VARIADIC inside an aggregate", at);
      return std::nullopt;
    }
    if (name == "count") {
      if (call.agg_star()) return aggregate;  // COUNT(*)
      if (call.args_size() != 1 || !call.args(0).has_column_ref()) {
        NotYet("COUNT of an expression; count a column or *", at);
        return std::nullopt;
      }
      auto column = ColumnName(call.args(0).column_ref());
      if (!column) return std::nullopt;
      aggregate.column = *column;
      aggregate.argument = call.args(0);
      if (call.agg_distinct()) {
        if (*column != table_->privacy_unit || IsPublicColumn(call.args(0).column_ref()) ||
            IsJoinedPrivateColumn(call.args(0).column_ref())) {
          NotYet("COUNT(DISTINCT " + *column + "): only COUNT(DISTINCT " + table_->privacy_unit +
                     ") (the privacy unit) is supported; distinct values of another column "
                     "need their own contribution bound",
                 at);
          return std::nullopt;
        }
        aggregate.role = ColumnRole::kCountDistinctUnits;
        return aggregate;
      }
      aggregate.role = ColumnRole::kCount;
      return aggregate;
    }
    static const std::set<std::string> kVariance = {"variance", "var_samp", "var_pop"};
    static const std::set<std::string> kStddev = {"stddev", "stddev_samp", "stddev_pop"};
    if (name == "sum") {
      aggregate.role = ColumnRole::kSum;
    } else if (name == "avg") {
      aggregate.role = ColumnRole::kAvg;
    } else if (kVariance.count(name) > 0) {
      aggregate.role = ColumnRole::kVariance;
    } else if (kStddev.count(name) > 0) {
      aggregate.role = ColumnRole::kStddev;
    } else {
      Refuse(
          "0A000",
          "the aggregate " + name +
              " is not supported over private data: min, max, "
              "percentiles and collecting aggregates release individual values "
              "(docs/REWRITER.md §5.2); supported are count, sum, avg, variance/var_samp/var_pop "
              "and stddev/stddev_samp/stddev_pop",
          at);
      return std::nullopt;
    }
    if (call.agg_distinct()) {
      NotYet(name + "(DISTINCT ...)", at);
      return std::nullopt;
    }
    if (call.args_size() != 1 || !call.args(0).has_column_ref()) {
      NotYet(name + " of an expression; aggregate a column that has bounds in the config", at);
      return std::nullopt;
    }
    auto column = ColumnName(call.args(0).column_ref());
    if (!column) return std::nullopt;
    aggregate.column = *column;
    aggregate.spec = SpecOf(call.args(0).column_ref(), *column);
    aggregate.table = TableOf(call.args(0).column_ref());
    aggregate.argument = call.args(0);
    if (aggregate.spec == nullptr || !aggregate.spec->has_bounds()) {
      Refuse("0A000",
             name + "(" + *column + ") needs bounds: column " + *column + " of " + TableName() +
                 " has no lower/upper in the config, so one person's contribution is unbounded "
                 "(docs/REWRITER.md §7); ask an administrator to add lower and upper bounds for it",
             at);
      return std::nullopt;
    }
    return aggregate;
  }

  void AnalyseTargets() {
    if (select_.target_list_size() == 0) {
      Refuse("0A000",
             "a private query must select at least one aggregate or group key "
             "(docs/REWRITER.md §5.2)",
             -1);
      return;
    }
    for (int i = 0; i < select_.target_list_size() && !refusal_; ++i) {
      const auto& node = select_.target_list(i);
      if (!node.has_res_target()) {
        Refuse("0A000", "unexpected select-list item", -1);
        return;
      }
      const auto& target = node.res_target();
      Target out;
      out.name = target.name().empty() ? DerivedColumnName(target.val()) : target.name();
      if (target.indirection_size() > 0) {
        NotYet("subscripts or field selection in the select list", target.location());
        return;
      }
      const auto& value = target.val();
      if (value.has_column_ref()) {
        if (!ColumnName(value.column_ref())) return;  // refuses * and whole rows
      }
      out.normalized = Normalize(value);
      if (value.has_func_call() && IsAggregateName(FunctionName(value.func_call()))) {
        out.aggregate = AnalyseAggregate(value.func_call());
        if (!out.aggregate) return;
      } else if (ContainsAggregate(value)) {
        NotYet("computing on aggregate results in the select list (" + out.name +
                   "); select the aggregate itself and compute on the released value",
               target.location());
        return;
      } else {
        out.group_key = FindGroupKey(out.normalized);
        if (out.group_key < 0) {
          if (value.has_a_const()) {
            NotYet("constant select-list items (" + out.name + ")", target.location());
          } else if (value.has_func_call() && value.func_call().has_over()) {
            Refuse("42501",
                   "the window function " + out.name + " is refused over private table " +
                       TableName() + ": it computes a value per row (docs/REWRITER.md §5.2)",
                   target.location());
          } else if (MentionsPrivacyUnit(value)) {
            Refuse("42501",
                   "selecting the privacy unit " + table_->privacy_unit + " of " + TableName() +
                       " is refused: it would release who is in the data (docs/REWRITER.md §5.3)",
                   target.location());
          } else {
            Refuse("42501",
                   "select-list item " + out.name +
                       " at its position is neither an aggregate "
                       "nor a GROUP BY key: it would release raw values of private table " +
                       PrivateTableNames() +
                       " (docs/REWRITER.md §5.2); add it to GROUP BY or aggregate it",
                   target.location());
          }
          return;
        }
      }
      targets_.push_back(std::move(out));
    }
  }

  // ---- WHERE, HAVING, ORDER BY, LIMIT ---------------------------------------

  void AnalyseWhere() {
    if (!select_.has_where_clause()) return;
    where_ = select_.where_clause();
    if (ContainsAggregate(where_)) {
      Refuse("42803", "aggregate functions are not allowed in WHERE", NodeLocation(where_));
      return;
    }
    Safe(&where_);
  }

  // The output column an expression in HAVING or ORDER BY stands for.
  int OutputIndex(const pb::Node& node, bool allow_alias) {
    if (allow_alias && node.has_column_ref() && node.column_ref().fields_size() == 1 &&
        node.column_ref().fields(0).has_string()) {
      const std::string& name = node.column_ref().fields(0).string().sval();
      int found = -1;
      for (size_t i = 0; i < targets_.size(); ++i) {
        if (targets_[i].name == name) {
          if (found >= 0) {
            Refuse("42702", "ORDER BY \"" + name + "\" is ambiguous", node.column_ref().location());
            return -2;
          }
          found = static_cast<int>(i);
        }
      }
      if (found >= 0) return found;
    }
    const pb::Node normalized = Normalize(node);
    for (size_t i = 0; i < targets_.size(); ++i) {
      if (SameClearedTree(targets_[i].normalized, normalized)) return static_cast<int>(i);
    }
    // A group key that is not in the select list.
    const int key = FindGroupKey(normalized);
    if (key >= 0) {
      for (size_t i = 0; i < targets_.size(); ++i) {
        if (targets_[i].group_key == key) return static_cast<int>(i);
      }
    }
    return -1;
  }

  std::optional<PostFilter> HavingExpression(const pb::Node& node) {
    PostFilter filter;
    if (node.has_bool_expr()) {
      const auto& expr = node.bool_expr();
      filter.kind = expr.boolop() == pb::AND_EXPR  ? PostFilter::Kind::kAnd
                    : expr.boolop() == pb::OR_EXPR ? PostFilter::Kind::kOr
                                                   : PostFilter::Kind::kNot;
      for (const auto& arg : expr.args()) {
        auto child = HavingExpression(arg);
        if (!child) return std::nullopt;
        filter.children.push_back(std::move(*child));
      }
      return filter;
    }
    if (node.has_null_test()) {
      filter.kind = node.null_test().nulltesttype() == pb::IS_NULL ? PostFilter::Kind::kIsNull
                                                                   : PostFilter::Kind::kIsNotNull;
      filter.column = HavingOperand(node.null_test().arg());
      if (filter.column < 0) return std::nullopt;
      return filter;
    }
    if (node.has_a_expr() && node.a_expr().kind() == pb::AEXPR_OP &&
        node.a_expr().name_size() == 1 && IsComparison(node.a_expr().name(0).string().sval())) {
      const auto& expr = node.a_expr();
      std::string op = expr.name(0).string().sval();
      if (op == "!=") op = "<>";
      const pb::Node* column_side = &expr.lexpr();
      const pb::Node* constant_side = &expr.rexpr();
      const bool constant_left = IsConstant(expr.lexpr());
      if (constant_left) {
        std::swap(column_side, constant_side);
        if (op == "<")
          op = ">";
        else if (op == ">")
          op = "<";
        else if (op == "<=")
          op = ">=";
        else if (op == ">=")
          op = "<=";
      }
      if (!IsConstant(*constant_side)) {
        NotYet(
            "HAVING comparisons between two columns or expressions; compare an output column "
            "with a constant",
            expr.location());
        return std::nullopt;
      }
      filter.kind = PostFilter::Kind::kCompare;
      filter.op = op;
      filter.column = HavingOperand(*column_side);
      if (filter.column < 0) return std::nullopt;
      auto number = ConstantNumber(*constant_side);
      filter.constant_is_numeric = number.has_value();
      if (number) {
        filter.constant = FormatNumber(*number);
      } else {
        filter.constant =
            constant_side->a_const().has_sval() ? constant_side->a_const().sval().sval() : "";
      }
      return filter;
    }
    if (node.has_column_ref() || node.has_func_call()) {
      filter.kind = PostFilter::Kind::kColumnIsTrue;
      filter.column = HavingOperand(node);
      if (filter.column < 0) return std::nullopt;
      return filter;
    }
    NotYet(NodeKind(node) +
               " in HAVING; HAVING may compare output columns with constants, "
               "combined with AND, OR and NOT (docs/REWRITER.md §10)",
           NodeLocation(node));
    return std::nullopt;
  }

  static bool IsConstant(const pb::Node& node) {
    if (ConstantNumber(node)) return true;
    return node.has_a_const() && node.a_const().has_sval();
  }

  int HavingOperand(const pb::Node& node) {
    const int index = OutputIndex(node, /*allow_alias=*/false);
    if (index == -2) return -1;
    if (index < 0) {
      NotYet(
          "this HAVING operand: it must be an aggregate or group key that is also in the "
          "select list, since HAVING runs on the released, noisy rows (docs/REWRITER.md §10)",
          NodeLocation(node));
      return -1;
    }
    return index;
  }

  void AnalyseHaving() {
    if (!select_.has_having_clause()) return;
    auto filter = HavingExpression(select_.having_clause());
    if (filter) plan_.having = std::move(*filter);
  }

  std::optional<int64_t> LimitValue(const pb::Node& node, const char* what) {
    if (node.has_a_const() && node.a_const().isnull()) return std::nullopt;  // LIMIT ALL
    auto number = ConstantNumber(node);
    if (!number || *number < 0 || *number != std::floor(*number) || *number > 9.0e15) {
      Refuse("0A000",
             std::string(what) +
                 " must be a non-negative integer constant in a private query: "
                 "it is applied by dpgate to the released rows (docs/REWRITER.md §10)",
             NodeLocation(node));
      return std::nullopt;
    }
    return static_cast<int64_t>(*number);
  }

  void AnalyseOrderAndLimit() {
    for (const auto& item : select_.sort_clause()) {
      if (!item.has_sort_by()) continue;
      const auto& sort = item.sort_by();
      if (sort.sortby_dir() == pb::SORTBY_USING) {
        NotYet("ORDER BY ... USING", sort.location());
        return;
      }
      int index = -1;
      if (sort.node().has_a_const() && sort.node().a_const().has_ival()) {
        index = sort.node().a_const().ival().ival() - 1;
        if (index < 0 || index >= static_cast<int>(targets_.size())) {
          Refuse("42P10", "ORDER BY position is not in select list", sort.location());
          return;
        }
      } else {
        index = OutputIndex(sort.node(), /*allow_alias=*/true);
        if (index == -2) return;
      }
      if (index < 0) {
        const bool is_random =
            sort.node().has_func_call() && FunctionName(sort.node().func_call()) == "random";
        Refuse(is_random ? "42501" : "0A000",
               is_random ? std::string("ORDER BY random() is refused in a private query: a random "
                                       "order of released groups combined with LIMIT selects "
                                       "groups in a way dpgate cannot account for; order by an "
                                       "output column")
                         : std::string("ORDER BY must name an output column (by name, position or "
                                       "the same expression): dpgate sorts the released, noisy "
                                       "rows (docs/REWRITER.md §10)"),
               sort.location());
        return;
      }
      OrderKey key;
      key.output_column = index;
      key.descending = sort.sortby_dir() == pb::SORTBY_DESC;
      key.nulls_first = sort.sortby_nulls() == pb::SORTBY_NULLS_FIRST ||
                        (sort.sortby_nulls() != pb::SORTBY_NULLS_LAST && key.descending);
      plan_.order_by.push_back(key);
    }
    if (select_.limit_option() == pb::LIMIT_OPTION_WITH_TIES) {
      NotYet("FETCH ... WITH TIES", -1);
      return;
    }
    if (select_.has_limit_count()) plan_.limit = LimitValue(select_.limit_count(), "LIMIT");
    if (!refusal_ && select_.has_limit_offset()) {
      plan_.offset = LimitValue(select_.limit_offset(), "OFFSET");
    }
  }

  // ---- the bounded rewrite (docs/REWRITER.md §8) ------------------------------

  pb::Node UnitColumn() const { return MakeColumnRef({alias_, table_->privacy_unit}); }
  pb::Node TableColumn(const std::string& column) const { return MakeColumnRef({alias_, column}); }
  // The aggregated column: a joined private table's as written, the
  // partitioning table's qualified with its alias.
  pb::Node AggregatedColumn(const Aggregate& aggregate) const {
    if (aggregate.argument.has_column_ref() &&
        IsJoinedPrivateColumn(aggregate.argument.column_ref())) {
      return aggregate.argument;
    }
    return TableColumn(aggregate.column);
  }

  static pb::Node Least(pb::Node a, pb::Node b) {
    std::vector<pb::Node> args;
    args.push_back(std::move(a));
    args.push_back(std::move(b));
    return MakeMinMax(pb::IS_LEAST, std::move(args));
  }
  static pb::Node Greatest(pb::Node a, pb::Node b) {
    std::vector<pb::Node> args;
    args.push_back(std::move(a));
    args.push_back(std::move(b));
    return MakeMinMax(pb::IS_GREATEST, std::move(args));
  }
  static pb::Node Aggregate1(const std::string& name, pb::Node arg) {
    std::vector<pb::Node> args;
    args.push_back(std::move(arg));
    return MakeFunc({"pg_catalog", name}, std::move(args));
  }
  // coalesce(sum(x), 0) clamped to [lo, hi]: a unit's bounded partial sum.
  static pb::Node BoundedSum(pb::Node value, double lo, double hi) {
    pb::Node sum;
    auto* coalesce = sum.mutable_coalesce_expr();
    *coalesce->add_args() = Aggregate1("sum", std::move(value));
    *coalesce->add_args() = MakeInteger(0);
    coalesce->set_location(-1);
    return Least(Greatest(std::move(sum), MakeNumeric(lo)), MakeNumeric(hi));
  }

  int AddQuantity(const std::string& sql_name, pb::Node per_unit,
                  std::vector<pb::Node>* per_unit_targets) {
    per_unit_targets->push_back(MakeResTarget(sql_name, std::move(per_unit)));
    plan_.sql_columns.push_back(sql_name);
    return static_cast<int>(plan_.sql_columns.size()) - 1;
  }

  static pb::Node ParseFixed(const char* sql) {
    // Fixed text with no user input (the dp_bounded CTE's body).
    auto tree = Parse(sql);
    return tree->stmts(0).stmt();
  }

  // The dp_bounded CTE's body, parsed once: it depends on nothing, and
  // parsing it on every rewrite cost a libpg_query round trip. Immutable.
  static const pb::Node& BoundedQuery() {
    static const pb::Node kQuery = ParseFixed(
        "SELECT *, pg_catalog.row_number() OVER (PARTITION BY dp_unit ORDER BY "
        "pg_catalog.random()) AS dp_rank FROM dp_per_unit");
    return kQuery;
  }

  // ---- the shape (docs/REWRITER.md §8.4, §8.5) --------------------------------

  struct FromRelation {
    std::string visible;   // the alias, or the table name when not aliased
    std::string schema;    // as qualified by the resolver
    std::string name;      // the table name
    bool aliased = false;  // an aliased table cannot be named schema.table.column
    std::string qualified() const { return schema + "." + name; }
  };

  static void CollectRelations(const pb::Node& item, std::vector<FromRelation>* out) {
    if (item.has_range_var()) {
      const auto& range = item.range_var();
      out->push_back(FromRelation{range.has_alias() ? range.alias().aliasname() : range.relname(),
                                  range.schemaname(), range.relname(), range.has_alias()});
    } else if (item.has_join_expr()) {
      CollectRelations(item.join_expr().larg(), out);
      CollectRelations(item.join_expr().rarg(), out);
    }
  }

  bool ContainsPrivate(const pb::Node& item) const {
    std::vector<FromRelation> relations;
    CollectRelations(item, &relations);
    for (const auto& relation : relations) {
      if (relation.qualified() == TableName()) return true;
    }
    return false;
  }

  // The relation among `relations` a qualified column reference names, and the
  // column. Unqualified references could resolve to either side of a join, so
  // they prove nothing and are not resolved.
  static std::optional<std::pair<FromRelation, std::string>> ResolveQualified(
      const pb::Node& node, const std::vector<FromRelation>& relations) {
    if (!node.has_column_ref()) return std::nullopt;
    std::vector<std::string> parts;
    for (const auto& field : node.column_ref().fields()) {
      if (!field.has_string()) return std::nullopt;
      parts.push_back(field.string().sval());
    }
    for (const auto& relation : relations) {
      if (parts.size() == 2 && parts[0] == relation.visible) return {{relation, parts[1]}};
      if (parts.size() == 3 && !relation.aliased && parts[0] == relation.schema &&
          parts[1] == relation.name) {
        return {{relation, parts[2]}};
      }
    }
    return std::nullopt;
  }

  static void Conjuncts(const pb::Node& node, std::vector<const pb::Node*>* out) {
    if (node.has_bool_expr() && node.bool_expr().boolop() == pb::AND_EXPR) {
      for (const auto& arg : node.bool_expr().args()) Conjuncts(arg, out);
      return;
    }
    out->push_back(&node);
  }

  static bool IsEquality(const pb::A_Expr& expr) {
    if (expr.kind() != pb::AEXPR_OP) return false;
    if (expr.name_size() == 1) return expr.name(0).string().sval() == "=";
    return expr.name_size() == 2 && expr.name(0).string().sval() == "pg_catalog" &&
           expr.name(1).string().sval() == "=";
  }

  // True when `joined` (a single public table) matches each row of the other
  // side at most once through `condition`: a top-level conjunct equates a
  // column the facts say is unique and NOT NULL in `joined` with a column of
  // the other side of the same type and collation. For a fixed row of the other
  // side that column is one value, and at most one row of `joined` has it
  // (docs/PRIVACY.md §2.3).
  bool EquatesUniqueColumn(const pb::Node& condition, const FromRelation& joined,
                           const std::vector<FromRelation>& others) const {
    std::vector<const pb::Node*> conjuncts;
    Conjuncts(condition, &conjuncts);
    for (const auto* conjunct : conjuncts) {
      if (!conjunct->has_a_expr() || !IsEquality(conjunct->a_expr())) continue;
      const auto& expr = conjunct->a_expr();
      for (int side = 0; side < 2; ++side) {
        const pb::Node& mine = side == 0 ? expr.lexpr() : expr.rexpr();
        const pb::Node& theirs = side == 0 ? expr.rexpr() : expr.lexpr();
        const auto unique = ResolveQualified(mine, {joined});
        const auto other = ResolveQualified(theirs, others);
        if (!unique || !other) continue;
        if (!facts_.IsUniqueNotNull(joined.qualified(), unique->second)) continue;
        const std::string* unique_type = facts_.ColumnType(joined.qualified(), unique->second);
        const std::string* other_type = facts_.ColumnType(other->first.qualified(), other->second);
        if (unique_type != nullptr && other_type != nullptr && *unique_type == *other_type) {
          return true;
        }
      }
    }
    return false;
  }

  // The same for JOIN ... USING (cols): `joined.col = other.col` for each
  // listed column. Which table of the other side holds `col` is decided by the
  // facts' column lists; when any table there has no known columns, or two
  // hold it (a merged USING column), nothing is proven.
  bool UsingUniqueColumn(const pb::JoinExpr& join, const FromRelation& joined,
                         const std::vector<FromRelation>& others) const {
    for (const auto& item : join.using_clause()) {
      if (!item.has_string()) continue;
      const std::string& column = item.string().sval();
      if (!facts_.IsUniqueNotNull(joined.qualified(), column)) continue;
      const std::string* unique_type = facts_.ColumnType(joined.qualified(), column);
      const std::string* other_type = nullptr;
      int holders = 0;
      bool all_known = true;
      for (const auto& other : others) {
        if (facts_.ColumnsWithType(other.qualified()).empty()) all_known = false;
        if (const auto* type = facts_.ColumnType(other.qualified(), column)) {
          ++holders;
          other_type = type;
        }
      }
      if (all_known && holders == 1 && unique_type != nullptr && *unique_type == *other_type) {
        return true;
      }
    }
    return false;
  }

  // docs/REWRITER.md §8.5: true when every row of the private table appears in
  // at most one row of `item`'s result; otherwise `why` says what is not proven.
  // Conservative by construction: a join is accepted only when one side is a
  // single public table matched through a unique column (§8.5 lists the
  // cases); everything else keeps the per-unit shape.
  bool KeepsPrivateRowsSingle(const pb::Node& item, std::string* why) const {
    if (item.has_range_var()) return true;  // the private table itself (public ones are joined)
    if (!item.has_join_expr()) {
      *why = "the FROM clause has an item that is neither a table nor a join";
      return false;
    }
    const auto& join = item.join_expr();
    if (join.is_natural()) {
      *why = "a NATURAL JOIN's columns are not checked";
      return false;
    }
    const bool private_left = ContainsPrivate(join.larg());
    const pb::Node& private_side = private_left ? join.larg() : join.rarg();
    const pb::Node& public_side = private_left ? join.rarg() : join.larg();
    if (!public_side.has_range_var()) {
      *why = "a join whose other side is itself a join";
      return false;
    }
    if (!KeepsPrivateRowsSingle(private_side, why)) return false;
    std::vector<FromRelation> joined_list;
    CollectRelations(public_side, &joined_list);
    const FromRelation& joined = joined_list.front();
    std::vector<FromRelation> others;
    CollectRelations(private_side, &others);
    const bool proven = join.using_clause_size() > 0
                            ? UsingUniqueColumn(join, joined, others)
                            : join.has_quals() && EquatesUniqueColumn(join.quals(), joined, others);
    if (!proven) {
      *why = "the join with " + joined.qualified() +
             " is not on a column known to be unique and NOT NULL there (equated, with the same "
             "type, to a column of the private side), so it could repeat a private row";
    }
    return proven;
  }

  // §8.5: each unit is at most one row of the joined FROM.
  bool UnitIsOneRow(std::string* why) const {
    if (facts_.empty()) {
      *why = "no schema facts (run with facts from the upstream catalog to allow it)";
      return false;
    }
    if (!facts_.IsUniqueNotNull(TableName(), table_->privacy_unit)) {
      *why = "the privacy unit " + table_->privacy_unit +
             " is not known to be unique and NOT NULL in " + TableName();
      return false;
    }
    if (from_.size() != 1) {
      *why = "a comma-separated FROM list (a cross join) can repeat private rows";
      return false;
    }
    return KeepsPrivateRowsSingle(from_.front(), why);
  }

  // Chooses the cheapest shape that is still bounded (issue 4 item 7):
  // per_row when each unit is one row (docs/PRIVACY.md §2.3); otherwise the
  // per-unit shape, without row_number() when no unit can have more than k
  // (unit, group) rows, so that `dp_rank <= k` would keep every row
  // (docs/PRIVACY.md §2.2).
  void ChooseShape(bool all_public_keys) {
    std::string not_per_row;
    if (UnitIsOneRow(&not_per_row)) {
      plan_.shape = PlanShape::kPerRow;
      plan_.shape_reason = table_->privacy_unit + " is unique and NOT NULL in " + TableName() +
                           " and no join repeats its rows: each unit is one row in one group, so "
                           "k = c = 1 and no per-unit step is needed";
      return;
    }
    const std::string suffix = "; not per_row: " + not_per_row;
    if (group_keys_.empty()) {
      plan_.shape = PlanShape::kPerUnitNoRowNumber;
      plan_.shape_reason = "no GROUP BY: one group, so no unit can reach more than k" + suffix;
      return;
    }
    if (all_public_keys) {
      // The IN (declared values) filter (§9.2) leaves at most the cross
      // product of the lists as groups, whatever the data (docs/PRIVACY.md
      // §2.2). Saturate: only "<= k" matters.
      int64_t product = 1;
      for (const auto& key : group_keys_) {
        const auto size = static_cast<int64_t>(key.public_values->values.size());
        product = product > MaxGroups() ? product : product * size;
      }
      if (product <= MaxGroups()) {
        plan_.shape = PlanShape::kPerUnitNoRowNumber;
        plan_.shape_reason = "the declared keys allow " + std::to_string(product) +
                             " groups, at most k = " + std::to_string(MaxGroups()) + suffix;
        return;
      }
    }
    plan_.shape = PlanShape::kPerUnitBounded;
    plan_.shape_reason =
        "a unit may reach more than k groups, so row_number() keeps k of them" + suffix;
  }

  void Build() {
    bool all_public = !group_keys_.empty();
    for (const auto& key : group_keys_) all_public = all_public && key.public_values != nullptr;
    ChooseShape(all_public);
    const bool per_row = plan_.shape == PlanShape::kPerRow;
    // §8.5: in the per-row shape a unit is one row in one group, so the
    // sensitivities use c = 1 and k = 1 (docs/PRIVACY.md §2.3); otherwise a
    // global aggregate has one group (k = 1, §7).
    const int64_t c_bound = per_row ? 1 : MaxRows();
    const double c = static_cast<double>(c_bound);
    const int64_t k = per_row || group_keys_.empty() ? 1 : MaxGroups();
    plan_.dataset = dataset_.name;
    plan_.table = TableName();
    plan_.privacy_unit = table_->privacy_unit;
    for (const auto& joined : joined_private_)
      plan_.joined_tables.push_back(joined.spec->qualified_name());
    plan_.max_groups_contributed = per_row ? 1 : MaxGroups();
    plan_.max_rows_per_group = c_bound;

    // Per-unit shapes: `per_unit_targets` is the dp_per_unit CTE's list and
    // `outer_targets` sums it per group. Per-row: `outer_targets` is the only
    // list and reads the (joined) table directly.
    std::vector<pb::Node> per_unit_targets;
    per_unit_targets.push_back(MakeResTarget("dp_unit", UnitColumn()));
    std::vector<pb::Node> outer_targets;
    std::vector<pb::Node> outer_group;
    std::vector<int> key_sql_column;
    for (size_t i = 0; i < group_keys_.size(); ++i) {
      const std::string name = "dp_g" + std::to_string(i + 1);
      plan_.sql_columns.push_back(name);
      key_sql_column.push_back(static_cast<int>(plan_.sql_columns.size()) - 1);
      if (per_row) {
        outer_targets.push_back(MakeResTarget(name, group_keys_[i].rewritten));
        outer_group.push_back(group_keys_[i].rewritten);
      } else {
        per_unit_targets.push_back(MakeResTarget(name, group_keys_[i].rewritten));
        outer_targets.push_back(MakeResTarget(name, MakeColumnRef({name})));
        outer_group.push_back(MakeColumnRef({name}));
      }
    }
    const auto sensitivity = [k](double per_group) {
      AggregateSensitivity s;
      s.per_group = per_group;
      s.max_groups = k;
      return s;
    };
    // The units column is last; its index is known once every quantity is added.
    std::vector<size_t> units_users;  // output columns that read dp_units
    for (size_t i = 0; i < targets_.size(); ++i) {
      const auto& target = targets_[i];
      OutputColumn column;
      column.name = target.name;
      if (!target.aggregate) {
        column.role = ColumnRole::kGroupKey;
        column.type = ValueType::kFromUpstream;
        column.group_key_sql_column = key_sql_column[target.group_key];
        plan_.columns.push_back(std::move(column));
        continue;
      }
      const auto& aggregate = *target.aggregate;
      column.role = aggregate.role;
      column.source_column = aggregate.column;
      if (aggregate.table != nullptr) column.source_table = aggregate.table->qualified_name();
      const std::string prefix = "dp_c" + std::to_string(i + 1) + "_";
      const auto add = [&](const std::string& kind, pb::Node value, double per_group) {
        NoisedQuantity quantity;
        quantity.kind = kind;
        const std::string sql_name = prefix + kind;
        if (per_row) {
          outer_targets.push_back(MakeResTarget(sql_name, std::move(value)));
          plan_.sql_columns.push_back(sql_name);
          quantity.sql_column = static_cast<int>(plan_.sql_columns.size()) - 1;
        } else {
          quantity.sql_column = AddQuantity(sql_name, std::move(value), &per_unit_targets);
          outer_targets.push_back(
              MakeResTarget(sql_name, Aggregate1("sum", MakeColumnRef({sql_name}))));
        }
        quantity.sensitivity = sensitivity(per_group);
        column.inputs.push_back(quantity);
      };
      // COUNT: a unit's rows in a group, clamped to c (docs/REWRITER.md §7.1).
      // Per row a unit has at most one row: the count needs no clamp (§8.5).
      const auto clamped_count = [&](pb::Node counted) {
        if (per_row) return counted;
        return Least(std::move(counted), MakeInteger(MaxRows()));
      };
      // A unit's partial sum, clamped (§7.3); per row the one clamped value
      // already lies in [lo, hi] ⊆ [min(0, lo), max(0, hi)], so only the
      // group's sum is taken, 0 for a group of NULLs as in the per-unit shape.
      const auto bounded_sum = [&](pb::Node value, double lo, double hi) {
        if (!per_row) return BoundedSum(std::move(value), lo, hi);
        pb::Node sum;
        auto* coalesce = sum.mutable_coalesce_expr();
        *coalesce->add_args() = Aggregate1("sum", std::move(value));
        *coalesce->add_args() = MakeInteger(0);
        coalesce->set_location(-1);
        return sum;
      };
      switch (aggregate.role) {
        case ColumnRole::kCount: {
          column.type = ValueType::kInt8;
          pb::Node count =
              aggregate.column.empty() ? MakeCountStar() : Aggregate1("count", aggregate.argument);
          add("count", clamped_count(std::move(count)), c);
          break;
        }
        case ColumnRole::kCountDistinctUnits: {
          column.type = ValueType::kInt8;
          NoisedQuantity quantity;
          quantity.kind = "units";
          quantity.sensitivity = sensitivity(1);  // §7.2: a unit is one unit
          column.inputs.push_back(quantity);
          units_users.push_back(plan_.columns.size());
          break;
        }
        case ColumnRole::kSum: {
          column.type = ValueType::kFloat8;
          const double lo = *aggregate.spec->lower;
          const double hi = *aggregate.spec->upper;
          column.lower = lo;
          column.upper = hi;
          // §7.3: a unit's partial sum lies in [min(0, c·lo), max(0, c·hi)].
          const double sum_lo = std::min(0.0, c * lo);
          const double sum_hi = std::max(0.0, c * hi);
          add("sum", bounded_sum(ClampColumn(AggregatedColumn(aggregate), lo, hi), sum_lo, sum_hi),
              std::max(std::fabs(sum_lo), std::fabs(sum_hi)));
          break;
        }
        case ColumnRole::kAvg:
        case ColumnRole::kVariance:
        case ColumnRole::kStddev: {
          column.type = ValueType::kFloat8;
          const double lo = *aggregate.spec->lower;
          const double hi = *aggregate.spec->upper;
          const double mid = lo + (hi - lo) / 2;
          const double half = (hi - lo) / 2;
          column.lower = lo;
          column.upper = hi;
          column.midpoint = mid;
          const pb::Node centred =
              MakeOp("-", ClampColumn(AggregatedColumn(aggregate), lo, hi), MakeNumeric(mid));
          // §7.4: re-centred values lie in [-half, half]; c of them per unit.
          add("centred_sum", bounded_sum(centred, -c * half, c * half), c * half);
          if (aggregate.role != ColumnRole::kAvg) {
            // §7.5: squares of re-centred values lie in [0, half²].
            add("centred_sum_of_squares",
                bounded_sum(MakeOp("*", centred, centred), 0, c * half * half), c * half * half);
          }
          add("count", clamped_count(Aggregate1("count", AggregatedColumn(aggregate))), c);
          break;
        }
        case ColumnRole::kGroupKey:
          break;
      }
      plan_.columns.push_back(std::move(column));
    }

    // The unit count per group: partition selection and COUNT(DISTINCT unit).
    // Per unit it counts the per-unit rows; per row (§8.5) it counts rows,
    // which are the distinct units because each unit is at most one row.
    outer_targets.push_back(MakeResTarget("dp_units", MakeCountStar()));
    plan_.sql_columns.emplace_back("dp_units");
    const int units_column = static_cast<int>(plan_.sql_columns.size()) - 1;
    for (const size_t index : units_users) {
      plan_.columns[index].inputs[0].sql_column = units_column;
    }

    // Partition selection (docs/REWRITER.md §9).
    auto& selection = plan_.partition_selection;
    selection.max_groups_contributed = k;
    selection.units_sql_column = units_column;
    if (group_keys_.empty()) {
      selection.kind = PartitionSelection::Kind::kNone;
      selection.budget_weight = 0;
    } else if (all_public) {
      selection.kind = PartitionSelection::Kind::kPublicKeys;
      selection.budget_weight = 0;
      for (const auto& key : group_keys_)
        selection.public_keys.push_back(key.public_values->values);
    } else {
      selection.kind = PartitionSelection::Kind::kThreshold;
    }

    // The rows read: FROM, WHERE, non-NULL units, declared keys only.
    std::vector<pb::Node> conditions;
    if (select_.has_where_clause()) conditions.push_back(where_);
    // §8.2: a NULL unit would pool many people into one "unit". Per row it
    // also drops the rows an outer join extends with NULLs on the private side.
    conditions.push_back(MakeNullTest(UnitColumn(), false));
    for (const auto& key : group_keys_) {
      // §9.2: with declared keys, rows with any other key are dropped here.
      if (key.public_values != nullptr) {
        conditions.push_back(MakeInList(key.rewritten, key.public_values->values));
      }
    }

    if (per_row) {
      // §8.5: one SELECT over the table, clamped per row, grouped by the keys.
      pb::Node direct;
      auto* select = direct.mutable_select_stmt();
      for (auto& target : outer_targets) *select->add_target_list() = std::move(target);
      for (auto& item : from_) *select->add_from_clause() = std::move(item);
      *select->mutable_where_clause() = MakeAnd(std::move(conditions));
      for (auto& key : outer_group) *select->add_group_clause() = std::move(key);
      select->set_limit_option(pb::LIMIT_OPTION_DEFAULT);
      select->set_op(pb::SETOP_NONE);
      statement_ = std::move(direct);
      return;
    }

    // dp_per_unit: one row per (unit, group), clamped.
    pb::Node per_unit;
    auto* inner = per_unit.mutable_select_stmt();
    for (auto& target : per_unit_targets) *inner->add_target_list() = std::move(target);
    for (auto& item : from_) *inner->add_from_clause() = std::move(item);
    *inner->mutable_where_clause() = MakeAnd(std::move(conditions));
    *inner->add_group_clause() = UnitColumn();
    for (const auto& key : group_keys_) *inner->add_group_clause() = key.rewritten;
    inner->set_limit_option(pb::LIMIT_OPTION_DEFAULT);
    inner->set_op(pb::SETOP_NONE);

    pb::Node outer;
    auto* select = outer.mutable_select_stmt();
    auto* with = select->mutable_with_clause();
    const auto add_cte = [with](const std::string& name, pb::Node query) {
      auto* cte = with->add_ctes()->mutable_common_table_expr();
      cte->set_ctename(name);
      cte->set_ctematerialized(pb::CTEMaterializeDefault);
      *cte->mutable_ctequery() = std::move(query);
      cte->set_location(-1);
    };
    add_cte("dp_per_unit", std::move(per_unit));
    const bool bounded = plan_.shape == PlanShape::kPerUnitBounded;
    pb::Node source;
    source.mutable_range_var()->set_relname(bounded ? "dp_bounded" : "dp_per_unit");
    source.mutable_range_var()->set_inh(true);
    source.mutable_range_var()->set_relpersistence("p");
    source.mutable_range_var()->set_location(-1);
    if (bounded) {
      // §8.3: keep at most k groups per unit, chosen at random. (§8.4: in
      // the other per-unit shape no unit has more than k groups, so this
      // filter would keep every row and is left out.)
      add_cte("dp_bounded", BoundedQuery());
      *select->mutable_where_clause() =
          MakeOp("<=", MakeColumnRef({"dp_rank"}), MakeInteger(MaxGroups()));
    }
    with->set_location(-1);
    for (auto& target : outer_targets) *select->add_target_list() = std::move(target);
    *select->add_from_clause() = std::move(source);
    for (auto& key : outer_group) *select->add_group_clause() = std::move(key);
    select->set_limit_option(pb::LIMIT_OPTION_DEFAULT);
    select->set_op(pb::SETOP_NONE);
    statement_ = std::move(outer);
  }

  const pb::SelectStmt& select_;
  const config::Dataset& dataset_;
  // Every private table the query reads (all of one dataset); table_ is the
  // one whose unit partitions the rows (the first in FROM), the others are
  // joined to it on the unit (docs/REWRITER.md §5.5).
  std::vector<const config::TableSpec*> private_tables_;
  const config::TableSpec* table_;
  std::optional<Refusal> refusal_;
  pb::RangeVar range_;
  std::string alias_;
  std::vector<std::string> public_relations_;
  const SchemaFacts& facts_;
  std::vector<pb::Node> from_;         // FROM items, validated and rewritten in place
  std::vector<pb::Node*> join_quals_;  // into from_
  std::vector<std::string> public_aliases_;
  int private_count_ = 0;
  // The other private tables' FROM entries, by visible name.
  struct JoinedPrivate {
    const config::TableSpec* spec;
    std::string alias;
    bool aliased;
  };
  bool primary_preserved_ = true;
  std::vector<JoinedPrivate> joined_private_;
  // Unit equalities proven in JOIN ... ON, to guard after validation.
  struct UnitLink {
    pb::JoinExpr* join;  // into from_
    pb::Node left;
    pb::Node right;
  };
  std::vector<UnitLink> unit_links_;
  std::vector<GroupKey> group_keys_;
  std::vector<Target> targets_;
  pb::Node where_;
  ReleasePlan plan_;
  pb::Node statement_;
};

}  // namespace

std::variant<PrivateRewrite, Refusal> RewritePrivateAggregate(
    const pb::SelectStmt& select, const config::Dataset& dataset,
    std::vector<const config::TableSpec*> private_tables, std::vector<std::string> public_relations,
    const SchemaFacts& facts) {
  PrivateAnalyser analyser(select, dataset, std::move(private_tables), std::move(public_relations),
                           facts);
  return analyser.Run();
}

}  // namespace dpgate::rewriter::internal
