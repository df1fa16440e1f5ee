// Internal to accountant/: keeps libpqxx out of the public headers.
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "dpgate/common/result.h"

namespace dpgate::accountant::internal {

// [a-z_][a-z0-9_]{0,62}: the only schema names the ledger accepts, so a name is
// never ambiguous between quoted and unquoted use.
bool IsPlainIdentifier(const std::string& name);

// Fails unless the schema exists at exactly the version this build expects.
Status CheckVersion(pqxx::connection& conn, const std::string& schema);

// Creates or migrates the schema on an open connection (see MigrateLedger).
// May throw libpqxx exceptions; callers turn them into Errors.
Status MigrateOn(pqxx::connection& conn, const std::string& schema);

}  // namespace dpgate::accountant::internal
