// Test configs built in C++ (the YAML loader is tested in tests/unit/config).
// "pums" mirrors /work/shared/data/smartnoise/PUMS_pid.yaml: table pums.pums
// with privacy unit pid and the SmartNoise bounds for age and income.
#pragma once

#include <string>

#include "dpgate/config/config.h"

namespace dpgate::rewriter::testing {

inline config::Config MakeTestConfig() {
  config::Config config;
  config.query.max_epsilon = 2.0;

  config::Dataset census;
  census.name = "census";
  config::TableSpec pums;
  pums.schema = "pums";
  pums.name = "pums";
  pums.privacy_unit = "pid";
  pums.max_groups_contributed = 3;
  pums.max_rows_per_group = 2;
  pums.columns.push_back({"age", 0.0, 100.0, {}});
  pums.columns.push_back({"income", 0.0, 500000.0, {}});
  pums.columns.push_back({"sex", std::nullopt, std::nullopt, {"0", "1"}});
  pums.columns.push_back({"educ", std::nullopt, std::nullopt, {}});
  pums.columns.push_back({"race", std::nullopt, std::nullopt, {}});
  pums.columns.push_back({"married", std::nullopt, std::nullopt, {}});
  census.tables.push_back(pums);
  config::TableSpec states;
  states.schema = "pums";
  states.name = "states";
  states.is_public = true;
  census.tables.push_back(states);
  config.datasets.push_back(census);

  config::Dataset hr;
  hr.name = "hr";
  config::TableSpec employees;
  employees.schema = "public";
  employees.name = "employees";
  employees.privacy_unit = "employee_id";
  employees.max_groups_contributed = 4;
  employees.max_rows_per_group = 1;
  employees.columns.push_back({"salary", -1000.0, 500000.0, {}});
  employees.columns.push_back({"age", 18.0, 100.0, {}});
  employees.columns.push_back(
      {"region", std::nullopt, std::nullopt, {"north", "south", "east", "west"}});
  hr.tables.push_back(employees);
  config::TableSpec regions;
  regions.schema = "public";
  regions.name = "regions";
  regions.is_public = true;
  hr.tables.push_back(regions);
  config.datasets.push_back(hr);
  return config;
}

}  // namespace dpgate::rewriter::testing
