// Internal entry point of the YAML walker (parse.cpp), with the environment
// lookup injected so ${VAR} substitution does not depend on process state.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "dpgate/config/config.h"

namespace dpgate::config::detail {

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

Result<Config> ParseConfigText(const std::string& yaml_text, const std::string& source_name,
                               const EnvLookup& env);

}  // namespace dpgate::config::detail
