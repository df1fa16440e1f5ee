// Reads the rewriter's SchemaFacts (docs/REWRITER.md §8.5) from the upstream
// catalog, for `dpgate serve` (once, at start) and `dpgate rewrite --upstream`.
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "dpgate/common/result.h"
#include "dpgate/config/config.h"
#include "dpgate/rewriter/schema_facts.h"

namespace dpgate::app {

// Connects to `dsn` (config.upstream.dsn) and reads, for every table of the
// config, its columns' types and which columns are unique and NOT NULL on
// their own. Error (code "upstream") when the connection or a catalog query
// fails; the message never contains the password. A configured table that
// does not exist upstream contributes no facts (dpgate check reports it).
Result<rewriter::SchemaFacts> LoadSchemaFacts(const config::Config& config, const std::string& dsn);

// The same over an open connection, in one read-only transaction.
Result<rewriter::SchemaFacts> LoadSchemaFacts(const config::Config& config,
                                              pqxx::connection& connection);

}  // namespace dpgate::app
