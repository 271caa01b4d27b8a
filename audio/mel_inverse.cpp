// Mel power → linear magnitude by projected, accelerated gradient on the NNLS objective (mel_inverse.h).
#include "audio/mel_inverse.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ds {
namespace {

// The filterbank row by row, each row only over its span of non-zero columns (a mel triangle covers a
// few bins), so M·s and Mᵀ·r cost O(non-zeros) instead of O(n_mels · n_freqs).
struct RowSpans {
  std::vector<int> begin, end;  // row m is non-zero only in [begin[m], end[m])
  RowSpans(const float* M, int n_mels, int n_freqs) : begin(n_mels, 0), end(n_mels, 0) {
    for (int m = 0; m < n_mels; ++m) {
      const float* row = M + static_cast<int64_t>(m) * n_freqs;
      int b = 0, e = n_freqs;
      while (b < n_freqs && row[b] == 0.0f) ++b;
      while (e > b && row[e - 1] == 0.0f) --e;
      begin[m] = b;
      end[m] = e;
    }
  }
};

// Eigen-decomposition of the symmetric n×n matrix A (row-major, destroyed) by cyclic Jacobi
// rotations: A = V diag(lambda) Vᵀ, V's columns the eigenvectors. n is n_mels (≤ a few hundred), and
// this runs once per call, so the plain method is enough.
void symmetric_eigen(std::vector<double>& A, int n, std::vector<double>& lambda, std::vector<double>& V) {
  V.assign(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) V[i * n + i] = 1.0;
  auto at = [&](int i, int j) -> double& { return A[static_cast<size_t>(i) * n + j]; };
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0, diag = 0.0;
    for (int i = 0; i < n; ++i) {
      diag += at(i, i) * at(i, i);
      for (int j = i + 1; j < n; ++j) off += at(i, j) * at(i, j);
    }
    if (off <= 1e-30 * diag || off == 0.0) break;
    for (int p = 0; p < n; ++p) {
      for (int q = p + 1; q < n; ++q) {
        const double apq = at(p, q);
        if (apq == 0.0) continue;
        // Rotation zeroing A[p][q] (Golub & Van Loan, Algorithm 8.5.1, symmetric Schur 2×2).
        const double tau = (at(q, q) - at(p, p)) / (2.0 * apq);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::fabs(tau) + std::sqrt(1.0 + tau * tau));
        const double c = 1.0 / std::sqrt(1.0 + t * t), s = t * c;
        for (int k = 0; k < n; ++k) {  // A ← A·J
          const double akp = at(k, p), akq = at(k, q);
          at(k, p) = c * akp - s * akq;
          at(k, q) = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {  // A ← Jᵀ·A
          const double apk = at(p, k), aqk = at(q, k);
          at(p, k) = c * apk - s * aqk;
          at(q, k) = s * apk + c * aqk;
        }
        for (int k = 0; k < n; ++k) {  // V ← V·J
          double& vkp = V[static_cast<size_t>(k) * n + p];
          double& vkq = V[static_cast<size_t>(k) * n + q];
          const double a = vkp, b = vkq;
          vkp = c * a - s * b;
          vkq = s * a + c * b;
        }
      }
    }
  }
  lambda.resize(n);
  for (int i = 0; i < n; ++i) lambda[i] = at(i, i);
}

}  // namespace

NnlsPlan plan_nnls(const float* filterbank, int n_mels, int n_freqs) {
  if (n_mels <= 0 || n_freqs <= 0)
    throw std::invalid_argument("mel_to_linear: bad sizes (n_mels " + std::to_string(n_mels) + ", n_freqs " +
                                std::to_string(n_freqs) + ")");
  NnlsPlan plan;
  plan.n_mels = n_mels;
  plan.n_freqs = n_freqs;
  const RowSpans spans(filterbank, n_mels, n_freqs);
  plan.row_begin = spans.begin;
  plan.row_end = spans.end;
  auto M = [&](int m, int k) { return static_cast<double>(filterbank[static_cast<int64_t>(m) * n_freqs + k]); };

  // G = M Mᵀ (n_mels × n_mels); its eigenvalues give the gradient's Lipschitz constant λ_max(MᵀM) =
  // λ_max(M Mᵀ) and its pseudo-inverse the minimum-norm least-squares start s0 = Mᵀ G⁺ p.
  std::vector<double> G(static_cast<size_t>(n_mels) * n_mels, 0.0);
  for (int a = 0; a < n_mels; ++a)
    for (int b = a; b < n_mels; ++b) {
      double sum = 0.0;
      for (int k = std::max(spans.begin[a], spans.begin[b]); k < std::min(spans.end[a], spans.end[b]); ++k)
        sum += M(a, k) * M(b, k);
      G[a * n_mels + b] = G[b * n_mels + a] = sum;
    }
  std::vector<double> lambda, V;
  symmetric_eigen(G, n_mels, lambda, V);
  const double lambda_max = *std::max_element(lambda.begin(), lambda.end());
  if (!(lambda_max > 0.0)) {  // an all-zero filterbank explains nothing
    plan.explains_nothing = true;
    return plan;
  }
  // Eigenvalues below this are null directions (empty bands), as numpy.linalg.lstsq's rcond cut-off.
  const double cutoff = lambda_max * n_mels * 1e-12;
  std::vector<double>& G_pinv = plan.g_pinv;
  G_pinv.assign(static_cast<size_t>(n_mels) * n_mels, 0.0);
  for (int e = 0; e < n_mels; ++e) {
    if (lambda[e] <= cutoff) continue;
    const double inv = 1.0 / lambda[e];
    for (int a = 0; a < n_mels; ++a)
      for (int b = 0; b < n_mels; ++b) G_pinv[a * n_mels + b] += V[a * n_mels + e] * inv * V[b * n_mels + e];
  }
  plan.step = 1.0 / lambda_max;
  return plan;
}

