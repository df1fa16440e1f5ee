// COUNT, SUM, AVG, VARIANCE and STDDEV from noisy sums and counts, with
// two-sided error bounds (docs/PRIVACY.md §8). Everything here is
// post-processing of already-noised values: it costs no privacy.
#pragma once

namespace dpgate::mechanisms {

// A released value and a half-width h: |value − true value| <= h with at
// least the confidence level the inputs' half-widths were computed at (see
// each function for how the level divides among the inputs).
struct Estimate {
  double value = 0;
  double half_width = 0;
};

// The level at which each of `parts` independent noisy inputs must be bounded
// so that all hold together with probability >= level (union bound):
// 1 − (1 − level)/parts.
double PerInputLevel(double level, int parts);

// COUNT: clamped to >= 0 (the true count is).
Estimate EstimateCount(double noisy_count, double count_half_width);

// AVG over values clamped to [lower, upper], from the noisy sum S̃ of values
// re-centred on the midpoint μ = (lower+upper)/2 and the noisy count Ñ
// (DESIGN.md §2). value = μ + S̃/Ñ clamped to [lower, upper] (μ if Ñ <= 0).
// With |S̃ − S| <= h_S and |Ñ − N| <= h_N (each at PerInputLevel(level, 2)):
//   |S̃/Ñ − S/N| = |e_S − (S/N)·e_N| / Ñ <= (h_S + r·h_N) / Ñ,  r = (upper−lower)/2,
// capped at upper − lower.
Estimate EstimateAverage(double noisy_centered_sum, double sum_half_width, double noisy_count,
                         double count_half_width, double lower, double upper);

// VARIANCE (population) from S̃, the noisy sum of squares of the re-centred
// values Q̃, and Ñ: Q̃/Ñ − (S̃/Ñ)², clamped to [0, r²]. Half-width (each input
// at PerInputLevel(level, 3)): d_Q + d_S·(2r + d_S) with d_Q = (h_Q + r²·h_N)/Ñ
// and d_S = (h_S + r·h_N)/Ñ, capped at r².
Estimate EstimateVariance(double noisy_centered_sum, double sum_half_width,
                          double noisy_centered_sum_of_squares, double squares_half_width,
                          double noisy_count, double count_half_width, double lower, double upper);

// STDDEV = √VARIANCE; since |√a − √b| <= √|a − b|, half-width √(variance
// half-width), capped at r.
Estimate EstimateStddev(double noisy_centered_sum, double sum_half_width,
                        double noisy_centered_sum_of_squares, double squares_half_width,
                        double noisy_count, double count_half_width, double lower, double upper);

}  // namespace dpgate::mechanisms
