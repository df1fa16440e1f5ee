// dpgate sample: print draws of a mechanism for a given true value, one per
// line, so anyone can audit the noise distribution (DESIGN.md §3,
// docs/PRIVACY.md §3–§4). Integer value and sensitivity (and no explicit
// granularity) use the discrete mechanism directly; anything else uses the
// snapped real-valued mechanism. Noise comes from the OpenSSL CSPRNG.
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "commands.h"
#include "dpgate/mechanisms/discrete_gaussian.h"
#include "dpgate/mechanisms/discrete_laplace.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/mechanisms/snapped_noise.h"

namespace dpgate::app {
namespace {

namespace mech = dpgate::mechanisms;

constexpr const char* kUsage =
    "usage: dpgate sample --mechanism laplace|gaussian [--epsilon E] [--delta D]\n"
    "                     [--sensitivity S] [--max-groups K] [--value V] [-n N]\n"
    "                     [--granularity auto|G]\n"
    "\n"
    "Print N draws of value + noise, one per line, from the CSPRNG.\n"
    "  --mechanism     laplace (epsilon-DP) or gaussian ((epsilon, delta)-DP)\n"
    "  --epsilon       > 0 (default 1)\n"
    "  --delta         in (0, 1), gaussian only (default 1e-6)\n"
    "  --sensitivity   per-group sensitivity > 0 (default 1)\n"
    "  --max-groups    groups one unit may touch, >= 1 (default 1): L1 = K*S, L2 = sqrt(K)*S\n"
    "  --value         the true value (default 0)\n"
    "  -n              number of draws, 1..1000000000 (default 1)\n"
    "  --granularity   auto (default) or a power of two: the output grid for real values\n"
    "Integer value and sensitivity with automatic granularity print integers (discrete\n"
    "Laplace / discrete Gaussian); otherwise values snapped to the granularity grid.\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "dpgate sample: %s\n(run 'dpgate sample --help' for usage)\n",
               message.c_str());
  return 2;
}

std::optional<double> ParseDouble(const std::string& text) {
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool IsInteger(double v) {
  return std::floor(v) == v && std::fabs(v) < 0x1.0p62;
}

class LineWriter {
 public:
  ~LineWriter() { Flush(); }
  void Integer(int64_t v) {
    Reserve();
    used_ += std::snprintf(buf_ + used_, 32, "%lld\n", static_cast<long long>(v));
  }
  void Real(double v) {
    Reserve();
    used_ += std::snprintf(buf_ + used_, 40, "%.17g\n", v);
  }
  void Flush() {
    std::fwrite(buf_, 1, used_, stdout);
    used_ = 0;
  }

 private:
  void Reserve() {
    if (used_ + 48 > sizeof buf_) Flush();
  }
  char buf_[1 << 16];
  size_t used_ = 0;
};

}  // namespace

int RunSample(const Args& args) {
  std::string mechanism;
  double epsilon = 1, delta = 1e-6, sensitivity = 1, value = 0, granularity = 0;
  int64_t max_groups = 1, n = 1;
  bool delta_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= args.size()) return Fail("missing value after " + flag);
    const std::string& text = args[++i];
    if (flag == "--mechanism") {
      mechanism = text;
      if (mechanism != "laplace" && mechanism != "gaussian") {
        return Fail("--mechanism must be laplace or gaussian, got '" + text + "'");
      }
      continue;
    }
    if (flag == "--granularity" && text == "auto") {
      granularity = 0;
      continue;
    }
    const std::optional<double> v = ParseDouble(text);
    if (!v) {
      std::string message = flag;
      message += " needs a finite number, got '";
      message += text;
      message += "'";
      return Fail(message);
    }
    if (flag == "--epsilon") {
      epsilon = *v;
    } else if (flag == "--delta") {
      delta = *v;
      delta_given = true;
    } else if (flag == "--sensitivity") {
      sensitivity = *v;
    } else if (flag == "--value") {
      value = *v;
    } else if (flag == "--granularity") {
      granularity = *v;
      if (!(granularity > 0)) return Fail("--granularity must be auto or a power of two > 0");
    } else if (flag == "--max-groups") {
      if (!IsInteger(*v) || *v < 1) return Fail("--max-groups must be an integer >= 1");
      max_groups = static_cast<int64_t>(*v);
    } else if (flag == "-n") {
      if (!IsInteger(*v) || *v < 1 || *v > 1e9) {
        return Fail("-n must be an integer in 1..1000000000, got '" + text + "'");
      }
      n = static_cast<int64_t>(*v);
    } else {
      return Fail("unknown option '" + flag + "'");
    }
  }
  if (mechanism.empty()) return Fail("--mechanism laplace|gaussian is required");
  if (mechanism == "laplace" && delta_given) {
    return Fail("--delta applies to --mechanism gaussian only (laplace is pure epsilon-DP)");
  }
  const mech::Sensitivity sens{sensitivity, max_groups};
  mech::RandomSource& rng = mech::SecureRandom();
  LineWriter out;

  if (granularity == 0 && IsInteger(value) && IsInteger(sensitivity)) {
    const auto v = static_cast<int64_t>(value);
    if (mechanism == "laplace") {
      auto noise = mech::DiscreteLaplace::Build(epsilon, sens);
      if (!noise) return Fail(noise.error().message);
      for (int64_t i = 0; i < n; ++i) out.Integer(noise->AddNoise(v, rng));
    } else {
      auto noise = mech::DiscreteGaussian::Build(epsilon, delta, sens);
      if (!noise) return Fail(noise.error().message);
      for (int64_t i = 0; i < n; ++i) out.Integer(noise->AddNoise(v, rng));
    }
    return 0;
  }
  auto noise = mechanism == "laplace"
                   ? mech::SnappedNoise::BuildLaplace(epsilon, sens, granularity)
                   : mech::SnappedNoise::BuildGaussian(epsilon, delta, sens, granularity);
  if (!noise) return Fail(noise.error().message);
  for (int64_t i = 0; i < n; ++i) out.Real(noise->AddNoise(value, rng));
  return 0;
}

}  // namespace dpgate::app
