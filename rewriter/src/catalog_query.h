// Internal: the masking of the table sizes a statement reads, and the
// session functions dpgate answers from the client's own session rather than
// from the pinned upstream one (docs/REWRITER.md §3.3, §4.4).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dpgate/config/config.h"
#include "dpgate/rewriter/rewriter.h"
#include "tree.h"

namespace dpgate::rewriter::internal {

// A pg_catalog.pg_class range reference of a statement: the name its columns
// are qualified with (alias, else relname) and whether the alias renames its
// columns (`pg_class AS c(a, b, ...)`, which hides which column is which).
struct ClassReference {
  std::string name;
  bool renames_columns = false;
};

// pg_catalog's functions that return the on-disk size of relations,
// databases or tablespaces: masked to NULL::bigint in every statement
// (docs/REWRITER.md §3.3).
bool IsSizeFunctionName(const std::string& name);

// Masks, in place, every read of table sizes a statement makes so it can be
// forwarded (DESIGN.md §2 "Catalog size leaks are masked, not refused";
// docs/REWRITER.md §3.3): a column reference that resolves to pg_class's
// reltuples becomes -1::real, relpages and relallvisible 0::integer, and a
// call of a size function (IsSizeFunctionName) NULL::bigint, for every
// relation; an unnamed select item keeps the name PostgreSQL would have given
// it. `classes` are the statement's pg_class ranges. Returns nullopt when the
// statement is masked (or had nothing to mask), else why it cannot be masked
// by substitution: a star or whole-row reference over pg_class, a renamed
// column list, a NATURAL or USING join on a size column, or an unqualified
// size column name that may belong to an outer pg_class.
std::optional<std::string> MaskSizeReads(pb::Node* statement,
                                         const std::vector<ClassReference>& classes);

// The per-relation statistics views of pg_catalog that are answered masked
// rather than refused (DESIGN.md §2; docs/REWRITER.md §3.3):
// pg_stat_{all,user,sys}_tables, pg_stat_xact_{all,user,sys}_tables,
// pg_statio_{all,user,sys}_tables, pg_stat_{all,user,sys}_indexes,
// pg_statio_{all,user,sys}_indexes and pg_statio_{all,user,sys}_sequences.
// Every other pg_stat_* / pg_statio_* relation stays denied (§3.1).
bool IsMaskedStatisticsView(const std::string& name);

// Replaces, in place, every FROM item (at any depth: joins, subqueries, CTEs,
// LATERAL) naming pg_catalog.<a masked statistics view> with a subquery of
// the same alias (the view's name when it has none) that selects, in
// PostgreSQL 15's column order, the view's identity columns (relid,
// indexrelid, schemaname, relname, indexrelname) and a constant for every
// counter (0::bigint) and timestamp (NULL::timestamptz). Run on a statement
// whose relations are resolved and schema-qualified, after every other
// rewrite, so the replacement is neither walked nor classified again.
// `resolved`: how many such ranges name resolution found. Returns nullopt
// when each was replaced, else why the statement cannot be masked (a view
// under TABLESAMPLE, which takes no subquery).
std::optional<std::string> MaskStatisticsViews(pb::Node* statement, int resolved);

// The client's session as dpgate resolves names with it: the effective path
// (pg_catalog first unless listed, "$user" only when it holds configured
// tables) and the schema current_schema() names (the first non-implicit one,
// or none).
struct SessionPath {
  std::vector<std::string> path;
  std::vector<std::string> explicit_path;  // without the implicit pg_catalog
  std::optional<std::string> current_schema;
  std::string search_path_text;  // as SHOW search_path prints it
};
SessionPath MakeSessionPath(const config::Config& config, const SessionContext& session);

// Replaces, in place, the calls whose upstream answer depends on the pinned
// upstream search_path (pg_catalog) with the answer for the client's session:
// current_schema / current_schema(), current_schemas(b),
// pg_table_is_visible(oid) and pg_type_is_visible(oid). An unnamed
// select-list item keeps the column name PostgreSQL would have given the
// call. current_setting('search_path') is left alone: it shows the
// upstream's pin (pg_catalog), which tests and operators rely on.
void SubstituteSessionFunctions(pb::Node* statement, const SessionPath& session);

// `SELECT '<text>'::text AS search_path`: the answer to SHOW search_path.
pb::Node ShowSearchPathQuery(const SessionPath& session);

}  // namespace dpgate::rewriter::internal
