// Privacy accounting math (docs/PRIVACY.md §7).
#pragma once

#include <vector>

#include "dpgate/common/result.h"

namespace dpgate::mechanisms {

struct PrivacyLoss {
  double epsilon = 0;
  double delta = 0;
};

// Basic composition: (Σε, Σδ) (Dwork & Roth 2014, Theorem 3.16).
PrivacyLoss ComposeBasic(const std::vector<PrivacyLoss>& losses);

// ρ of zCDP of Gaussian (or discrete Gaussian) noise σ on a query of L2
// sensitivity Δ: Δ²/(2σ²) (Bun & Steinke, TCC 2016, Proposition 1.6; CKS
// NeurIPS 2020, Theorem 4 for the discrete Gaussian). zCDP composes by adding
// ρ (BS16 Lemma 2.3).
double GaussianRho(double l2_sensitivity, double sigma);
// An ε-DP release is ε²/2-zCDP (BS16 Proposition 1.4).
double PureDpRho(double epsilon);

// ρ-zCDP ⇒ (ε, δ)-DP, by Bun & Steinke 2016 Proposition 1.3:
//   ε = ρ + 2·√(ρ·ln(1/δ)).
double RhoToEpsilonBunSteinke(double rho, double delta);
// The tighter conversion of Canonne, Kamath, Steinke 2020 (Corollary 13):
//   ε = inf_{α>1} αρ + (ln(1/δ) + (α−1)·ln(1−1/α) − ln α) / (α−1),
// minimised numerically (any α gives a valid ε, so inexact minimisation only
// loses tightness).
double RhoToEpsilonCks(double rho, double delta);
// The smaller of the two, rounded up. ρ >= 0 finite; δ in (0, 1).
Result<double> RhoToEpsilon(double rho, double delta);

}  // namespace dpgate::mechanisms
