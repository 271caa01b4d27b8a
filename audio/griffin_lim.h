// CPU reference of the way back to sound: complex STFT / iSTFT with librosa's semantics (kissfft),
// fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013, as librosa.griffinlim) and its per-element
// phase update, which kernels/griffin_lim.cu mirrors, and the spectral convergence it is judged by.
//
// Layouts: a complex spectrum is frames × n_freqs (one frame's n_fft/2 + 1 bins contiguous, the layout
// of a batched R2C FFT); a magnitude handed to griffin_lim is n_freqs × frames (librosa's layout and
// mel_to_linear's output), transposed once on entry.
#pragma once
#include <complex>
#include <cstdint>
#include <vector>

#include "audio/mel_params.h"

namespace ds {

using complexf = std::complex<float>;

// Periodic Hann of p.win samples (scipy.signal.get_window('hann', win, fftbins=True):
// 0.5 − 0.5·cos(2πn/win)), zero-padded on both sides to n_fft as librosa.util.pad_center does.
std::vector<float> stft_window(const MelParams& p);

// librosa.stft(x, n_fft, hop, win, window='hann', center, pad_mode) of L samples, transposed:
// frames × n_freqs with frames = p.stft_frames(L). center=True pads n_fft/2 samples on each side,
// zeros ("constant") or a mirror without the edge sample ("reflect", needs L > n_fft/2).
// Bin k of frame t = Σ_n w[n]·xpad[t·hop + n]·e^{−2πi·kn/n_fft} (unnormalised, as numpy.fft.rfft).
std::vector<complexf> stft(const float* x, int64_t L, const MelParams& p);

// librosa.istft(spectrum.T, hop, win, n_fft, window='hann', center, length): overlap-add of
// w·irfft(frame) (irfft normalised by 1/n_fft as numpy's), divided by the overlap-added w² where that
// sum exceeds FLT_MIN (untouched elsewhere), the first n_fft/2 samples dropped when centred, then cut
// or zero-extended to `length` samples. length < 0: hop·(frames − 1) when centred (librosa's
// length=None), else n_fft + hop·(frames − 1). istft(stft(x), L) == x to float precision.
// spectrum: frames × n_freqs.
std::vector<float> istft(const complexf* spectrum, int64_t frames, const MelParams& p, int64_t length = -1);

// One fast-Griffin-Lim phase update of n spectrum elements, exactly librosa.griffinlim's loop body
// (librosa 0.10, momentum form of Perraudin et al. 2013): for every i,
//   a          = rebuilt[i] − (momentum / (1 + momentum)) · tprev[i]
//   a          = a / (|a| + FLT_MIN)                (a unit phasor; 0 stays 0)
//   angles[i]  = magnitude[i] · a                   (just a when magnitude == nullptr)
//   tprev[i]   = rebuilt[i]
// rebuilt is the STFT of the iSTFT of the previous angles; tprev must be all zeros before the first
// update (librosa's tprev = None). |a| is computed as std::abs (hypot; cuda: hypotf), in float.
// magnitude uses the same layout as the spectra (frames × n_freqs for the engine's callers).
void griffin_lim_phase_update(complexf* angles, complexf* tprev, const complexf* rebuilt,
                              const float* magnitude, int64_t n, float momentum);

// Fast Griffin-Lim: samples whose STFT magnitude approaches `magnitude` (n_freqs × frames).
// Initial phases: random_init → e^{2πi·u}, u the Philox(seed, stream 0) uniforms of fill_uniform taken
// in frames × n_freqs order (librosa init='random'); else all phases 0 (librosa init=None).
// Then `iters` times: rebuilt = stft(istft(angles, length)); griffin_lim_phase_update(...). Returns
// istft(angles, length) (length < 0 as istft). momentum 0 is plain Griffin-Lim (Griffin & Lim 1984);
// librosa's default and the engine's is 0.99.
std::vector<float> griffin_lim(const float* magnitude, int64_t frames, const MelParams& p, int iters,
                               float momentum, uint64_t seed, int64_t length = -1, bool random_init = true);

// ||target − achieved||_F / ||target||_F over n magnitudes (accumulated in double); 0 when both are 0.
double spectral_convergence(const float* target, const float* achieved, int64_t n);

// |spectrum| transposed to n_freqs × frames (spectrum: frames × n_freqs), for comparing with a
// magnitude given to griffin_lim.
std::vector<float> stft_magnitude(const complexf* spectrum, int64_t frames, int n_freqs);

}  // namespace ds
