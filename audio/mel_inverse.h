// CPU reference of mel power → linear magnitude: per-frame non-negative least squares
// min ||M s − p||² s.t. s ≥ 0, solved by accelerated projected gradient (FISTA with adaptive restart)
// from a clipped pseudo-inverse, for a fixed number of iterations.
#pragma once
#include <cstdint>
#include <vector>

namespace ds {

// Why not librosa's solver: librosa.feature.inverse.mel_to_stft calls librosa.util.nnls
// (librosa/util/_nnls.py), which starts from the clipped minimum-norm least-squares solution
// (pinv(M)·P or lstsq, clipped at 0) and runs scipy.optimize.fmin_l_bfgs_b with bounds s ≥ 0 on
// ½||M S − P||² until scipy's tolerances are met. L-BFGS-B's
// data-dependent line searches and stopping rule do not map onto a GPU batch of frames; projected
// gradient with Nesterov momentum (Beck & Teboulle 2009, FISTA) minimises the same bounded objective
// from the same start with one fixed step (1/λ_max(M Mᵀ)), a fixed iteration count and elementwise
// work only, so the CPU reference and a CUDA version (two mat-vecs per frame per iteration) do the
// same arithmetic. The momentum restarts whenever it points against the last step (O'Donoghue &
// Candès 2015, gradient restart), which keeps the iteration monotone-ish on this badly conditioned
// problem. The result is a minimiser (to the iteration budget) of the same objective as librosa's,
// not necessarily the same one: with n_freqs > n_mels the non-negative solutions form a set.
//
// mel_power: n_mels × frames (mel power, e.g. undone dB); filterbank: n_mels × n_freqs (as
// mel_filterbank / librosa.filters.mel); returns n_freqs × frames magnitude = sqrt(power) ≥ 0.
// Rows/columns of the filterbank that are all zero (empty bands, bins above fmax) are handled: the
// pseudo-inverse drops null directions and those bins stay 0.
std::vector<float> mel_to_linear(const float* mel_power, const float* filterbank, int n_mels, int n_freqs,
                                 int64_t frames, int iters = 200);

// What mel_to_linear_power computes once per filterbank before its per-frame loop, shared with the
// GPU version (audio/mel_inverse_gpu.h) so both start from the very same doubles.
struct NnlsPlan {
  int n_mels = 0, n_freqs = 0;
  std::vector<int> row_begin, row_end;  // filterbank row m is non-zero only in [row_begin[m], row_end[m])
  std::vector<double> g_pinv;           // n_mels × n_mels: (M Mᵀ)⁺, null directions dropped
  double step = 0.0;                    // 1 / λ_max(M Mᵀ)
  bool explains_nothing = false;        // λ_max <= 0 (an all-zero filterbank): the answer is all zeros
};
// Throws std::invalid_argument for n_mels or n_freqs <= 0.
NnlsPlan plan_nnls(const float* filterbank, int n_mels, int n_freqs);

// The same, returning the power (no square root): what the tests compare M·S against.
std::vector<float> mel_to_linear_power(const float* mel_power, const float* filterbank, int n_mels,
                                       int n_freqs, int64_t frames, int iters = 200);

}  // namespace ds
