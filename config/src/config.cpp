#include "dpgate/config/config.h"

namespace dpgate::config {

Result<Config> ParseConfig(const std::string& /*yaml_text*/, const std::string& source_name) {
  return MakeError("config", source_name + ": config loading is not yet supported in this build");
}

Result<Config> LoadConfig(const std::string& path) { return ParseConfig("", path); }

}  // namespace dpgate::config
