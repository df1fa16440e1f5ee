// Test configs built in C++ (the YAML loader is tested in tests/unit/config).
// "pums" mirrors /work/shared/data/smartnoise/PUMS_pid.yaml: table pums.pums
// with privacy unit pid and the SmartNoise bounds for age and income.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "dpgate/config/config.h"
#include "dpgate/rewriter/schema_facts.h"

namespace dpgate::rewriter::testing {

// A private table of a test config: its unit, k and c; columns are added by
// the caller.
inline config::TableSpec PrivateTable(const std::string& schema, const std::string& name,
                                      const std::string& unit, int max_groups, int max_rows) {
  config::TableSpec table;
  table.schema = schema;
  table.name = name;
  table.privacy_unit = unit;
  table.max_groups_contributed = max_groups;
  table.max_rows_per_group = max_rows;
  return table;
}

inline config::Config MakeTestConfig() {
  config::Config config;
  config.query.max_epsilon = 2.0;

  config::Dataset census;
  census.name = "census";
  config::TableSpec pums = PrivateTable("pums", "pums", "pid", 3, 2);
  pums.columns.push_back({"age", 0.0, 100.0, {}});
  pums.columns.push_back({"income", 0.0, 500000.0, {}});
  pums.columns.push_back({"sex", std::nullopt, std::nullopt, {"0", "1"}});
  pums.columns.push_back({"educ", std::nullopt, std::nullopt, {}});
  pums.columns.push_back({"race", std::nullopt, std::nullopt, {}});
  pums.columns.push_back({"married", std::nullopt, std::nullopt, {}});
  census.tables.push_back(pums);
  // A second private table of the same dataset, joined to pums on the unit
  // (docs/REWRITER.md §5.5): tighter k and c than pums, so the join's bounds
  // are visibly the smaller ones.
  config::TableSpec household = PrivateTable("pums", "household", "pid", 2, 3);
  household.columns.push_back({"rent", 0.0, 3000.0, {}});
  household.columns.push_back({"rooms", 1.0, 12.0, {}});
  household.columns.push_back({"tenure", std::nullopt, std::nullopt, {"own", "rent"}});
  census.tables.push_back(household);
  config::TableSpec states;
  states.schema = "pums";
  states.name = "states";
  states.is_public = true;
  census.tables.push_back(states);
  config.datasets.push_back(census);

  config::Dataset hr;
  hr.name = "hr";
  config::TableSpec employees = PrivateTable("public", "employees", "employee_id", 4, 1);
  employees.columns.push_back({"salary", -1000.0, 500000.0, {}});
  employees.columns.push_back({"age", 18.0, 100.0, {}});
  employees.columns.push_back(
      {"region", std::nullopt, std::nullopt, {"north", "south", "east", "west"}});
  // More public keys, for the row_number() shortcut (docs/REWRITER.md §8.4):
  // with k = 4, shift × remote has 4 groups, grade alone 5.
  employees.columns.push_back({"shift", std::nullopt, std::nullopt, {"day", "night"}});
  employees.columns.push_back({"remote", std::nullopt, std::nullopt, {"yes", "no"}});
  employees.columns.push_back({"grade", std::nullopt, std::nullopt, {"a", "b", "c", "d", "e"}});
  hr.tables.push_back(employees);
  config::TableSpec regions;
  regions.schema = "public";
  regions.name = "regions";
  regions.is_public = true;
  hr.tables.push_back(regions);
  config.datasets.push_back(hr);
  return config;
}

// Schema facts from two comma lists, as the case files write them:
// `unique` holds schema.table.column items (unique and NOT NULL), `types`
// holds schema.table.column=type items.
inline SchemaFacts ParseFacts(const std::string& unique, const std::string& types) {
  SchemaFacts facts;
  const auto items = [](const std::string& list) {
    std::vector<std::string> out;
    std::stringstream stream(list);
    std::string item;
    while (std::getline(stream, item, ',')) {
      const auto begin = item.find_first_not_of(' ');
      const auto end = item.find_last_not_of(' ');
      if (begin != std::string::npos) out.push_back(item.substr(begin, end - begin + 1));
    }
    return out;
  };
  for (const auto& item : items(unique)) {
    const auto dot = item.rfind('.');
    facts.AddUniqueNotNull(item.substr(0, dot), item.substr(dot + 1));
  }
  for (const auto& item : items(types)) {
    const auto equals = item.find('=');
    const std::string column = item.substr(0, equals);
    const auto dot = column.rfind('.');
    facts.SetColumnType(column.substr(0, dot), column.substr(dot + 1), item.substr(equals + 1));
  }
  return facts;
}

}  // namespace dpgate::rewriter::testing
