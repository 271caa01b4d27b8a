// `listen` as library calls: mel images (a dataset slice, generated slices, a latent walk) back to
// sound: [−1, 1] → dB → (+ the slice's dB reference) → mel power → (undo the seed resize) → linear
// magnitude (mel_to_linear, non-negative) → fast Griffin-Lim → float WAV (libsndfile), plus a PNG of
// the mel in the magma colour map, and the spectral convergence of the result.
//
// Spectral convergence reported here: the mel power of the written audio is recomputed with the CPU
// reference (mel_power, same parameters) and compared in the linear-magnitude mel domain,
//   SC = ||sqrt(M_target) − sqrt(M_out)||_F / ||sqrt(M_target)||_F  over the n_mels × frames mel,
// where M_target is the mel power the image describes (after undoing dB, the reference and a resize).
// 0 is perfect; it measures everything the inversion lost (mel → linear and the phase).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "audio/mel_params.h"
#include "audio/prepare_audio.h"
#include "engine/core/tensor.h"

namespace ds {

// How WAV samples are stored. PCM by default: every player, sox and ffmpeg read it without a
// warning; samples beyond ±1 are clipped (ListenResult::peak says by how much; see --normalize).
enum class WavFormat { PCM16, PCM24, Float };
// "pcm16", "pcm24" or "float" (--wav-format); throws std::invalid_argument naming the flag otherwise.
WavFormat parse_wav_format(const std::string& name);

struct ListenOptions {
  int gl_iters = 64;              // --gl-iters
  float momentum = 0.99f;         // fast Griffin-Lim momentum (Perraudin et al. 2013)
  int nnls_iters = 200;           // mel_to_linear's projected-gradient iterations
  uint64_t seed = 0;              // Griffin-Lim's random phases; generated noise (listen_generated/walk)
  bool normalize = false;         // peak-normalise each file to −1 dBFS (else the original level)
  bool write_png = true;          // the mel as a PNG beside each WAV (same name, .png)
  WavFormat wav_format = WavFormat::PCM16;  // --wav-format
  // Where the generator, the mel → linear NNLS and Griffin-Lim run. On CUDA the slices of a call are
  // inverted in chunks (audio/mel_inversion_batch.h): NNLS and Griffin-Lim of a whole chunk at once.
  Device device = Device::CPU;
  int64_t inversion_batch = 0;    // --batch: slices per chunk on CUDA; 0: from the free device memory
  int64_t generator_batch = 16;   // generated images per forward pass
  double crossfade_seconds = 1.0; // listen_walk: raised-cosine crossfade between consecutive slices
  int walk_slices_per_point = 4;  // listen_walk: slices between two random points of the latent path
};

struct ListenResult {
  std::string wav_path, png_path;  // png_path empty when not written
  int sample_rate = 0;
  int64_t samples = 0;
  double spectral_convergence = 0;  // see the header comment; the mean over slices for a walk
  double peak = 0;                  // max |sample| written (> 1 clips in 16-bit players)
  double ref_db = 0;                // the dB reference the level came from
};

// One image (image_height × image_width, values in [−1, 1], row 0 = lowest band) back to audio of
// p.slice_samples() samples at level ref_db. *spectral_convergence (if not null) gets SC as above.
std::vector<float> invert_mel_image(const float* image, const MelParams& p, double ref_db,
                                    const ListenOptions& options, double* spectral_convergence);

// invert_mel_image of n images (n × image_height × image_width) at once, image i with ref_db[i] and
// Griffin-Lim seed seeds[i] (options.seed is not used); returns n × p.slice_samples() samples, slice i what
// invert_mel_image with options.seed = seeds[i] returns (on CUDA up to float rounding: cuFFT and the
// device's hypotf, cosf, sinf). sc (if not null) gets n spectral convergences. CPU: one slice after
// another, exactly invert_mel_image. CUDA: in chunks of options.inversion_batch slices (0: as many as fit,
// said once on stderr), NNLS and Griffin-Lim of a chunk in one batch.
std::vector<float> invert_mel_images(const float* images, int64_t n, const MelParams& p, const double* ref_db,
                                     const uint64_t* seeds, const ListenOptions& options, double* sc);

// Slice `index` of a prepare-audio dataset (npy + its sidecar) → out_wav (+ .png). Throws
// std::runtime_error naming the file (not a mel dataset, no sidecar) or --index (out of range).
ListenResult listen_slice(const std::string& npy, int64_t index, const std::string& out_wav,
                          const ListenOptions& options);

// Where listen_generated writes slice i of n for `out`: out/NNN.wav for a folder; for an out ending in
// .wav (any case), out itself when n is 1 and out's stem + _NNN.wav beside it otherwise (never a folder
// named *.wav). NNN has at least 3 digits, as many as n − 1 needs.
std::vector<std::string> generated_wav_paths(const std::string& out, int64_t n);

// n images from the generator of `checkpoint` (netG.safetensors or last.safetensors; eval mode, noise
// N(0, 1) from Philox(options.seed, stream 0) in sample order) → generated_wav_paths(out_dir, n), each
// with its .png, at the dataset's median ref_db. Throws std::runtime_error "... this checkpoint was not
// trained on a mel dataset ..." when the checkpoint carries no mel sidecar.
std::vector<ListenResult> listen_generated(const std::string& checkpoint, int64_t n, const std::string& out_dir,
                                           const ListenOptions& options);

// The n mel images (n × H×W, [−1, 1]) that listen_generated inverts for the same checkpoint and options:
// eval mode, noise N(0, 1) from Philox(options.seed, stream 0) in sample order. *info (if not null)
// gets the checkpoint's mel sidecar. Throws as listen_generated.
std::vector<float> generate_mel_images(const std::string& checkpoint, int64_t n, const ListenOptions& options,
                                       MelDatasetInfo* info);

// `seconds` of continuous audio: z follows slerp paths between random Gaussian points (a new point
// every walk_slices_per_point slices), consecutive slices are generated and inverted, and overlap-added
// with a raised-cosine crossfade of crossfade_seconds (at most half a slice) into out_wav, exactly
// round(seconds · sr) samples, plus out_wav's .png (the slices' images side by side).
ListenResult listen_walk(const std::string& checkpoint, double seconds, const std::string& out_wav,
                         const ListenOptions& options);

// Spherical interpolation between a and b (n values), as in the DCGAN latent-walk literature (White
// 2016): along the great circle for the directions, t in [0, 1]; falls back to a straight line for
// (anti)parallel vectors.
std::vector<float> slerp(const float* a, const float* b, int64_t n, double t);

// Writes mono samples as a WAV atomically: 16- or 24-bit PCM in WAVE_FORMAT_EXTENSIBLE with the mono
// channel mask (clipped to ±1 full scale, libsndfile's SFC_SET_CLIPPING; without it out-of-range
// values wrap around), or 32-bit float (WAVE_FORMAT_IEEE_FLOAT with an 18-byte fmt chunk and a fact
// chunk, as the RIFF spec wants for non-PCM formats; sox warns about extensible float files).
void write_wav(const std::string& path, const float* samples, int64_t n, int sample_rate, WavFormat format);
// write_wav as 32-bit float.
void write_wav_float(const std::string& path, const float* samples, int64_t n, int sample_rate);

// The magma colour map (matplotlib's, CC0; 33 of its 256 published entries, every 8th and the last,
// interpolated linearly: at most 1.1/255 from the full table). v in [0, 1] → 8-bit RGB.
void magma_rgb(uint8_t rgb[3], double v);
// A mel image (h × w, [−1, 1], row 0 = lowest band) as RGB pixels with the lowest band at the bottom
// and time left → right; and written as a PNG atomically.
std::vector<uint8_t> mel_image_rgb(const float* image, int h, int w);
void write_mel_png(const std::string& path, const float* image, int h, int w);

}  // namespace ds
