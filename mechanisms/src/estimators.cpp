#include "dpgate/mechanisms/estimators.h"

#include <cmath>

namespace dpgate::mechanisms {

double PerInputLevel(double level, int parts) {
  return 1 - (1 - level) / parts;
}

Estimate EstimateCount(double noisy_count, double count_half_width) {
  return Estimate{std::fmax(0.0, noisy_count), count_half_width};
}

Estimate EstimateAverage(double noisy_centered_sum, double sum_half_width, double noisy_count,
                         double count_half_width, double lower, double upper) {
  const double mid = lower / 2 + upper / 2;
  const double r = upper / 2 - lower / 2;
  if (!(noisy_count > 0)) return Estimate{mid, upper - lower};
  const double value = std::fmin(upper, std::fmax(lower, mid + noisy_centered_sum / noisy_count));
  // Clamping into [lower, upper] never increases the error: the true average
  // is in that interval.
  const double hw = (sum_half_width + r * count_half_width) / noisy_count;
  return Estimate{value, std::fmin(hw, upper - lower)};
}

Estimate EstimateVariance(double noisy_centered_sum, double sum_half_width,
                          double noisy_centered_sum_of_squares, double squares_half_width,
                          double noisy_count, double count_half_width, double lower, double upper) {
  const double r = upper / 2 - lower / 2;
  const double r2 = r * r;
  if (!(noisy_count > 0)) return Estimate{r2 / 2, r2};
  const double mean = noisy_centered_sum / noisy_count;
  const double mean_sq = noisy_centered_sum_of_squares / noisy_count;
  const double value = std::fmin(r2, std::fmax(0.0, mean_sq - mean * mean));
  const double d_q = (squares_half_width + r2 * count_half_width) / noisy_count;
  const double d_s = (sum_half_width + r * count_half_width) / noisy_count;
  return Estimate{value, std::fmin(r2, d_q + d_s * (2 * r + d_s))};
}

Estimate EstimateStddev(double noisy_centered_sum, double sum_half_width,
                        double noisy_centered_sum_of_squares, double squares_half_width,
                        double noisy_count, double count_half_width, double lower, double upper) {
  const Estimate var =
      EstimateVariance(noisy_centered_sum, sum_half_width, noisy_centered_sum_of_squares,
                       squares_half_width, noisy_count, count_half_width, lower, upper);
  const double r = upper / 2 - lower / 2;
  return Estimate{std::sqrt(var.value), std::fmin(r, std::sqrt(var.half_width))};
}

}  // namespace dpgate::mechanisms
