#include "dpgate/mechanisms/sensitivity.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace dpgate::mechanisms {
namespace {
Error Bad(const std::string& message) {
  return MakeError("mechanism", message);
}
}  // namespace

std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Prefer the shortest form that reads back exactly.
  for (int precision = 1; precision < 17; ++precision) {
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

Status Sensitivity::Validate() const {
  if (!std::isfinite(per_group) || !(per_group > 0)) {
    return Bad("sensitivity must be a finite number > 0, got " + FormatNumber(per_group));
  }
  if (max_groups < 1) {
    return Bad("max groups contributed must be >= 1, got " + std::to_string(max_groups));
  }
  return Status::Ok();
}

Status ValidateEpsilon(double epsilon) {
  if (!std::isfinite(epsilon) || !(epsilon > 0)) {
    return Bad("epsilon must be a finite number > 0, got " + FormatNumber(epsilon));
  }
  return Status::Ok();
}

Status ValidateDelta(double delta) {
  if (!(delta >= 0 && delta < 1)) {
    return Bad("delta must be in [0, 1), got " + FormatNumber(delta));
  }
  return Status::Ok();
}

Status ValidatePositiveDelta(double delta) {
  if (!(delta > 0 && delta < 1)) {
    return Bad("delta must be in (0, 1) for this mechanism, got " + FormatNumber(delta));
  }
  return Status::Ok();
}

Status ValidateLevel(double level) {
  if (!(level > 0 && level < 1)) {
    return Bad("confidence level must be in (0, 1), got " + FormatNumber(level));
  }
  return Status::Ok();
}

}  // namespace dpgate::mechanisms
