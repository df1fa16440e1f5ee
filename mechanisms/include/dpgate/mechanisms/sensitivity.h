// How much one privacy unit can move a query's answer (docs/PRIVACY.md §2).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "dpgate/common/result.h"

namespace dpgate::mechanisms {

// A unit changes each of at most `max_groups` (k) groups' values by at most
// `per_group` (Δ). Over the vector of all groups: L1 = k·Δ, L2 = √k·Δ
// (docs/PRIVACY.md §2.1; Wilson et al., PETS 2020, §4).
struct Sensitivity {
  double per_group = 1;
  int64_t max_groups = 1;

  double L1() const { return static_cast<double>(max_groups) * per_group; }
  double L2() const { return std::sqrt(static_cast<double>(max_groups)) * per_group; }

  // OK iff Δ is finite and > 0 and k >= 1.
  Status Validate() const;
};

// Shared parameter checks, each returning an Error with code "mechanism".
Status ValidateEpsilon(double epsilon);      // finite, > 0
Status ValidateDelta(double delta);          // 0 <= δ < 1
Status ValidatePositiveDelta(double delta);  // 0 < δ < 1
Status ValidateLevel(double level);          // confidence level in (0, 1)

// A number for an error message ("1e-09", "0.5", "nan").
std::string FormatNumber(double v);

}  // namespace dpgate::mechanisms
