// Generated sound in TensorBoard during training on a mel dataset: at each sample step a few of the
// fixed-noise mel images go through the same inversion as `listen` (invert_mel_image: mel → linear,
// Griffin-Lim) on a background worker thread, and land in the run's event file as Summary.Audio (WAV
// bytes) and the mel image (magma, as `listen` writes it). The training loop never waits for it.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "audio/listen.h"
#include "audio/prepare_audio.h"
#include "engine/train/telemetry.h"

namespace ds {

// A mono 16-bit PCM WAV (plain WAVE_FORMAT_PCM, 44-byte header) in memory: what browsers play in
// TensorBoard's audio dashboard. Samples beyond ±1 are clipped; x → round(x · 32767).
std::string encode_wav_pcm16(const float* samples, int64_t n, int sample_rate);

struct AudioPreviewOptions {
  int clips = 2;               // fixed-noise samples 0 .. clips−1 (at most n_samples)
  double seconds_total = 6.0;  // each clip is cut to seconds_total / clips (a few seconds in all)
  ListenOptions listen;        // the inversion's settings (listen's defaults); always run on the CPU
};

// Tags: "audio/clip_<i>" (Summary.Audio) and "mel/clip_<i>" (Summary.Image, RGB) at the sample step.
class MelAudioPreview {
 public:
  // info: the training dataset's mel sidecar (its height/width are the samples' H and W).
  MelAudioPreview(MelDatasetInfo info, AudioPreviewOptions options);
  ~MelAudioPreview();  // waits for the job in flight, drops one not started
  MelAudioPreview(const MelAudioPreview&) = delete;
  MelAudioPreview& operator=(const MelAudioPreview&) = delete;

  // The trainer's hook (telemetry.h). on_samples never waits: the job goes to the worker's single
  // pending slot; a pending job that has not started yet is replaced (counted in skipped(), with a notice
  // on stderr), so the newest step always lands. finish() waits until the worker is idle.
  SampleHook hook();
  void submit(const std::shared_ptr<TensorBoardWriter>& tb, int64_t step, const std::vector<float>& samples);
  void finish();

  int64_t written() const;  // steps whose audio was written
  int64_t skipped() const;
  std::string last_error() const;  // empty unless a job failed (it is reported on stderr, training goes on)

 private:
  struct Job {
    std::shared_ptr<TensorBoardWriter> tb;
    int64_t step = 0;
    std::vector<float> images;  // clips × H × W
  };
  void work();
  void run_job(const Job& job);

  MelDatasetInfo info_;
  AudioPreviewOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_, idle_;
  bool has_pending_ = false, running_ = false, stop_ = false;
  Job pending_;
  int64_t written_ = 0, skipped_ = 0;
  std::string last_error_;
  std::thread worker_;
};

// A preview for the dataset npy_path when it is a mel dataset (its sidecar says kind "mel"), else null.
std::unique_ptr<MelAudioPreview> mel_audio_preview_for(const std::string& npy_path,
                                                       const AudioPreviewOptions& options = {});

}  // namespace ds
