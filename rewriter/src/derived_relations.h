// Internal: inlining of subqueries and common table expressions in the FROM
// clause of a private aggregate (docs/REWRITER.md §5.4).
#pragma once

#include <optional>

#include "tree.h"

namespace dpgate::rewriter::internal {

// Rewrites `select` (already scanned: every relation resolved and
// schema-qualified) so that each derived relation the bounded rewrite can
// read as its own FROM items is merged into the outer query:
//
// - a non-recursive CTE named exactly once in a FROM clause becomes a
//   subquery in FROM there; an unreferenced CTE is dropped (PostgreSQL never
//   runs it);
// - a subquery in FROM that only projects and filters rows (no aggregate,
//   GROUP BY, DISTINCT, window, set operation, LIMIT or OFFSET), and is not on
//   the NULL-filled side of an outer join, is replaced by its own FROM items;
//   its WHERE joins the outer WHERE and every outer reference to one of its
//   columns becomes the expression that column stands for.
//
// Each output row of such a subquery is computed from one row of its FROM,
// so after the merge every row the bounded rewrite groups by unit is still
// one row of the private table (joined as written), and everything the
// subquery evaluated is checked by the same rules as the outer query.
//
// A refusal names the construct that cannot be merged and what to write
// instead; std::nullopt means the statement is ready for
// RewritePrivateAggregate (which refuses whatever shapes remain).
std::optional<Refusal> InlineDerivedRelations(pb::SelectStmt* select);

}  // namespace dpgate::rewriter::internal
