// Internal: validation and bounded rewrite of a private aggregate
// (docs/REWRITER.md §5–§10).
#pragma once

#include <variant>

#include "dpgate/config/config.h"
#include "dpgate/rewriter/release_plan.h"
#include "dpgate/rewriter/schema_facts.h"
#include "tree.h"

namespace dpgate::rewriter::internal {

struct PrivateRewrite {
  pb::Node statement;  // the rewritten SELECT, ready to deparse
  ReleasePlan plan;
};

// `select` has already been scanned: every relation in it is resolved and
// schema-qualified, and it reads the private tables `private_tables` (one or
// more, all of `dataset`; not empty) and possibly the public tables
// `public_relations` (schema.name); any other shape is refused here. Several
// private tables must be joined on their privacy units (docs/REWRITER.md
// §5.5). `facts` only choose between equally bounded shapes (§8.4–§8.5);
// they never decide acceptance.
std::variant<PrivateRewrite, Refusal> RewritePrivateAggregate(
    const pb::SelectStmt& select, const config::Dataset& dataset,
    std::vector<const config::TableSpec*> private_tables, std::vector<std::string> public_relations,
    const SchemaFacts& facts);

}  // namespace dpgate::rewriter::internal
