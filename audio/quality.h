// `inspect quality`: is a mel GAN's output music-like, measured against the real slices of its own
// dataset (issue 7's five bars). The figures, each computed for the generated set and, in its place,
// for a second evenly spread set of real slices (real against real, which must sit well inside the bar):
//
//   1 not collapsed  mean pairwise distance between generated mel images ≥ ½ that between real ones
//   2 not copied     median distance from a generated image to its nearest training image ≥ ½ the
//                    median nearest-neighbour distance among training images (a training slice's
//                    neighbours exclude itself and the slices sharing audio with it: same file, starts
//                    less than one slice apart, which overlapping hops make near-copies by construction)
//   3 tonal          median spectral flatness of the generated slices' audio within 10× of the real
//                    slices' median, both sent through listen's inversion (invert_mel_image)
//   4 mel spectrum   the average mel spectrum (per band, dB) within 3 dB RMS of the training set's, or
//                    within 1.5× the RMS difference between two random halves of it where that is larger
//   5 D not winning  mean D(G(z)) over the last quarter of the run's log.jsonl > 0.05 (the lower of
//                    D_G_z1 and D_G_z2 means)
//
// Distances are RMS differences of mel images expressed in dB (x in [−1, 1] spans top_db dB), so
// 1 dB means the images differ by 1 dB per pixel on average (root mean square). Spectral flatness is
// librosa.feature.spectral_flatness (power 2, amin 1e-10) of the dataset's own STFT, the mean over
// frames: near 1 for white noise, near 0 for a few tones.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "audio/listen.h"
#include "audio/prepare_audio.h"

namespace ds {

struct QualityOptions {
  int64_t n_generated = 64;   // generated slices (listen's noise: Philox(listen.seed, stream 0))
  int64_t n_real = 32;        // real slices in each of the two evenly spread real sets
  uint64_t split_seed = 7;    // the random halves of figure 4
  ListenOptions listen;       // the inversion of figure 3 (listen's defaults)
  bool progress = true;       // one stderr line per stage
};

struct QualityFigure {
  std::string name;        // "not collapsed", ...
  std::string measure;     // what value and reference are, with unit
  double value = 0;        // the generated set's figure
  double reference = 0;    // the real set's figure it is compared with (NaN when none)
  double real_value = 0;   // the second real set's figure in the generated set's place (NaN: none)
  std::string bar;         // the bar, as text
  bool pass = false;
  bool real_pass = false;  // the second real set against the same bar
};

struct QualityReport {
  std::vector<QualityFigure> figures;
  int64_t n_generated = 0, n_real = 0, n_train = 0;
  bool all_pass() const;
  // One header line and one line per figure: value, reference, bar, real against real, PASS/FAIL.
  std::string text() const;
};

// The five figures from arrays (the tests' entry point). train: the whole dataset (n_train × H×W,
// [−1, 1]) described by info; generated: n_gen × H×W in [−1, 1], inverted at info.median_ref_db();
// log_jsonl: the run's log.jsonl text (empty: figure 5 fails, saying there is no log).
// Throws std::invalid_argument when fewer than 4 training slices or 2 generated ones are given.
QualityReport assess_quality(const MelDatasetInfo& info, const float* train, int64_t n_train, const float* generated,
                             int64_t n_gen, const std::string& log_jsonl, const QualityOptions& options);

// The whole command: the checkpoint's generator (listen's), the dataset (npy + sidecar, whose layout
// must match the checkpoint's) and the log.jsonl beside the checkpoint (log_path empty) or at log_path.
QualityReport assess_quality(const std::string& checkpoint, const std::string& data_npy, const std::string& log_path,
                             const QualityOptions& options);

// ---- the measures, exposed for tests ----
// RMS difference of two images of n pixels, in dB (top_db / 2 dB per unit of x).
double mel_image_distance_db(const float* a, const float* b, int64_t n, double top_db);
// Mean over the n·(n−1)/2 pairs of mel_image_distance_db.
double mean_pairwise_distance_db(const float* images, int64_t n, int64_t size, double top_db);
// librosa.feature.spectral_flatness(y, n_fft, hop, power=2, amin=1e-10, center, pad_mode) averaged over
// frames: per frame exp(mean log S) / mean S with S = max(|STFT|², amin).
double spectral_flatness(const float* audio, int64_t n, const MelParams& p);
// Per image row (mel band), the mean dB (relative to each slice's peak, as stored) over the images'
// columns: H values.
std::vector<double> mean_band_db(const float* images, int64_t n, int64_t height, int64_t width, double top_db);
// The run's figure 5 from log.jsonl text: means of D_G_z1 and D_G_z2 over the logged steps > ¾ of the
// last step (the last line of a step wins, so a rerun appended to the log counts once). Returns false
// when no line has both keys.
bool mean_dgz_last_quarter(const std::string& log_jsonl, double* d_g_z1, double* d_g_z2, int64_t* lines_used);

}  // namespace ds