std::vector<float> mel_to_linear_power(const float* mel_power, const float* filterbank, int n_mels,
                                       int n_freqs, int64_t frames, int iters) {
  if (n_mels <= 0 || n_freqs <= 0 || frames < 0 || iters < 0)
    throw std::invalid_argument("mel_to_linear: bad sizes (n_mels " + std::to_string(n_mels) + ", n_freqs " +
                                std::to_string(n_freqs) + ", frames " + std::to_string(frames) + ", iters " +
                                std::to_string(iters) + ")");
  const NnlsPlan plan = plan_nnls(filterbank, n_mels, n_freqs);
  struct {
    const std::vector<int>& begin;
    const std::vector<int>& end;
  } spans{plan.row_begin, plan.row_end};
  auto M = [&](int m, int k) { return static_cast<double>(filterbank[static_cast<int64_t>(m) * n_freqs + k]); };
  std::vector<float> out(static_cast<size_t>(n_freqs) * frames, 0.0f);
  if (plan.explains_nothing) return out;
  const std::vector<double>& G_pinv = plan.g_pinv;
  const double step = plan.step;

#pragma omp parallel
  {
    std::vector<double> p(n_mels), z(n_mels), r(n_mels), x(n_freqs), x_new(n_freqs), y(n_freqs), g(n_freqs);
    auto mat_vec = [&](std::vector<double>& out_m, const std::vector<double>& v) {  // out_m = M v
      for (int m = 0; m < n_mels; ++m) {
        double sum = 0.0;
        for (int k = spans.begin[m]; k < spans.end[m]; ++k) sum += M(m, k) * v[k];
        out_m[m] = sum;
      }
    };
    auto mat_t_vec = [&](std::vector<double>& out_k, const std::vector<double>& v) {  // out_k = Mᵀ v
      std::fill(out_k.begin(), out_k.end(), 0.0);
      for (int m = 0; m < n_mels; ++m)
        for (int k = spans.begin[m]; k < spans.end[m]; ++k) out_k[k] += M(m, k) * v[m];
    };
#pragma omp for schedule(static)
    for (int64_t t = 0; t < frames; ++t) {
      for (int m = 0; m < n_mels; ++m) p[m] = mel_power[m * frames + t];
      // Start: the minimum-norm least-squares solution, clipped at 0 (librosa.util.nnls's x_init).
      for (int a = 0; a < n_mels; ++a) {
        double sum = 0.0;
        for (int b = 0; b < n_mels; ++b) sum += G_pinv[a * n_mels + b] * p[b];
        z[a] = sum;
      }
      mat_t_vec(x, z);
      for (double& v : x) v = std::max(v, 0.0);
      y = x;
      double momentum_t = 1.0;
      for (int it = 0; it < iters; ++it) {
        mat_vec(r, y);
        for (int m = 0; m < n_mels; ++m) r[m] -= p[m];
        mat_t_vec(g, r);  // ∇ ½||M y − p||² = Mᵀ(M y − p)
        double restart_test = 0.0;
        for (int k = 0; k < n_freqs; ++k) {
          x_new[k] = std::max(y[k] - step * g[k], 0.0);
          restart_test += (y[k] - x_new[k]) * (x_new[k] - x[k]);
        }
        const double next_t = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * momentum_t * momentum_t));
        if (restart_test > 0.0) {  // momentum points uphill: drop it
          momentum_t = 1.0;
          y = x_new;
        } else {
          const double beta = (momentum_t - 1.0) / next_t;
          for (int k = 0; k < n_freqs; ++k) y[k] = x_new[k] + beta * (x_new[k] - x[k]);
          momentum_t = next_t;
        }
        x.swap(x_new);
      }
      for (int k = 0; k < n_freqs; ++k) out[k * frames + t] = static_cast<float>(x[k]);
    }
  }
  return out;
}

std::vector<float> mel_to_linear(const float* mel_power, const float* filterbank, int n_mels, int n_freqs,
                                 int64_t frames, int iters) {
  std::vector<float> s = mel_to_linear_power(mel_power, filterbank, n_mels, n_freqs, frames, iters);
  for (float& v : s) v = std::sqrt(v);
  return s;
}

}  // namespace ds
