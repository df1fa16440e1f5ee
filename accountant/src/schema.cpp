// Ledger schema and its versioned migrations (docs/LEDGER.md "Schema").
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "dpgate/accountant/ledger.h"
#include "schema_internal.h"

namespace dpgate::accountant {

namespace {

struct Migration {
  int version;
  const char* description;
  const char* sql;  // @S@: quoted schema name; @s@: the bare (validated) name
};

// Append new migrations at the end; never edit one that has shipped.
const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kMigrations = {
      {1, "budgets, charges, hash chain, append-only triggers, writer grants", R"SQL(
CREATE TABLE @S@.budget_accounts (
  principal_kind text NOT NULL CHECK (principal_kind IN ('analyst', 'dataset')),
  principal text NOT NULL,
  dataset text NOT NULL,
  period text NOT NULL CHECK (period IN ('day', 'week', 'month', 'never')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (principal_kind, principal, dataset),
  CHECK (principal_kind = 'analyst' OR principal = dataset)
);
CREATE TABLE @S@.budgets (
  id bigserial PRIMARY KEY,
  principal_kind text NOT NULL,
  principal text NOT NULL,
  dataset text NOT NULL,
  period_start timestamptz,
  epsilon double precision NOT NULL,
  delta double precision NOT NULL,
  source text NOT NULL CHECK (source IN ('config', 'grant')),
  granted_at timestamptz NOT NULL DEFAULT now(),
  granted_by text NOT NULL DEFAULT current_user,
  note text NOT NULL DEFAULT '',
  FOREIGN KEY (principal_kind, principal, dataset) REFERENCES @S@.budget_accounts
);
CREATE INDEX budgets_account ON @S@.budgets (principal_kind, principal, dataset, period_start);
CREATE TABLE @S@.period_spend (
  principal_kind text NOT NULL,
  principal text NOT NULL,
  dataset text NOT NULL,
  period_start timestamptz NOT NULL,
  epsilon double precision NOT NULL DEFAULT 0,
  delta double precision NOT NULL DEFAULT 0,
  charges bigint NOT NULL DEFAULT 0,
  refusals bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (principal_kind, principal, dataset, period_start)
);
CREATE TABLE @S@.chain_head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_id bigint NOT NULL,
  last_hash bytea NOT NULL
);
INSERT INTO @S@.chain_head (singleton, last_id, last_hash)
  VALUES (true, 0, decode(repeat('00', 32), 'hex'));
CREATE TABLE @S@.charges (
  id bigint PRIMARY KEY,
  at timestamptz NOT NULL,
  analyst text NOT NULL,
  dataset text NOT NULL,
  epsilon double precision NOT NULL,
  delta double precision NOT NULL,
  rho double precision,
  fingerprint text NOT NULL,
  original_sql text NOT NULL,
  rewritten_sql text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('charged', 'refused')),
  detail text NOT NULL,
  period_start timestamptz NOT NULL,
  dataset_period_start timestamptz NOT NULL,
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL
);
CREATE INDEX charges_at ON @S@.charges (at);
CREATE INDEX charges_principal ON @S@.charges (dataset, analyst, period_start);
CREATE FUNCTION @S@.refuse_change() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  RAISE EXCEPTION 'dpgate ledger: % on %.% is not allowed: the table is append-only',
    TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'charges and grants are never changed or removed; add a grant row instead';
END
$fn$;
CREATE TRIGGER charges_append_only BEFORE UPDATE OR DELETE ON @S@.charges
  FOR EACH ROW EXECUTE FUNCTION @S@.refuse_change();
CREATE TRIGGER charges_no_truncate BEFORE TRUNCATE ON @S@.charges
  FOR EACH STATEMENT EXECUTE FUNCTION @S@.refuse_change();
CREATE TRIGGER budgets_append_only BEFORE UPDATE OR DELETE ON @S@.budgets
  FOR EACH ROW EXECUTE FUNCTION @S@.refuse_change();
CREATE TRIGGER budgets_no_truncate BEFORE TRUNCATE ON @S@.budgets
  FOR EACH STATEMENT EXECUTE FUNCTION @S@.refuse_change();
-- The role dpgate runs as: it may read everything and append charges and
-- grants, but never UPDATE/DELETE/TRUNCATE them (no privilege, and the
-- triggers above refuse even the owner unless it disables them).
CREATE FUNCTION @S@.grant_writer(writer name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', '@s@', writer);
  EXECUTE format('GRANT SELECT ON %I.schema_migrations TO %I', '@s@', writer);
  EXECUTE format('GRANT SELECT, INSERT ON %I.charges, %I.budgets TO %I', '@s@', '@s@', writer);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.budget_accounts, %I.period_spend, %I.chain_head TO %I',
                 '@s@', '@s@', '@s@', writer);
  EXECUTE format('GRANT USAGE ON SEQUENCE %I.budgets_id_seq TO %I', '@s@', writer);
END
$fn$;
REVOKE ALL ON FUNCTION @S@.grant_writer(name) FROM PUBLIC;
)SQL"},
  };
  return kMigrations;
}

