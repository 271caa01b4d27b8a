// Result-against-reference comparisons shared by the doctor and the tests (see compare.h).
#include "engine/core/compare.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ds {

double max_normalised_error(const std::vector<float>& got, const std::vector<float>& want, double floor) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double err = 0, scale = floor;
  for (size_t k = 0; k < got.size(); ++k) {
    const double d = std::fabs(double(got[k]) - double(want[k]));
    if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
    err = std::max(err, d);
    scale = std::max(scale, std::fabs(double(want[k])));
  }
  if (err == 0) return 0;
  return scale > 0 ? err / scale : std::numeric_limits<double>::infinity();
}

AdamWeightComparison compare_weights_after_adam(const std::vector<float>& weights_got,
                                                const std::vector<float>& weights_want,
                                                const std::vector<float>& grads_got,
                                                const std::vector<float>& grads_want, double lr) {
  AdamWeightComparison c;
  const size_t n = weights_want.size();
  if (weights_got.size() != n || grads_got.size() != n || grads_want.size() != n) {
    c.worst_excess_in_lr = std::numeric_limits<double>::infinity();
    return c;
  }
  for (size_t i = 0; i < n; ++i) {
    const double dw = std::fabs(double(weights_got[i]) - double(weights_want[i]));
    const double dg = std::fabs(double(grads_got[i]) - double(grads_want[i]));
    const double g = std::fabs(double(grads_want[i]));
    double excess;
    if (!std::isfinite(dw) || !std::isfinite(dg)) {
      excess = std::numeric_limits<double>::infinity();
    } else {
      const double relative = dg >= g ? 1.0 : dg / g;
      c.sign_flips += dg >= g && dg > 0;
      excess = (dw - (0.05 + 2.5 * relative) * lr) / lr;
    }
    ++c.compared;
    if (excess > c.worst_excess_in_lr || c.worst_index < 0) {
      c.worst_excess_in_lr = excess;
      c.worst_index = static_cast<int64_t>(i);
    }
  }
  return c;
}

}  // namespace ds
