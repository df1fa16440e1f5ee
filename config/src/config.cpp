#include "dpgate/config/config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "parse.h"

namespace dpgate::config {

const char* ToString(AuthMode mode) {
  switch (mode) {
    case AuthMode::kScram:
      return "scram";
    case AuthMode::kTrust:
      return "trust";
  }
  return "unknown";
}

const char* ToString(Period period) {
  switch (period) {
    case Period::kDay:
      return "day";
    case Period::kWeek:
      return "week";
    case Period::kMonth:
      return "month";
    case Period::kNever:
      return "never";
  }
  return "unknown";
}

const char* ToString(PoolMode mode) {
  return mode == PoolMode::kTransaction ? "transaction" : "session";
}

const char* ToString(Mechanism mechanism) {
  switch (mechanism) {
    case Mechanism::kLaplace:
      return "laplace";
    case Mechanism::kGaussian:
      return "gaussian";
  }
  return "unknown";
}

const ColumnSpec* TableSpec::FindColumn(const std::string& column) const {
  for (const auto& c : columns) {
    if (c.name == column) return &c;
  }
  return nullptr;
}

const Analyst* Config::FindAnalyst(const std::string& name) const {
  for (const auto& a : analysts) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::optional<Config::TableRef> Config::FindTable(const std::string& schema,
                                                  const std::string& name) const {
  for (const auto& dataset : datasets) {
    for (const auto& table : dataset.tables) {
      if (table.schema == schema && table.name == name) return TableRef{&dataset, &table};
    }
  }
  return std::nullopt;
}

Result<Config> ParseConfig(const std::string& yaml_text, const std::string& source_name) {
  return detail::ParseConfigText(yaml_text, source_name,
                                 [](const std::string& name) -> std::optional<std::string> {
                                   const char* value = std::getenv(name.c_str());
                                   if (value == nullptr) return std::nullopt;
                                   return std::string(value);
                                 });
}

Result<Config> LoadConfig(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return MakeError("config",
                     path + ": cannot read config: it is a directory; expected a YAML file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError("config", path + ": cannot read config: " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path);
}

}  // namespace dpgate::config