std::string Expand(const std::string& sql, const std::string& quoted, const std::string& bare) {
  std::string out;
  out.reserve(sql.size() + 256);
  for (size_t i = 0; i < sql.size();) {
    if (sql.compare(i, 3, "@S@") == 0) {
      out += quoted;
      i += 3;
    } else if (sql.compare(i, 3, "@s@") == 0) {
      out += bare;
      i += 3;
    } else {
      out.push_back(sql[i++]);
    }
  }
  return out;
}

// Current version, or 0 when the schema or its migrations table is absent.
int CurrentVersion(pqxx::transaction_base& tx, const std::string& schema) {
  const pqxx::row r = tx.exec_params1("SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                                      tx.quote_name(schema) + ".schema_migrations");
  if (!r[0].as<bool>()) return 0;
  const pqxx::row v = tx.exec1("SELECT coalesce(max(version), 0) FROM " + tx.quote_name(schema) +
                               ".schema_migrations");
  return v[0].as<int>();
}

}  // namespace

int LatestLedgerSchemaVersion() {
  return Migrations().back().version;
}

namespace internal {

bool IsPlainIdentifier(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'))) return false;
  for (char c : name) {
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

Status CheckVersion(pqxx::connection& conn, const std::string& schema) {
  pqxx::nontransaction probe(conn);
  const int current = CurrentVersion(probe, schema);
  if (current == LatestLedgerSchemaVersion()) return Status::Ok();
  if (current == 0) {
    return MakeError("ledger.error", "there is no ledger schema " + schema +
                                         " in this database (dpgate creates it when it starts, "
                                         "or with a -c command); check the DSN and --schema");
  }
  return MakeError("ledger.error", "ledger schema " + schema + " is at version " +
                                       std::to_string(current) + ", this dpgate expects " +
                                       std::to_string(LatestLedgerSchemaVersion()) +
                                       ": start dpgate once to migrate it");
}

Status MigrateOn(pqxx::connection& conn, const std::string& schema) {
  const int latest = LatestLedgerSchemaVersion();
  {
    // Fast path without DDL or locks, so a role without CREATE can open an
    // up-to-date ledger.
    pqxx::nontransaction probe(conn);
    const int current = CurrentVersion(probe, schema);
    if (current == latest) return Status::Ok();
    if (current > latest) {
      return MakeError("ledger.error", "ledger schema " + schema + " is at version " +
                                           std::to_string(current) +
                                           ", newer than this dpgate understands (" +
                                           std::to_string(latest) + "): upgrade dpgate");
    }
  }
  pqxx::work tx(conn);
  // One migrator at a time per schema; the lock ends with the transaction, so
  // a crashed migrator cannot leave it held.
  tx.exec_params(
      "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), "
      "pg_catalog.hashtext($2))",
      "dpgate.ledger.migrate", schema);
  const std::string qs = tx.quote_name(schema);
  tx.exec("CREATE SCHEMA IF NOT EXISTS " + qs);
  tx.exec("CREATE TABLE IF NOT EXISTS " + qs +
          ".schema_migrations (version integer PRIMARY KEY, description text NOT NULL, "
          "applied_at timestamptz NOT NULL DEFAULT now())");
  const int current = CurrentVersion(tx, schema);
  for (const Migration& m : Migrations()) {
    if (m.version <= current) continue;
    tx.exec(Expand(m.sql, qs, schema));
    tx.exec_params(
        "INSERT INTO " + qs + ".schema_migrations (version, description) VALUES ($1, $2)",
        m.version, std::string(m.description));
  }
  tx.commit();
  return Status::Ok();
}

}  // namespace internal

}  // namespace dpgate::accountant
