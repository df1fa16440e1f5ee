// Statement classification (docs/REWRITER.md §1–§4): split, parse, resolve
// every relation against the config and the session search_path, apply the
// deny lists, and route SELECTs over private tables to the bounded rewrite.
#include <pg_query.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include "catalog_query.h"
#include "derived_relations.h"
#include "dpgate/mechanisms/budget_split.h"
#include "dpgate/rewriter/rewriter.h"
#include "private_query.h"
#include "tree.h"

namespace dpgate::rewriter {

const char* ToString(StatementClass c) {
  switch (c) {
    case StatementClass::kPrivateAggregate:
      return "private_aggregate";
    case StatementClass::kPublic:
      return "public";
    case StatementClass::kCatalog:
      return "catalog";
    case StatementClass::kSession:
      return "session";
    case StatementClass::kDpgateCommand:
      return "dpgate_command";
    case StatementClass::kRefused:
      return "refused";
  }
  return "refused";
}

const char* ToString(DpgateCommandKind kind) {
  switch (kind) {
    case DpgateCommandKind::kNone:
      return "none";
    case DpgateCommandKind::kSetEpsilon:
      return "set_epsilon";
    case DpgateCommandKind::kSetDelta:
      return "set_delta";
    case DpgateCommandKind::kResetEpsilon:
      return "reset_epsilon";
    case DpgateCommandKind::kResetDelta:
      return "reset_delta";
    case DpgateCommandKind::kShowBudget:
      return "show_budget";
    case DpgateCommandKind::kShowEpsilon:
      return "show_epsilon";
    case DpgateCommandKind::kShowDelta:
      return "show_delta";
    case DpgateCommandKind::kExplainDp:
      return "explain_dp";
  }
  return "none";
}

namespace {

using internal::Lower;
using internal::Refusal;
using internal::pb::Node;
namespace pb = internal::pb;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

bool StartsWith(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

const char* const kCatalogSchema = "pg_catalog";
const char* const kInformationSchema = "information_schema";

// docs/REWRITER.md §3.1: catalog relations that expose data statistics or
// secrets. pg_stats holds most-common values and histograms of every column:
// raw private values. The per-relation statistics views (pg_stat_user_tables
// and kin) are not denied: their counters are exact row counts, but they are
// answered masked, every counter replaced by PostgreSQL's "no activity" value
// (internal::MaskStatisticsViews, §3.3). The other pg_stat_*/pg_statio_*
// views (pg_stat_activity, pg_stat_database, ...) hold counters or query
// texts with no such per-relation shape, and stay denied.
bool IsDeniedCatalogRelation(const std::string& name) {
  static const std::set<std::string> kDenied = {"pg_statistic",
                                                "pg_statistic_ext_data",
                                                "pg_stats",
                                                "pg_stats_ext",
                                                "pg_stats_ext_exprs",
                                                "pg_largeobject",
                                                "pg_largeobject_metadata",
                                                "pg_authid",
                                                "pg_shadow",
                                                "pg_user_mapping",
                                                "pg_user_mappings",
                                                "pg_file_settings",
                                                "pg_hba_file_rules",
                                                "pg_ident_file_mappings",
                                                "pg_subscription"};
  if (internal::IsMaskedStatisticsView(name)) return false;
  return kDenied.count(name) > 0 || StartsWith(name, "pg_stat_") || StartsWith(name, "pg_statio_");
}

// Why a denied catalog relation is denied, for the refusal message.
std::string DeniedCatalogRelationReason(const std::string& name) {
  if (StartsWith(name, "pg_stat_") || StartsWith(name, "pg_statio_")) {
    return "it exposes server activity or statistics (row, scan and block counts, other "
           "sessions' queries) that can reveal private data; of the pg_stat_*/pg_statio_* "
           "views only the per-table, per-index and per-sequence ones (pg_stat_user_tables, "
           "pg_statio_user_indexes, ...) are answered, with their counters masked "
           "(docs/REWRITER.md §3.1, §3.3)";
  }
  return "it exposes column statistics, sizes or secrets that can reveal private data "
         "(docs/REWRITER.md §3.1)";
}

// pg_class carries reltuples/relpages/relallvisible: its ranges are recorded
// so MaskSizeReads can mask those columns (DESIGN.md §2; docs/REWRITER.md §3.3).
bool IsSizeCatalogRelation(const std::string& name) {
  return name == "pg_class";
}

// information_schema views dpgate resolves without qualification.
bool IsInformationSchemaView(const std::string& name) {
  static const std::set<std::string> kViews = {"tables",
                                               "columns",
                                               "schemata",
                                               "views",
                                               "table_constraints",
                                               "key_column_usage",
                                               "referential_constraints",
                                               "constraint_column_usage",
                                               "check_constraints",
                                               "routines",
                                               "parameters",
                                               "sequences",
                                               "triggers",
                                               "domains",
                                               "element_types",
                                               "table_privileges",
                                               "column_privileges",
                                               "role_table_grants",
                                               "character_sets",
                                               "collations",
                                               "enabled_roles",
                                               "applicable_roles"};
  return kViews.count(name) > 0;
}

// information_schema's helper functions (PostgreSQL 15's information_schema.sql):
// SQL functions over catalog values, immutable or stable, not SECURITY DEFINER.
bool IsInformationSchemaFunction(const std::string& name) {
  static const std::set<std::string> kHelpers = {
      "_pg_char_max_length",    "_pg_char_octet_length",
      "_pg_datetime_precision", "_pg_expandarray",
      "_pg_index_position",     "_pg_interval_type",
      "_pg_numeric_precision",  "_pg_numeric_precision_radix",
      "_pg_numeric_scale",      "_pg_truetypid",
      "_pg_truetypmod"};
  return kHelpers.count(name) > 0;
}

// docs/REWRITER.md §3.2: functions refused in every statement class: SQL in a
// string, file and system access, side effects, sleeps, size statistics.
std::string DeniedFunctionReason(const std::string& name) {
  static const std::set<std::string> kSqlInString = {"query_to_xml",
                                                     "query_to_xml_and_xmlschema",
                                                     "query_to_xmlschema",
                                                     "table_to_xml",
                                                     "table_to_xml_and_xmlschema",
                                                     "table_to_xmlschema",
                                                     "cursor_to_xml",
                                                     "cursor_to_xmlschema",
                                                     "database_to_xml",
                                                     "database_to_xml_and_xmlschema",
                                                     "database_to_xmlschema",
                                                     "schema_to_xml",
                                                     "schema_to_xml_and_xmlschema",
                                                     "schema_to_xmlschema",
                                                     "xpath_table",
                                                     "ts_stat",
                                                     "ts_rewrite",
                                                     "crosstab",
                                                     "crosstab2",
                                                     "crosstab3",
                                                     "crosstab4",
                                                     "connectby",
                                                     "normal_rand"};
  if (kSqlInString.count(name) > 0 || StartsWith(name, "dblink")) {
    return "it runs SQL or reads a table named in a string, which would bypass dpgate's "
           "analysis and release raw rows";
  }
  static const std::set<std::string> kFiles = {
      "pg_read_file",  "pg_read_binary_file", "pg_ls_dir",      "pg_stat_file",
      "pg_file_write", "pg_file_rename",      "pg_file_unlink", "pg_logdir_ls"};
  if (kFiles.count(name) > 0 || StartsWith(name, "pg_ls_") || StartsWith(name, "lo_") ||
      name == "loread" || name == "lowrite") {
    return "it reads or writes server files or large objects";
  }
  static const std::set<std::string> kSystem = {"set_config",
                                                "pg_terminate_backend",
                                                "pg_cancel_backend",
                                                "pg_reload_conf",
                                                "pg_rotate_logfile",
                                                "pg_promote",
                                                "pg_switch_wal",
                                                "pg_notify",
                                                "nextval",
                                                "setval",
                                                "txid_current",
                                                "pg_current_xact_id",
                                                "pg_export_snapshot",
                                                "pg_import_snapshot",
                                                "pg_create_restore_point"};
  if (kSystem.count(name) > 0 || StartsWith(name, "pg_logical_") ||
      StartsWith(name, "pg_replication_") || StartsWith(name, "pg_advisory") ||
      StartsWith(name, "pg_try_advisory") || StartsWith(name, "pg_backup_") ||
      StartsWith(name, "pg_create_") || StartsWith(name, "pg_drop_replication")) {
    return "it changes server or session state, or takes locks";
  }
  if (StartsWith(name, "pg_sleep")) return "it sleeps: timing is a side channel";
  // Extensions that read raw pages or per-table statistics (pageinspect,
  // pgstattuple, pg_visibility, pg_freespacemap, amcheck, pg_buffercache).
  static const std::set<std::string> kRawPages = {
      "get_raw_page",   "heap_page_items",      "heap_tuple_infomask_flags",
      "page_header",    "tuple_data_split",     "pg_relpages",
      "pg_freespace",   "pg_buffercache_pages", "verify_heapam",
      "bt_index_check", "bt_index_parent_check"};
  if (kRawPages.count(name) > 0 || StartsWith(name, "pgstat") ||
      StartsWith(name, "pg_visibility") || StartsWith(name, "bt_page") ||
      StartsWith(name, "bt_metap") || StartsWith(name, "brin_") || StartsWith(name, "gin_") ||
      StartsWith(name, "hash_page") || StartsWith(name, "fsm_page")) {
    return "it reads raw table pages or per-table statistics";
  }
  // Per-table activity counters (n_live_tup, n_tup_ins, ...) by oid. The
  // views built on them are answered masked (§3.3), but a call can be
  // anywhere in any expression and BI tools read the views, not these: they
  // stay refused. The size functions (pg_table_size, ...) are not denied:
  // they are masked to NULL (docs/REWRITER.md §3.3).
  if (StartsWith(name, "pg_stat_")) {
    return "it reveals table statistics (row counts and activity of every table, private "
           "ones included)";
  }
  return "";
}

enum class RelationKind { kPrivate, kPublic, kCatalog };

struct ResolvedRelation {
  RelationKind kind = RelationKind::kCatalog;
  std::string schema;
  std::string name;
  const config::Dataset* dataset = nullptr;
  const config::TableSpec* table = nullptr;
};

// The session search_path with "$user" expanded and pg_catalog first unless
// the path lists it explicitly (PostgreSQL's namespace.c rule).
std::vector<std::string> EffectiveSearchPath(const SessionContext& session) {
  std::vector<std::string> path;
  const bool explicit_catalog = std::find(session.search_path.begin(), session.search_path.end(),
                                          kCatalogSchema) != session.search_path.end();
  if (!explicit_catalog) path.emplace_back(kCatalogSchema);
  for (const auto& schema : session.search_path) {
    if (schema == "$user") {
      if (!session.user.empty()) path.push_back(session.user);
      continue;
    }
    path.push_back(schema);
  }
  return path;
}

bool SchemaHasConfiguredTables(const config::Config& config, const std::string& schema) {
  for (const auto& dataset : config.datasets) {
    for (const auto& table : dataset.tables) {
      if (table.schema == schema) return true;
    }
  }
  return false;
}

// Walks a statement's whole tree (every node, every depth), resolving and
// schema-qualifying relations and applying the deny lists.
class Scanner {
 public:
  Scanner(const config::Config& config, const SessionContext& session)
      : config_(config), path_(EffectiveSearchPath(session)), user_(session.user) {
    for (const auto& dataset : config.datasets) {
      for (const auto& table : dataset.tables) {
        if (table.is_public) continue;
        private_names_.push_back(Lower(table.name));
      }
    }
  }

  void Walk(Message* message, const std::vector<std::string>& ctes) {
    if (refusal_) return;
    const auto* descriptor = message->GetDescriptor();
    if (descriptor == pb::SelectStmt::descriptor()) {
      WalkSelect(static_cast<pb::SelectStmt*>(message), ctes);
      return;
    }
    if (descriptor == pb::RangeVar::descriptor()) {
      VisitRangeVar(static_cast<pb::RangeVar*>(message), ctes);
      return;
    }
    if (descriptor == pb::InsertStmt::descriptor() || descriptor == pb::UpdateStmt::descriptor() ||
        descriptor == pb::DeleteStmt::descriptor() || descriptor == pb::MergeStmt::descriptor()) {
      // A data-modifying statement nested in a WITH of a SELECT (§4.3).
      Refuse("42501",
             descriptor->name() +
                 " inside a query is refused: data changes are refused, dpgate is "
                 "read-only",
             -1);
      return;
    }
    if (descriptor == pb::FuncCall::descriptor()) {
      VisitFuncCall(*static_cast<pb::FuncCall*>(message));
      if (refusal_) return;
    }
    WalkFields(message, ctes, nullptr);
  }

  const std::optional<Refusal>& refusal() const { return refusal_; }
  const std::vector<ResolvedRelation>& relations() const { return relations_; }
  const std::vector<internal::ClassReference>& class_references() const {
    return class_references_;
  }
  // The ranges naming a masked statistics view (internal::IsMaskedStatisticsView).
  const std::vector<std::string>& statistics_views() const { return statistics_views_; }

 private:
  void Refuse(std::string code, std::string message, int location) {
    if (!refusal_) refusal_ = Refusal{std::move(code), std::move(message), location};
  }

  void WalkFields(Message* message, const std::vector<std::string>& ctes,
                  const FieldDescriptor* skip) {
    const auto* reflection = message->GetReflection();
    for (const auto* field : internal::ChildFields(*message)) {
      if (refusal_) break;
      if (field == skip) continue;
      if (field->is_repeated()) {
        for (int j = 0; j < reflection->FieldSize(*message, field) && !refusal_; ++j) {
          Walk(reflection->MutableRepeatedMessage(message, field, j), ctes);
        }
      } else if (reflection->HasField(*message, field)) {
        Walk(reflection->MutableMessage(message, field), ctes);
      }
    }
  }

  // CTE scoping (docs/REWRITER.md §2.3): a non-recursive CTE sees only the
  // CTEs before it; WITH RECURSIVE makes all of them visible to each other;
  // the statement body sees all. A name that is not a visible CTE is a
  // relation and is resolved like any other.
  void WalkSelect(pb::SelectStmt* select, const std::vector<std::string>& outer) {
    if (select->has_into_clause()) {
      Refuse("0A000", "SELECT INTO is refused: it creates a table, and dpgate is read-only",
             select->into_clause().has_rel() ? select->into_clause().rel().location() : -1);
      return;
    }
    if (select->locking_clause_size() > 0) {
      Refuse("0A000",
             "SELECT ... FOR UPDATE/SHARE is refused: it takes row locks, and dpgate's upstream "
             "connections are read-only; remove the locking clause",
             -1);
      return;
    }
    std::vector<std::string> visible = outer;
    if (select->has_with_clause()) {
      auto* with = select->mutable_with_clause();
      std::vector<std::string> names;
      for (const auto& cte : with->ctes()) names.push_back(cte.common_table_expr().ctename());
      for (int i = 0; i < with->ctes_size() && !refusal_; ++i) {
        std::vector<std::string> scope = outer;
        const int upto = with->recursive() ? static_cast<int>(names.size()) : i;
        scope.insert(scope.end(), names.begin(), names.begin() + upto);
        Walk(with->mutable_ctes(i), scope);
      }
      visible.insert(visible.end(), names.begin(), names.end());
    }
    WalkFields(select, visible, pb::SelectStmt::descriptor()->FindFieldByName("with_clause"));
  }

  void VisitRangeVar(pb::RangeVar* range, const std::vector<std::string>& ctes) {
    const std::string display = range->schemaname().empty()
                                    ? range->relname()
                                    : range->schemaname() + "." + range->relname();
    if (!range->catalogname().empty()) {
      Refuse("0A000",
             "relation " + range->catalogname() + "." + display +
                 " is refused: cross-database references are not supported",
             range->location());
      return;
    }
    if (range->schemaname().empty() &&
        std::find(ctes.begin(), ctes.end(), range->relname()) != ctes.end()) {
      return;  // a CTE reference, not a relation
    }
    auto resolved = Resolve(*range);
    if (!resolved) return;                    // refused inside Resolve
    range->set_schemaname(resolved->schema);  // pin: the upstream cannot resolve it differently
    if (resolved->kind == RelationKind::kCatalog && IsSizeCatalogRelation(resolved->name)) {
      internal::ClassReference reference;
      reference.name = range->has_alias() ? range->alias().aliasname() : range->relname();
      reference.renames_columns = range->has_alias() && range->alias().colnames_size() > 0;
      class_references_.push_back(std::move(reference));
    }
    if (resolved->kind == RelationKind::kCatalog && resolved->schema == kCatalogSchema &&
        internal::IsMaskedStatisticsView(resolved->name)) {
      statistics_views_.push_back(resolved->name);
    }
    relations_.push_back(*resolved);
  }

  std::optional<ResolvedRelation> ResolveIn(const std::string& schema, const std::string& name,
                                            int location) {
    if (schema == kCatalogSchema) {
      if (IsDeniedCatalogRelation(name)) {
        Refuse("42501",
               "relation pg_catalog." + name + " is denied: " + DeniedCatalogRelationReason(name),
               location);
        return std::nullopt;
      }
      return ResolvedRelation{RelationKind::kCatalog, schema, name, nullptr, nullptr};
    }
    if (schema == kInformationSchema) {
      return ResolvedRelation{RelationKind::kCatalog, schema, name, nullptr, nullptr};
    }
    if (schema == "pg_temp" || StartsWith(schema, "pg_temp_") || StartsWith(schema, "pg_toast")) {
      Refuse("42501",
             "relation " + schema + "." + name +
                 " is refused: temporary and TOAST schemas are not readable through dpgate",
             location);
      return std::nullopt;
    }
    auto found = config_.FindTable(schema, name);
    if (!found) return std::nullopt;
    return ResolvedRelation{
        found->table->is_public ? RelationKind::kPublic : RelationKind::kPrivate, schema, name,
        found->dataset, found->table};
  }

  std::string NotConfigured(const std::string& display) const {
    return "relation " + display +
           " is not configured in dpgate: ask an administrator to add it to the config as public "
           "or private";
  }

  // docs/REWRITER.md §2: PostgreSQL's resolution, restricted to what the
  // config describes; ambiguity is refused, never guessed.
  std::optional<ResolvedRelation> Resolve(const pb::RangeVar& range) {
    const std::string& name = range.relname();
    if (!range.schemaname().empty()) {
      auto resolved = ResolveIn(range.schemaname(), name, range.location());
      if (!resolved && !refusal_) {
        Refuse("42501", NotConfigured(range.schemaname() + "." + name), range.location());
      }
      return resolved;
    }
    std::vector<std::string> passed;  // earlier schemas that could hold an unconfigured `name`
    const auto ambiguous = [&](const std::string& schema) {
      Refuse("42501",
             "relation " + name + " is ambiguous: it resolves to " + schema + "." + name +
                 " but schema " + passed.front() +
                 " comes first in the search_path and could hold an unconfigured relation of "
                 "that name; write " +
                 schema + "." + name + " explicitly",
             range.location());
      return std::nullopt;
    };
    for (const auto& schema : path_) {
      if (schema == kCatalogSchema) {
        // Every relation of pg_catalog is named pg_*; other names cannot be there.
        if (!StartsWith(name, "pg_")) continue;
        if (!passed.empty()) return ambiguous(schema);
        return ResolveIn(schema, name, range.location());
      }
      if (schema == kInformationSchema) {
        if (!IsInformationSchemaView(name)) continue;
        if (!passed.empty()) return ambiguous(schema);
        return ResolveIn(schema, name, range.location());
      }
      if (schema == "pg_temp" || StartsWith(schema, "pg_temp_")) continue;
      auto resolved = ResolveIn(schema, name, range.location());
      if (refusal_) return std::nullopt;
      if (resolved) {
        if (!passed.empty()) return ambiguous(schema);
        return resolved;
      }
      // "$user" expands to a schema the config knows nothing about: dpgate
      // pins and qualifies every relation, so such a schema is skipped
      // (documented in docs/REWRITER.md §2.2); any other schema on the path
      // passed SET search_path validation and holds configured tables.
      if (schema == user_ && !SchemaHasConfiguredTables(config_, schema)) continue;
      passed.push_back(schema);
    }
    Refuse("42501", NotConfigured(name), range.location());
    return std::nullopt;
  }

  // A string constant anywhere inside a function's arguments that names a
  // private table could be SQL in a string (docs/REWRITER.md §3.2).
  void CheckStringArguments(const Message& message, const std::string& function, int location) {
    if (refusal_) return;
    if (message.GetDescriptor() == pb::A_Const::descriptor()) {
      const auto& constant = static_cast<const pb::A_Const&>(message);
      if (!constant.has_sval()) return;
      const std::string text = Lower(constant.sval().sval());
      for (const auto& table : private_names_) {
        size_t pos = text.find(table);
        while (pos != std::string::npos) {
          const auto is_ident = [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '$';
          };
          const bool left_ok = pos == 0 || !is_ident(text[pos - 1]);
          const bool right_ok =
              pos + table.size() >= text.size() || !is_ident(text[pos + table.size()]);
          if (left_ok && right_ok) {
            std::string message = "function " + function;
            message += " is refused: its string argument names the private table ";
            message += table;
            message +=
                "; SQL or table names in strings bypass dpgate's analysis (docs/REWRITER.md §3.2)";
            if (internal::IsSizeFunctionName(function)) {
              // Masking would answer NULL, but this rule comes first; say why
              // the size call itself is not forwarded and how BI tools call it.
              message +=
                  "; unmasked it reveals table statistics or sizes, and dpgate masks size "
                  "calls to NULL only after this check: pass an oid (c.oid) instead";
            }
            Refuse("42501", std::move(message), location);
            return;
          }
          pos = text.find(table, pos + 1);
        }
      }
      return;
    }
    internal::AnyChild(message, [this, &function, location](const Message& child) {
      CheckStringArguments(child, function, location);
      return false;
    });
  }

  void VisitFuncCall(const pb::FuncCall& call) {
    std::string schema;
    const std::string name = internal::FunctionName(call, &schema);
    // Default deny for functions too: the upstream search_path is pinned to
    // pg_catalog (docs/PROXY.md §1), so an unqualified name is a built-in;
    // a name qualified with another schema is a user-defined function, which
    // could read a private table on the analyst's behalf (docs/REWRITER.md §3.2).
    // The parser has already folded unquoted names to lower case, so the
    // comparison is exact: a quoted "PG_CATALOG" is another schema, which
    // anyone with CREATE on the database could make. information_schema's
    // own helpers (JDBC's getPrimaryKeys calls _pg_expandarray) are
    // built-ins too: plain SQL over the catalogs, created by initdb.
    if (!schema.empty() && schema != "pg_catalog" &&
        !(schema == "information_schema" && IsInformationSchemaFunction(name))) {
      Refuse("42501",
             "function " + schema + "." + name +
                 " is refused: dpgate runs only PostgreSQL's built-in functions (pg_catalog); a "
                 "user-defined function could read private tables on your behalf "
                 "(docs/REWRITER.md §3.2)",
             call.location());
      return;
    }
    const std::string why = DeniedFunctionReason(name);
    if (!why.empty()) {
      Refuse("42501", "function " + name + " is denied: " + why + " (docs/REWRITER.md §3.2)",
             call.location());
      return;
    }
    for (const auto& arg : call.args()) CheckStringArguments(arg, name, call.location());
  }

  const config::Config& config_;
  std::vector<std::string> path_;
  std::string user_;
  std::vector<std::string> private_names_;
  std::optional<Refusal> refusal_;
  std::vector<ResolvedRelation> relations_;
  std::vector<internal::ClassReference> class_references_;
  std::vector<std::string> statistics_views_;
};

// ---- statement-level helpers ----------------------------------------------

struct Context {
  std::string_view sql;  // the whole query string (locations are offsets into it)
  const config::Config& config;
  const SessionContext& session;
  int32_t version;
  const SchemaFacts& facts;
};

StatementResult Refused(StatementResult result, const Context& context, const Refusal& refusal) {
  result.statement_class = StatementClass::kRefused;
  std::string message = refusal.message;
  if (refusal.location >= 0) {
    message = "at " + internal::Position(context.sql, refusal.location) + ": " + message;
  }
  result.reason = MakeError(refusal.code, message);
  result.rewritten_sql.clear();
  result.plan.reset();
  return result;
}

StatementResult RefusedText(StatementResult result, const Context& context, std::string code,
                            std::string message) {
  return Refused(std::move(result), context, Refusal{std::move(code), std::move(message), -1});
}

// The outcome of scanning and, for private tables, rewriting one SELECT.
struct SelectOutcome {
  StatementClass statement_class = StatementClass::kRefused;
  std::optional<Refusal> refusal;
  Node statement;  // qualified (public/catalog) or rewritten (private)
  std::optional<ReleasePlan> plan;
  std::string dataset;
  std::vector<std::string> relations;
  bool reads_size_catalog = false;
};

SelectOutcome AnalyseSelect(Node statement, const Context& context) {
  SelectOutcome outcome;
  Scanner scanner(context.config, context.session);
  scanner.Walk(&statement, {});
  if (scanner.refusal()) {
    outcome.refusal = scanner.refusal();
    return outcome;
  }
  // Table sizes are masked in every statement, not only for private tables
  // (DESIGN.md §2; docs/REWRITER.md §3.3): what cannot be masked by
  // substitution is refused here, so the proxy never sees a size read.
  if (auto why = internal::MaskSizeReads(&statement, scanner.class_references())) {
    outcome.reads_size_catalog = true;
    outcome.refusal = Refusal{"0A000", std::move(*why), -1};
    return outcome;
  }
  const ResolvedRelation* private_relation = nullptr;
  std::vector<const config::TableSpec*> private_tables;
  bool any_public = false;
  for (const auto& relation : scanner.relations()) {
    outcome.relations.push_back(relation.schema + "." + relation.name);
    if (relation.kind == RelationKind::kPublic) any_public = true;
    if (relation.kind != RelationKind::kPrivate) continue;
    // Each dataset has its own privacy units and budget: a row joining two
    // datasets' tables cannot be charged to one (docs/REWRITER.md §5.5).
    if (private_relation != nullptr && private_relation->dataset != relation.dataset) {
      outcome.refusal = Refusal{"0A000",
                                "not yet supported: a query over private tables of two datasets (" +
                                    private_relation->schema + "." + private_relation->name +
                                    " in " + private_relation->dataset->name + ", " +
                                    relation.schema + "." + relation.name + " in " +
                                    relation.dataset->name + "); query one dataset at a time",
                                -1};
      return outcome;
    }
    if (private_relation == nullptr) private_relation = &relation;
    if (std::find(private_tables.begin(), private_tables.end(), relation.table) ==
        private_tables.end()) {
      private_tables.push_back(relation.table);
    }
  }
  if (private_relation == nullptr) {
    outcome.statement_class = any_public ? StatementClass::kPublic : StatementClass::kCatalog;
    // The upstream search_path is pinned to pg_catalog: calls whose answer
    // depends on it are answered for the client's session (§4.4).
    internal::SubstituteSessionFunctions(
        &statement, internal::MakeSessionPath(context.config, context.session));
    // Last, so no other rewrite walks the replacements: the per-relation
    // statistics views become subqueries with every counter constant (§3.3).
    const auto& views = scanner.statistics_views();
    if (auto why = internal::MaskStatisticsViews(&statement, static_cast<int>(views.size()))) {
      outcome.refusal = Refusal{"0A000", std::move(*why), -1};
      return outcome;
    }
    outcome.statement = std::move(statement);
    return outcome;
  }
  if (!scanner.statistics_views().empty()) {
    // A private aggregate's validator accepts only its own shape (§5); the
    // masked views are a catalog-query convenience for BI tools, never an
    // input to a private query, which stays refused as before.
    outcome.refusal = Refusal{
        "42501",
        "relation pg_catalog." + scanner.statistics_views().front() +
            " is refused in a query over the private table " + private_relation->schema + "." +
            private_relation->name +
            ": the statistics views are answered (masked) only in queries that read no private "
            "table; query it separately (docs/REWRITER.md §3.3)",
        -1};
    return outcome;
  }
  outcome.dataset = private_relation->dataset->name;
  std::vector<std::string> public_relations;
  for (const auto& relation : scanner.relations()) {
    if (relation.kind == RelationKind::kPublic)
      public_relations.push_back(relation.schema + "." + relation.name);
  }
  // Subqueries and CTEs in FROM that only project and filter are merged
  // first, so the bounded rewrite checks one flat FROM (docs/REWRITER.md §5.4).
  if (auto refusal = internal::InlineDerivedRelations(statement.mutable_select_stmt())) {
    outcome.refusal = std::move(*refusal);
    return outcome;
  }
  auto rewritten =
      internal::RewritePrivateAggregate(statement.select_stmt(), *private_relation->dataset,
                                        private_tables, public_relations, context.facts);
  if (auto* refusal = std::get_if<Refusal>(&rewritten)) {
    outcome.refusal = *refusal;
    return outcome;
  }
  auto& rewrite = std::get<internal::PrivateRewrite>(rewritten);
  outcome.statement_class = StatementClass::kPrivateAggregate;
  outcome.statement = std::move(rewrite.statement);
  outcome.plan = std::move(rewrite.plan);
  return outcome;
}

std::optional<double> NumericArgument(const Node& node) {
  if (!node.has_a_const()) return std::nullopt;
  const auto& constant = node.a_const();
  std::string text;
  if (constant.has_ival()) return static_cast<double>(constant.ival().ival());
  if (constant.has_fval()) text = constant.fval().fval();
  if (constant.has_sval()) text = constant.sval().sval();
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == nullptr || *end != '\0' || !std::isfinite(value)) return std::nullopt;
  return value;
}

// The text value of a SET argument (identifier or string or number).
std::optional<std::string> TextArgument(const Node& node) {
  if (!node.has_a_const()) return std::nullopt;
  const auto& constant = node.a_const();
  if (constant.has_sval()) return constant.sval().sval();
  if (constant.has_ival()) return std::to_string(constant.ival().ival());
  if (constant.has_fval()) return constant.fval().fval();
  if (constant.has_boolval()) return std::string(constant.boolval().boolval() ? "on" : "off");
  return std::nullopt;
}

bool IsFalseSetting(const std::string& value) {
  const std::string v = Lower(value);
  return v == "off" || v == "false" || v == "0" || v == "no" || v == "f" || v == "of";
}

// docs/REWRITER.md §4.1: session settings a client may change.
bool IsAllowedSetting(const std::string& name) {
  static const std::set<std::string> kAllowed = {"application_name",
                                                 "client_encoding",
                                                 "names",
                                                 "datestyle",
                                                 "timezone",
                                                 "extra_float_digits",
                                                 "intervalstyle",
                                                 "statement_timeout",
                                                 "lock_timeout",
                                                 "idle_in_transaction_session_timeout",
                                                 "search_path",
                                                 "transaction_isolation",
                                                 "default_transaction_isolation",
                                                 "transaction_read_only",
                                                 "transaction_deferrable",
                                                 "bytea_output",
                                                 "client_min_messages",
                                                 "standard_conforming_strings",
                                                 "transaction",
                                                 "session characteristics"};
  return kAllowed.count(name) > 0;
}

// Settings SHOW may read besides the allowed ones: read-only server facts
// that drivers ask for.
bool IsShowableSetting(const std::string& name) {
  static const std::set<std::string> kShowable = {"server_version",
                                                  "server_version_num",
                                                  "server_encoding",
                                                  "integer_datetimes",
                                                  "is_superuser",
                                                  "session_authorization",
                                                  "max_identifier_length",
                                                  "lc_collate",
                                                  "lc_ctype",
                                                  "lc_messages",
                                                  "lc_monetary",
                                                  "lc_numeric",
                                                  "lc_time",
                                                  "transaction isolation level",
                                                  "default_transaction_read_only",
                                                  "in_hot_standby",
                                                  "max_connections"};
  return kShowable.count(name) > 0 || IsAllowedSetting(name);
}

std::string RefusedSettingReason(const std::string& name) {
  if (name == "role" || name == "session_authorization" || name == "session authorization") {
    return "changing the role would run queries with another role's privileges";
  }
  if (name == "default_transaction_read_only" || name == "session_replication_role") {
    return "dpgate's upstream sessions must stay read-only and keep their triggers";
  }
  return "it is not on dpgate's allow-list of session settings (docs/REWRITER.md §4.1)";
}

// Session statements name no relation, so the client's own text is what was
// validated and is forwarded as is (the deparser would turn SET values into
// identifiers, which PostgreSQL truncates to 63 bytes).
std::string SessionText(const StatementResult& result) {
  std::string text = result.original_sql;
  while (!text.empty() &&
         (text.back() == ';' || std::isspace(static_cast<unsigned char>(text.back())))) {
    text.pop_back();
  }
  const size_t start = text.find_first_not_of(" \t\r\n");
  return start == std::string::npos ? std::string() : text.substr(start);
}

std::vector<std::string> DefaultSearchPath() {
  return {"$user", "public"};
}

StatementResult ClassifySearchPath(StatementResult result, const Context& context,
                                   const pb::VariableSetStmt& set) {
  result.statement_class = StatementClass::kSession;
  if (set.kind() == pb::VAR_RESET || set.kind() == pb::VAR_SET_DEFAULT ||
      set.kind() == pb::VAR_RESET_ALL) {
    result.new_search_path = DefaultSearchPath();
    return result;
  }
  std::vector<std::string> path;
  for (const auto& arg : set.args()) {
    auto text = TextArgument(arg);
    if (!text) {
      return RefusedText(std::move(result), context, "22023",
                         "SET search_path: every element must be a schema name");
    }
    const std::string& schema = *text;
    if (schema == "pg_temp" || StartsWith(schema, "pg_temp_")) {
      return RefusedText(std::move(result), context, "42501",
                         "SET search_path: schema " + schema +
                             " is refused: temporary schemas are not readable through dpgate");
    }
    if (schema != "$user" && schema != kCatalogSchema && schema != kInformationSchema &&
        !SchemaHasConfiguredTables(context.config, schema)) {
      return RefusedText(std::move(result), context, "42501",
                         "SET search_path: schema " + schema +
                             " holds no table configured in dpgate; the path may list only "
                             "pg_catalog, information_schema and schemas with configured tables");
    }
    path.push_back(schema);
  }
  result.new_search_path = std::move(path);
  return result;  // answered by the proxy: never forwarded (docs/REWRITER.md §2.1)
}

StatementResult ClassifyDpSetting(StatementResult result, const Context& context,
                                  const pb::VariableSetStmt& set, const std::string& name) {
  result.statement_class = StatementClass::kDpgateCommand;
  const bool is_epsilon = name == "dp.epsilon";
  if (!is_epsilon && name != "dp.delta") {
    return RefusedText(
        std::move(result), context, "42704",
        "unrecognized dpgate setting " + name + ": dpgate knows dp.epsilon and dp.delta");
  }
  if (set.kind() == pb::VAR_RESET || set.kind() == pb::VAR_SET_DEFAULT) {
    result.command = is_epsilon ? DpgateCommandKind::kResetEpsilon : DpgateCommandKind::kResetDelta;
    return result;
  }
  if (set.kind() != pb::VAR_SET_VALUE || set.args_size() != 1) {
    return RefusedText(std::move(result), context, "22023",
                       "SET " + name + " takes exactly one number");
  }
  auto value = NumericArgument(set.args(0));
  if (!value) {
    return RefusedText(std::move(result), context, "22023", "SET " + name + " takes a number");
  }
  if (is_epsilon) {
    if (!(*value > 0) || *value > context.config.query.max_epsilon) {
      return RefusedText(std::move(result), context, "22023",
                         "SET dp.epsilon = " + internal::FormatNumber(*value) +
                             ": epsilon must be > 0 and at most the configured maximum " +
                             internal::FormatNumber(context.config.query.max_epsilon));
    }
    result.command = DpgateCommandKind::kSetEpsilon;
  } else {
    if (!(*value >= 0) || !(*value < 1)) {
      return RefusedText(
          std::move(result), context, "22023",
          "SET dp.delta = " + internal::FormatNumber(*value) + ": delta must be in [0, 1)");
    }
    result.command = DpgateCommandKind::kSetDelta;
  }
  result.command_value = value;
  return result;
}

Result<StatementResult> ClassifySet(StatementResult result, const Context& context,
                                    const Node& node) {
  const auto& set = node.variable_set_stmt();
  const std::string name = Lower(set.name());
  if (StartsWith(name, "dp.")) return ClassifyDpSetting(std::move(result), context, set, name);
  if (set.kind() == pb::VAR_RESET_ALL) {
    result.statement_class = StatementClass::kSession;
    result.new_search_path = DefaultSearchPath();
    result.rewritten_sql = SessionText(result);
    return result;
  }
  if (!IsAllowedSetting(name)) {
    return RefusedText(std::move(result), context, "42501",
                       "SET/RESET " + set.name() + " is refused: " + RefusedSettingReason(name));
  }
  if (name == "search_path") return ClassifySearchPath(std::move(result), context, set);
  // Read-only must stay on; standard_conforming_strings must stay on, or the
  // upstream would read the backslashes in dpgate's deparsed SQL differently.
  for (const auto& arg : set.args()) {
    if (arg.has_def_elem()) {
      const auto& option = arg.def_elem();
      if (option.defname() == "transaction_read_only" && option.has_arg()) {
        auto text = TextArgument(option.arg());
        if (text && IsFalseSetting(*text)) {
          return RefusedText(std::move(result), context, "42501",
                             "READ WRITE is refused: dpgate's upstream sessions are read-only");
        }
      }
      continue;
    }
    auto text = TextArgument(arg);
    if ((name == "transaction_read_only" || name == "standard_conforming_strings") && text &&
        IsFalseSetting(*text)) {
      return RefusedText(std::move(result), context, "42501",
                         "SET " + set.name() + " = " + *text +
                             " is refused: dpgate's upstream sessions must keep it on");
    }
  }
  result.statement_class = StatementClass::kSession;
  result.rewritten_sql = SessionText(result);
  return result;
}

Result<StatementResult> ClassifyShow(StatementResult result, const Context& context,
                                     const Node& node) {
  const std::string name = Lower(node.variable_show_stmt().name());
  if (StartsWith(name, "dp.")) {
    result.statement_class = StatementClass::kDpgateCommand;
    if (name == "dp.budget") {
      result.command = DpgateCommandKind::kShowBudget;
    } else if (name == "dp.epsilon") {
      result.command = DpgateCommandKind::kShowEpsilon;
    } else if (name == "dp.delta") {
      result.command = DpgateCommandKind::kShowDelta;
    } else {
      return RefusedText(std::move(result), context, "42704",
                         "unrecognized dpgate setting " + name +
                             ": SHOW knows dp.budget, dp.epsilon and dp.delta");
    }
    return result;
  }
  if (!IsShowableSetting(name)) {
    return RefusedText(std::move(result), context, "42501",
                       "SHOW " + name + " is refused: " + RefusedSettingReason(name));
  }
  result.statement_class = StatementClass::kSession;
  if (name == "search_path") {
    // The upstream's path is pinned; the client's is dpgate's (§2.1, §4.4).
    auto text = internal::Deparse(
        internal::ShowSearchPathQuery(internal::MakeSessionPath(context.config, context.session)),
        context.version);
    if (!text) return text.error();
    result.rewritten_sql = *text;
    return result;
  }
  result.rewritten_sql = SessionText(result);
  return result;
}

Result<StatementResult> ClassifyTransaction(StatementResult result, const Context& context,
                                            const Node& node) {
  const auto& transaction = node.transaction_stmt();
  switch (transaction.kind()) {
    case pb::TRANS_STMT_PREPARE:
    case pb::TRANS_STMT_COMMIT_PREPARED:
    case pb::TRANS_STMT_ROLLBACK_PREPARED:
      return RefusedText(std::move(result), context, "0A000",
                         "two-phase commit (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED) is "
                         "refused: dpgate sessions are read-only");
    default:
      break;
  }
  for (const auto& option : transaction.options()) {
    if (!option.has_def_elem()) continue;
    if (option.def_elem().defname() == "transaction_read_only" && option.def_elem().has_arg()) {
      auto text = TextArgument(option.def_elem().arg());
      if (text && IsFalseSetting(*text)) {
        return RefusedText(std::move(result), context, "42501",
                           "READ WRITE is refused: dpgate's upstream sessions are read-only");
      }
    }
  }
  switch (transaction.kind()) {
    case pb::TRANS_STMT_BEGIN:
    case pb::TRANS_STMT_START:
      result.transaction = TransactionControl::kBegin;
      break;
    case pb::TRANS_STMT_COMMIT:
      result.transaction = TransactionControl::kCommit;
      break;
    case pb::TRANS_STMT_ROLLBACK:
      result.transaction = TransactionControl::kRollback;
      break;
    case pb::TRANS_STMT_SAVEPOINT:
      result.transaction = TransactionControl::kSavepoint;
      break;
    case pb::TRANS_STMT_RELEASE:
      result.transaction = TransactionControl::kRelease;
      break;
    case pb::TRANS_STMT_ROLLBACK_TO:
      result.transaction = TransactionControl::kRollbackTo;
      break;
    default:
      break;
  }
  result.transaction_chain = transaction.chain();
  result.savepoint = transaction.savepoint_name();
  result.statement_class = StatementClass::kSession;
  result.rewritten_sql = SessionText(result);
  return result;
}

// Why a statement kind is refused (docs/REWRITER.md §4.3).
std::string RefusedStatementReason(const Node& node) {
  switch (node.node_case()) {
    case Node::kInsertStmt:
    case Node::kUpdateStmt:
    case Node::kDeleteStmt:
    case Node::kMergeStmt:
      return "data changes are refused: dpgate is read-only";
    case Node::kCopyStmt:
      return "COPY is refused: it moves raw rows in or out of tables";
    case Node::kListenStmt:
    case Node::kUnlistenStmt:
    case Node::kNotifyStmt:
      return "LISTEN/NOTIFY is refused: notifications carry unaudited payloads";
    case Node::kCallStmt:
    case Node::kDoStmt:
    case Node::kCreateFunctionStmt:
      return "running or defining procedural code is refused: dpgate cannot analyse what it reads";
    case Node::kVacuumStmt:
      return "VACUUM/ANALYZE is refused: maintenance commands change the server, and ANALYZE "
             "writes column statistics";
    case Node::kLockStmt:
      return "LOCK is refused: dpgate's upstream connections do not take locks";
    default:
      return "only SELECT, EXPLAIN, SET/SHOW/RESET of allowed settings, transaction control, "
             "DISCARD and DEALLOCATE pass through dpgate; DDL, DML and administration commands "
             "are refused";
  }
}

std::string StatementKindName(const Node& node) {
  const auto* field = Node::descriptor()->FindFieldByNumber(static_cast<int>(node.node_case()));
  if (field == nullptr || field->message_type() == nullptr) return "unknown statement";
  return field->message_type()->name();
}

Result<StatementResult> ClassifyExplain(StatementResult result, const Context& context, Node node) {
  auto* explain = node.mutable_explain_stmt();
  bool dp = false;
  for (const auto& option : explain->options()) {
    if (option.has_def_elem() && Lower(option.def_elem().defname()) == "dp") dp = true;
  }
  if (!explain->has_query() || !explain->query().has_select_stmt()) {
    return RefusedText(std::move(result), context, "0A000",
                       "EXPLAIN is accepted only for SELECT statements");
  }
  if (dp && explain->options_size() != 1) {
    return RefusedText(std::move(result), context, "0A000",
                       "EXPLAIN (DP) takes no other option: write EXPLAIN (DP) SELECT ...");
  }
  SelectOutcome inner = AnalyseSelect(explain->query(), context);
  result.relations = inner.relations;
  result.dataset = inner.dataset;
  result.reads_size_catalog = inner.reads_size_catalog;
  if (inner.refusal) return Refused(std::move(result), context, *inner.refusal);
  if (dp) {
    if (inner.statement_class != StatementClass::kPrivateAggregate) {
      return RefusedText(std::move(result), context, "0A000",
                         "EXPLAIN (DP) explains private aggregates; this query reads no private "
                         "table, so it is forwarded as is and spends nothing: run it directly");
    }
    result.statement_class = StatementClass::kDpgateCommand;
    result.command = DpgateCommandKind::kExplainDp;
    auto text = internal::Deparse(std::move(inner.statement), context.version);
    if (!text) return text.error();
    result.rewritten_sql = *text;
    result.plan = std::move(inner.plan);
    return result;
  }
  if (inner.statement_class == StatementClass::kPrivateAggregate) {
    return RefusedText(std::move(result), context, "42501",
                       "EXPLAIN of a query over a private table is refused: the plan shows row "
                       "estimates derived from the data; use EXPLAIN (DP) to see dpgate's plan");
  }
  *explain->mutable_query() = std::move(inner.statement);
  result.statement_class = inner.statement_class;
  auto text = internal::Deparse(std::move(node), context.version);
  if (!text) return text.error();
  result.rewritten_sql = *text;
  return result;
}

// PostgreSQL's CURSOR_OPT_* bits of DeclareCursorStmt.options
// (src/include/nodes/parsenodes.h).
constexpr int32_t kCursorBinary = 0x0001;
constexpr int32_t kCursorHold = 0x0020;

// DECLARE name CURSOR FOR <query> (docs/REWRITER.md §4.5): the query is
// classified like a plain SELECT. A private aggregate's cursor is served by
// dpgate from the released rows, never from an upstream cursor over the
// bounded SQL, whose pre-noise values a FETCH would return (DESIGN.md §2).
Result<StatementResult> ClassifyDeclareCursor(StatementResult result, const Context& context,
                                              Node node) {
  auto* declare = node.mutable_declare_cursor_stmt();
  if (!declare->has_query() || !declare->query().has_select_stmt()) {
    return RefusedText(std::move(result), context, "0A000",
                       "DECLARE CURSOR is accepted only for SELECT statements");
  }
  StatementResult::Cursor cursor;
  cursor.kind = StatementResult::Cursor::Kind::kDeclare;
  cursor.name = declare->portalname();
  cursor.hold = (declare->options() & kCursorHold) != 0;
  cursor.binary = (declare->options() & kCursorBinary) != 0;
  SelectOutcome inner = AnalyseSelect(declare->query(), context);
  result.relations = inner.relations;
  result.dataset = inner.dataset;
  result.reads_size_catalog = inner.reads_size_catalog;
  if (inner.refusal) return Refused(std::move(result), context, *inner.refusal);
  result.statement_class = inner.statement_class;
  result.cursor = cursor;
  if (inner.statement_class == StatementClass::kPrivateAggregate) {
    if (cursor.binary) {
      return RefusedText(std::move(result), context, "0A000",
                         "not yet supported: DECLARE BINARY over a private aggregate; declare it "
                         "without BINARY (dpgate serves its released rows as text)");
    }
    auto text = internal::Deparse(inner.statement, context.version);
    if (!text) return text.error();
    result.rewritten_sql = *text;
    result.plan = std::move(inner.plan);
    return result;
  }
  *declare->mutable_query() = std::move(inner.statement);
  auto text = internal::Deparse(node, context.version);
  if (!text) return text.error();
  // The cursor name becomes a name FETCH may be forwarded for: the text sent
  // must declare exactly this cursor and nothing else (see CursorUseText).
  auto reparsed = internal::Parse(*text);
  if (!reparsed || reparsed->stmts_size() != 1 ||
      !internal::SameTree(reparsed->stmts(0).stmt(), node)) {
    return RefusedText(std::move(result), context, "0A000",
                       "dpgate cannot forward this DECLARE unchanged; name the cursor with "
                       "letters, digits and underscores");
  }
  result.rewritten_sql = *text;
  return result;
}

// The text forwarded for FETCH/MOVE/CLOSE of an upstream cursor. Not
// libpg_query's deparse: it writes FetchStmt's cursor name unquoted, so
// `FETCH 1 IN "x; SELECT * FROM t"` would come out as two statements. Built
// from the parsed fields (integers, a keyword, a delimited identifier), then
// parsed again and required to be the same statement.
Result<std::string> CursorUseText(const Node& node) {
  std::string text;
  if (node.has_close_portal_stmt()) {
    const std::string& name = node.close_portal_stmt().portalname();
    text = name.empty() ? "CLOSE ALL" : "CLOSE " + internal::DelimitedIdentifier(name);
  } else {
    const auto& fetch = node.fetch_stmt();
    text = fetch.ismove() ? "MOVE " : "FETCH ";
    const bool all = fetch.how_many() == std::numeric_limits<int64_t>::max();
    switch (fetch.direction()) {
      case pb::FETCH_FORWARD:
        text += all ? "FORWARD ALL" : "FORWARD " + std::to_string(fetch.how_many());
        break;
      case pb::FETCH_BACKWARD:
        text += all ? "BACKWARD ALL" : "BACKWARD " + std::to_string(fetch.how_many());
        break;
      case pb::FETCH_ABSOLUTE:
        text += "ABSOLUTE " + std::to_string(fetch.how_many());
        break;
      case pb::FETCH_RELATIVE:
        text += "RELATIVE " + std::to_string(fetch.how_many());
        break;
      default:
        return MakeError("0A000", "this FETCH direction is not supported");
    }
    text += " FROM " + internal::DelimitedIdentifier(fetch.portalname());
  }
  auto reparsed = internal::Parse(text);
  if (!reparsed || reparsed->stmts_size() != 1 ||
      !internal::SameTree(reparsed->stmts(0).stmt(), node)) {
    return MakeError("0A000", "dpgate cannot forward this cursor statement unchanged");
  }
  return text;
}

// FETCH, MOVE and CLOSE name only a cursor; which one it is (dpgate's own or
// one declared upstream through dpgate) is the proxy's to know.
Result<StatementResult> ClassifyCursorUse(StatementResult result, const Context& context,
                                          const Node& node) {
  StatementResult::Cursor cursor;
  if (node.has_fetch_stmt()) {
    const auto& fetch = node.fetch_stmt();
    cursor.kind = fetch.ismove() ? StatementResult::Cursor::Kind::kMove
                                 : StatementResult::Cursor::Kind::kFetch;
    cursor.name = fetch.portalname();
    cursor.forward = fetch.direction() == pb::FETCH_FORWARD;
    // FETCH ALL is how_many = LONG_MAX in PostgreSQL's grammar.
    cursor.count = fetch.how_many() == std::numeric_limits<int64_t>::max() ? -1 : fetch.how_many();
  } else {
    cursor.kind = StatementResult::Cursor::Kind::kClose;
    cursor.name = node.close_portal_stmt().portalname();
  }
  auto text = CursorUseText(node);
  if (!text) {
    return RefusedText(std::move(result), context, text.error().code, text.error().message);
  }
  result.statement_class = StatementClass::kSession;
  result.rewritten_sql = *text;
  result.cursor = cursor;
  return result;
}

// Takes the statement by value: it is analysed and rewritten in place, and
// the caller has no further use for it (moved in, not copied).
Result<StatementResult> ClassifyStatement(pb::RawStmt raw, const Context& context) {
  StatementResult result;
  const size_t start =
      std::min(static_cast<size_t>(std::max(raw.stmt_location(), 0)), context.sql.size());
  const size_t length =
      raw.stmt_len() > 0 ? static_cast<size_t>(raw.stmt_len()) : context.sql.size() - start;
  result.original_sql = std::string(context.sql.substr(start, length));
  {
    // The statement's span starts right after the previous ';': drop the
    // whitespace between statements.
    const size_t first = result.original_sql.find_first_not_of(" \t\r\n");
    result.original_sql =
        first == std::string::npos ? std::string() : result.original_sql.substr(first);
  }
  {
    const PgQueryFingerprintResult fingerprint = pg_query_fingerprint(result.original_sql.c_str());
    if (fingerprint.error == nullptr) {
      result.fingerprint = fingerprint.fingerprint;
      if (fingerprint.fingerprint_str != nullptr)
        result.fingerprint_hex = fingerprint.fingerprint_str;
    }
    pg_query_free_fingerprint_result(fingerprint);
  }
  Node& node = *raw.mutable_stmt();
  switch (node.node_case()) {
    case Node::kSelectStmt: {
      SelectOutcome outcome = AnalyseSelect(std::move(node), context);
      result.relations = outcome.relations;
      result.dataset = outcome.dataset;
      result.reads_size_catalog = outcome.reads_size_catalog;
      if (outcome.refusal) return Refused(std::move(result), context, *outcome.refusal);
      auto text = internal::Deparse(std::move(outcome.statement), context.version);
      if (!text) return text.error();
      result.statement_class = outcome.statement_class;
      result.rewritten_sql = *text;
      result.plan = std::move(outcome.plan);
      return result;
    }
    case Node::kExplainStmt:
      return ClassifyExplain(std::move(result), context, std::move(node));
    case Node::kDeclareCursorStmt:
      return ClassifyDeclareCursor(std::move(result), context, std::move(node));
    case Node::kPrepareStmt: {
      // Checked now as the query it prepares; kept by the proxy, never sent.
      const auto& prepare = node.prepare_stmt();
      if (!prepare.has_query() || !prepare.query().has_select_stmt()) {
        return RefusedText(std::move(result), context, "0A000",
                           "SQL-level PREPARE is accepted only for SELECT statements");
      }
      SelectOutcome inner = AnalyseSelect(prepare.query(), context);
      result.relations = inner.relations;
      result.dataset = inner.dataset;
      if (inner.refusal) return Refused(std::move(result), context, *inner.refusal);
      result.statement_class = StatementClass::kSession;
      result.sql_prepare = prepare.name();
      return result;
    }
    case Node::kExecuteStmt:
      result.statement_class = StatementClass::kSession;
      result.sql_execute = node.execute_stmt().name();
      return result;
    case Node::kFetchStmt:
    case Node::kClosePortalStmt:
      return ClassifyCursorUse(std::move(result), context, node);
    case Node::kVariableSetStmt:
      return ClassifySet(std::move(result), context, node);
    case Node::kVariableShowStmt:
      return ClassifyShow(std::move(result), context, node);
    case Node::kTransactionStmt:
      return ClassifyTransaction(std::move(result), context, node);
    case Node::kDiscardStmt:
    case Node::kDeallocateStmt: {
      result.statement_class = StatementClass::kSession;
      result.rewritten_sql = SessionText(result);
      return result;
    }
    default:
      return RefusedText(std::move(result), context, "42501",
                         StatementKindName(node) + " is refused: " + RefusedStatementReason(node));
  }
}

bool IsValidUtf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    uint32_t code = 0;
    if (byte < 0x80) {
      ++i;
      continue;
    } else if ((byte & 0xE0) == 0xC0) {
      length = 2;
      code = byte & 0x1F;
    } else if ((byte & 0xF0) == 0xE0) {
      length = 3;
      code = byte & 0x0F;
    } else if ((byte & 0xF8) == 0xF0) {
      length = 4;
      code = byte & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t j = 1; j < length; ++j) {
      const auto next = static_cast<unsigned char>(text[i + j]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMin[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

}  // namespace

// Defense in depth against deparser bugs: the text dpgate forwards must
// parse back as exactly one statement of the kind it was built as. A
// deparser that writes a name unquoted (as libpg_query does for FETCH's
// cursor) could otherwise turn a quoted identifier into a second statement
// reading a private table; this refuses any such text, whatever statement
// it comes from (docs/REWRITER.md §1.3).
std::optional<std::string> ForwardedTextProblem(const StatementResult& result) {
  if (result.rewritten_sql.empty()) return std::nullopt;
  if (result.statement_class == StatementClass::kRefused ||
      result.statement_class == StatementClass::kDpgateCommand) {
    return std::nullopt;  // never sent upstream
  }
  if (result.statement_class == StatementClass::kPrivateAggregate) {
    // dpgate's own bounded SELECT, 6-10x the input's length: a full parse
    // would double an uncached rewrite (bench/RESULTS.md, rewriter). Its
    // kind is SELECT by construction; what a deparser bug could add is a
    // statement boundary, which PostgreSQL's scanner finds on its own.
    const PgQuerySplitResult split = pg_query_split_with_scanner(result.rewritten_sql.c_str());
    const bool one = split.error == nullptr && split.n_stmts == 1;
    pg_query_free_split_result(split);
    if (one) return std::nullopt;
    return "dpgate's rewrite of this query does not parse back as one statement, so it is not "
           "sent; report it";
  }
  auto parsed = internal::Parse(result.rewritten_sql);
  if (!parsed || parsed->stmts_size() != 1) {
    return "dpgate's rewrite of this statement does not parse back as one statement, so it is "
           "not sent; rewrite the query (for example, rename unusual identifiers) and report it";
  }
  const Node& stmt = parsed->stmts(0).stmt();
  const bool reads = result.statement_class == StatementClass::kPrivateAggregate ||
                     result.statement_class == StatementClass::kPublic ||
                     result.statement_class == StatementClass::kCatalog;
  if (reads && !stmt.has_select_stmt() && !stmt.has_declare_cursor_stmt() &&
      !stmt.has_explain_stmt()) {
    return "dpgate's rewrite of this query does not parse back as a query, so it is not sent; "
           "report it";
  }
  return std::nullopt;
}

Status FillBudgetSplit(ReleasePlan* plan, double epsilon, double delta,
                       config::Mechanism mechanism) {
  int quantities = 0;
  for (const auto& column : plan->columns) quantities += static_cast<int>(column.inputs.size());
  const bool selection = plan->partition_selection.kind == PartitionSelection::Kind::kThreshold;
  auto split = mechanisms::BudgetSplit::Build(epsilon, delta, quantities, selection,
                                              mechanism == config::Mechanism::kGaussian
                                                  ? mechanisms::NoiseKind::kGaussian
                                                  : mechanisms::NoiseKind::kLaplace);
  if (!split.ok()) return split.error();
  for (auto& column : plan->columns) {
    for (auto& quantity : column.inputs) {
      quantity.epsilon = split->per_aggregate().epsilon;
      quantity.delta = split->per_aggregate().delta;
    }
  }
  if (selection) {
    plan->partition_selection.epsilon = split->selection().epsilon;
    plan->partition_selection.delta = split->selection().delta;
  }
  plan->budget_split_filled = true;
  return Status::Ok();
}

Result<std::vector<StatementResult>> Classify(std::string_view sql, const config::Config& config,
                                              const SessionContext& session) {
  static const SchemaFacts kNoFacts;
  return Classify(sql, config, session, kNoFacts);
}

Result<std::vector<StatementResult>> Classify(std::string_view sql, const config::Config& config,
                                              const SessionContext& session,
                                              const SchemaFacts& facts) {
  std::vector<StatementResult> results;
  if (sql.find('\0') != std::string_view::npos) {
    StatementResult refused;
    refused.original_sql = std::string(sql.substr(0, sql.find('\0')));
    refused.reason = MakeError("42601", "syntax error: the query contains a NUL byte");
    results.push_back(std::move(refused));
    return results;
  }
  const std::string text(sql);
  if (!IsValidUtf8(text)) {
    // The parse tree carries strings as UTF-8; the proxy converts other
    // client encodings before calling the rewriter (docs/REWRITER.md §1.2).
    StatementResult refused;
    refused.reason =
        MakeError("22021", "invalid byte sequence for encoding UTF8 in the query text");
    results.push_back(std::move(refused));
    return results;
  }
  auto tree = internal::Parse(text);
  if (!tree) {
    StatementResult refused;
    refused.original_sql = text;
    refused.reason = tree.error();
    results.push_back(std::move(refused));
    return results;
  }
  const Context context{sql, config, session, tree->version(), facts};
  for (auto& raw : *tree->mutable_stmts()) {
    auto classified = ClassifyStatement(std::move(raw), context);
    if (!classified) return classified.error();
    if (classified->plan && session.epsilon && session.delta) {
      Status filled = FillBudgetSplit(&*classified->plan, *session.epsilon, *session.delta,
                                      config.query.mechanism);
      if (!filled.ok()) {
        *classified = Refused(
            std::move(*classified), context,
            Refusal{"22023", "the query's budget cannot be split: " + filled.message(), -1});
      }
    }
    if (auto problem = ForwardedTextProblem(*classified)) {
      *classified = Refused(std::move(*classified), context, Refusal{"0A000", *problem, -1});
    }
    results.push_back(std::move(*classified));
  }
  return results;
}

}  // namespace dpgate::rewriter
