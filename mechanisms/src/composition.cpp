#include "dpgate/mechanisms/composition.h"

#include <cmath>
#include <string>

#include "dpgate/mechanisms/sensitivity.h"

namespace dpgate::mechanisms {

PrivacyLoss ComposeBasic(const std::vector<PrivacyLoss>& losses) {
  PrivacyLoss total;
  for (const PrivacyLoss& l : losses) {
    total.epsilon += l.epsilon;
    total.delta += l.delta;
  }
  return total;
}

double GaussianRho(double l2_sensitivity, double sigma) {
  return l2_sensitivity * l2_sensitivity / (2 * sigma * sigma);
}

double PureDpRho(double epsilon) {
  return epsilon * epsilon / 2;
}

double RhoToEpsilonBunSteinke(double rho, double delta) {
  return rho + 2 * std::sqrt(rho * std::log(1 / delta));
}

namespace {
double CksEpsilon(double rho, double delta, double alpha) {
  return alpha * rho +
         (std::log(1 / delta) + (alpha - 1) * std::log1p(-1 / alpha) - std::log(alpha)) /
             (alpha - 1);
}
}  // namespace

double RhoToEpsilonCks(double rho, double delta) {
  // Scan α = 1 + 10^x, then refine by golden section around the best point.
  double best_x = 0, best = INFINITY;
  // An integer counter: a float one would accumulate rounding (and drift
  // past the end point).
  for (int step = 0; step <= 2000; ++step) {
    const double x = -8 + 0.01 * step;
    const double e = CksEpsilon(rho, delta, 1 + std::pow(10.0, x));
    if (e < best) {
      best = e;
      best_x = x;
    }
  }
  double lo = best_x - 0.01, hi = best_x + 0.01;
  const double phi = (std::sqrt(5.0) - 1) / 2;
  for (int i = 0; i < 100; ++i) {
    const double a = hi - phi * (hi - lo), b = lo + phi * (hi - lo);
    const double ea = CksEpsilon(rho, delta, 1 + std::pow(10.0, a));
    const double eb = CksEpsilon(rho, delta, 1 + std::pow(10.0, b));
    if (ea < eb) {
      hi = b;
    } else {
      lo = a;
    }
    best = std::fmin(best, std::fmin(ea, eb));
  }
  return best;
}

Result<double> RhoToEpsilon(double rho, double delta) {
  if (!std::isfinite(rho) || !(rho >= 0)) {
    return MakeError("mechanism", "rho must be finite and >= 0, got " + FormatNumber(rho));
  }
  if (Status s = ValidatePositiveDelta(delta); !s) return s;
  if (rho == 0) return 0.0;
  const double eps = std::fmin(RhoToEpsilonBunSteinke(rho, delta), RhoToEpsilonCks(rho, delta));
  // Round up by far more than the evaluation error of either formula.
  return eps * (1 + 1e-12);
}

}  // namespace dpgate::mechanisms
