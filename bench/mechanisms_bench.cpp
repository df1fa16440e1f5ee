// Draws per second of each mechanism on one thread (docs/PRIVACY.md §1–§5).
// Results: bench/RESULTS.md, section "mechanisms".
#include <benchmark/benchmark.h>

#include "dpgate/mechanisms/discrete_gaussian.h"
#include "dpgate/mechanisms/discrete_laplace.h"
#include "dpgate/mechanisms/partition_selection.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/mechanisms/snapped_noise.h"

namespace mech = dpgate::mechanisms;

namespace {

void BM_RngUniformDouble(benchmark::State& state) {
  mech::RandomSource& rng = mech::SecureRandom();
  for (auto _ : state) benchmark::DoNotOptimize(rng.UniformDouble());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RngUniformDouble);

void BM_RngUniformBelow(benchmark::State& state) {
  mech::RandomSource& rng = mech::SecureRandom();
  for (auto _ : state) benchmark::DoNotOptimize(rng.UniformBelow(1'000'003));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RngUniformBelow);

// Discrete Laplace at ε = 1 with sensitivity 1 (scale 1), 10 (scale 10) and
// a large scale as used on snapped grids (2^30).
void BM_DiscreteLaplace(benchmark::State& state) {
  auto dl = mech::DiscreteLaplace::BuildWithScale(static_cast<double>(state.range(0)));
  mech::RandomSource& rng = mech::SecureRandom();
  for (auto _ : state) benchmark::DoNotOptimize(dl->Sample(rng));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DiscreteLaplace)->Arg(1)->Arg(10)->Arg(1 << 30);

void BM_DiscreteLaplaceEpsilon(benchmark::State& state) {
  // A non-dyadic scale: ε = 0.3, Δ = 1 (scale 3.333...).
  auto dl = mech::DiscreteLaplace::Build(0.3, mech::Sensitivity{1, 1});
  mech::RandomSource& rng = mech::SecureRandom();
  for (auto _ : state) benchmark::DoNotOptimize(dl->Sample(rng));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DiscreteLaplaceEpsilon);

void BM_DiscreteGaussian(benchmark::State& state) {
  auto dg = mech::DiscreteGaussian::BuildWithSigma(static_cast<double>(state.range(0)));
  mech::RandomSource& rng = mech::SecureRandom();
  for (auto _ : state) benchmark::DoNotOptimize(dg->Sample(rng));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DiscreteGaussian)->Arg(4)->Arg(100)->Arg(1 << 24);

void BM_SnappedLaplace(benchmark::State& state) {
  auto n = mech::SnappedNoise::BuildLaplace(1.0, mech::Sensitivity{500000, 4});
  mech::RandomSource& rng = mech::SecureRandom();
  double v = 123456.789;
  for (auto _ : state) benchmark::DoNotOptimize(n->AddNoise(v, rng));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SnappedLaplace);

void BM_SnappedGaussian(benchmark::State& state) {
  auto n = mech::SnappedNoise::BuildGaussian(1.0, 1e-6, mech::Sensitivity{500000, 4});
  mech::RandomSource& rng = mech::SecureRandom();
  double v = 123456.789;
  for (auto _ : state) benchmark::DoNotOptimize(n->AddNoise(v, rng));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SnappedGaussian);

void BM_PartitionSelection(benchmark::State& state) {
  const auto rule = state.range(0) == 0 ? mech::PartitionRule::kTruncatedGeometric
                                        : mech::PartitionRule::kLaplaceThreshold;
  auto ps = mech::PartitionSelection::Build(1.0, 1e-6, 4, rule);
  mech::RandomSource& rng = mech::SecureRandom();
  int64_t n = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ps->Keep(1 + (n++ & 63), rng));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PartitionSelection)->Arg(0)->Arg(1);

// Build costs (per query and column in the proxy).
void BM_BuildDiscreteGaussian(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        mech::DiscreteGaussian::Build(0.5, 1e-7, mech::Sensitivity{1, 1}).ok());
  }
}
BENCHMARK(BM_BuildDiscreteGaussian);

void BM_BuildPartitionSelection(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(mech::PartitionSelection::Build(0.5, 1e-7, 4).ok());
  }
}
BENCHMARK(BM_BuildPartitionSelection);

}  // namespace

BENCHMARK_MAIN();
