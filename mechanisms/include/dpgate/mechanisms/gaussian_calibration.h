// Calibrating Gaussian noise to (ε, δ) exactly: the analytic Gaussian
// mechanism (Balle & Wang, "Improving the Gaussian Mechanism for Differential
// Privacy", ICML 2018, Theorem 8; docs/PRIVACY.md §3.3).
#pragma once

#include "dpgate/common/result.h"

namespace dpgate::mechanisms {

// Φ, the standard normal CDF (via erfc, accurate in both tails).
double StandardNormalCdf(double x);
// Φ⁻¹(p) for p in (0, 1), to ~1e-15 relative (bisection on Φ).
double StandardNormalQuantile(double p);

// The smallest δ for which N(0, σ²) noise on a query of L2 sensitivity Δ is
// (ε, δ)-DP (Balle & Wang 2018, Theorem 8):
//   δ(σ) = Φ(Δ/(2σ) − εσ/Δ) − e^ε · Φ(−Δ/(2σ) − εσ/Δ).
double GaussianDelta(double sigma, double epsilon, double l2_sensitivity);

// The smallest σ (to ~1e-12 relative, rounded up) with GaussianDelta(σ) <= δ,
// by bisection (δ(σ) is decreasing in σ). Errors on ε not finite > 0,
// δ not in (0, 1), Δ not finite > 0.
Result<double> AnalyticGaussianSigma(double epsilon, double delta, double l2_sensitivity);

// The classic bound σ = √(2 ln(1.25/δ))·Δ/ε (Dwork & Roth 2014, Theorem A.1,
// valid for ε < 1), for comparison in EXPLAIN and tests only.
double ClassicGaussianSigma(double epsilon, double delta, double l2_sensitivity);

}  // namespace dpgate::mechanisms
