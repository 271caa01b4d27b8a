// Background inversion of generated mels into TensorBoard audio (see tensorboard_audio.h).
#include "audio/tensorboard_audio.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "audio/inspect_mel.h"
#include "engine/data/image_dataset.h"
#include "engine/formats/png.h"

namespace ds {

std::string encode_wav_pcm16(const float* samples, int64_t n, int sample_rate) {
  if (n < 0 || n > (int64_t(1) << 30)) throw std::runtime_error("WAV: " + std::to_string(n) + " samples do not fit");
  if (sample_rate <= 0) throw std::runtime_error("WAV: sample rate " + std::to_string(sample_rate) + " is not positive");
  const uint32_t data_bytes = static_cast<uint32_t>(n) * 2;
  std::string b;
  b.reserve(44 + data_bytes);
  auto u16 = [&](uint32_t v) { b.push_back(static_cast<char>(v & 0xff)); b.push_back(static_cast<char>((v >> 8) & 0xff)); };
  auto u32 = [&](uint32_t v) { u16(v & 0xffff); u16(v >> 16); };
  b += "RIFF";
  u32(36 + data_bytes);
  b += "WAVEfmt ";
  u32(16);
  u16(1);  // WAVE_FORMAT_PCM
  u16(1);  // mono
  u32(static_cast<uint32_t>(sample_rate));
  u32(static_cast<uint32_t>(sample_rate) * 2);  // bytes per second
  u16(2);                                       // block align
  u16(16);                                      // bits per sample
  b += "data";
  u32(data_bytes);
  for (int64_t i = 0; i < n; ++i) {
    const float x = std::isnan(samples[i]) ? 0.f : std::clamp(samples[i], -1.f, 1.f);
    u16(static_cast<uint32_t>(static_cast<int16_t>(std::lround(x * 32767.0f))) & 0xffff);
  }
  return b;
}

MelAudioPreview::MelAudioPreview(MelDatasetInfo info, AudioPreviewOptions options)
    : info_(std::move(info)), options_(std::move(options)) {
  if (options_.clips < 1) throw std::invalid_argument("audio preview: clips must be at least 1");
  options_.listen.device = Device::CPU;  // the training stream stays the trainer's own
  worker_ = std::thread([this] { work(); });
}

MelAudioPreview::~MelAudioPreview() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    has_pending_ = false;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

SampleHook MelAudioPreview::hook() {
  SampleHook h;
  h.on_samples = [this](const std::shared_ptr<TensorBoardWriter>& tb, int64_t step, const std::vector<float>& s) {
    submit(tb, step, s);
  };
  h.finish = [this] { finish(); };
  return h;
}

void MelAudioPreview::submit(const std::shared_ptr<TensorBoardWriter>& tb, int64_t step,
                             const std::vector<float>& samples) {
  const int64_t image_size = info_.height * info_.width;
  if (image_size <= 0 || samples.size() % static_cast<size_t>(image_size) != 0)
    throw std::invalid_argument("audio preview: " + std::to_string(samples.size()) +
                                " sample values are not whole mel images of " + std::to_string(info_.height) + "x" +
                                std::to_string(info_.width));
  const int64_t clips = std::min<int64_t>(options_.clips, static_cast<int64_t>(samples.size()) / image_size);
  Job job{tb, step, std::vector<float>(samples.begin(), samples.begin() + clips * image_size)};
  int64_t replaced_step = -1, skipped = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (has_pending_) {
      replaced_step = pending_.step;
      skipped = ++skipped_;
    }
    pending_ = std::move(job);
    has_pending_ = true;
  }
  if (replaced_step >= 0)
    std::fprintf(stderr, "darkstar: TensorBoard audio of step %lld skipped: the inversion worker was still busy (%lld skipped so far)\n",
                 static_cast<long long>(replaced_step), static_cast<long long>(skipped));
  wake_.notify_one();
}

void MelAudioPreview::finish() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [this] { return !has_pending_ && !running_; });
}

int64_t MelAudioPreview::written() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return written_;
}
int64_t MelAudioPreview::skipped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return skipped_;
}
std::string MelAudioPreview::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

void MelAudioPreview::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stop_ || has_pending_; });
      if (stop_) break;
      job = std::move(pending_);
      has_pending_ = false;
      running_ = true;
    }
    std::string error;
    try {
      run_job(job);
    } catch (const std::exception& e) {
      error = e.what();
      std::fprintf(stderr, "darkstar: TensorBoard audio of step %lld failed: %s\n", static_cast<long long>(job.step),
                   e.what());
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = false;
      if (error.empty()) ++written_;
      else last_error_ = error;
    }
    idle_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  running_ = false;
  idle_.notify_all();
}

void MelAudioPreview::run_job(const Job& job) {
  const MelParams& p = info_.mel;
  const int h = static_cast<int>(info_.height), w = static_cast<int>(info_.width);
  const int64_t image_size = info_.height * info_.width;
  const int64_t clips = static_cast<int64_t>(job.images.size()) / image_size;
  const double ref_db = info_.median_ref_db();  // the level `listen` gives generated audio
  const int64_t keep = std::max<int64_t>(1, std::llround(options_.seconds_total / static_cast<double>(clips) * p.sr));
  for (int64_t i = 0; i < clips; ++i) {
    const float* image = job.images.data() + i * image_size;
    std::vector<float> audio = invert_mel_image(image, p, ref_db, options_.listen, nullptr);
    const int64_t n = std::min<int64_t>(keep, static_cast<int64_t>(audio.size()));
    const std::string wav = encode_wav_pcm16(audio.data(), n, p.sr);
    const std::vector<uint8_t> rgb = mel_image_rgb(image, h, w);
    const std::vector<uint8_t> png = encode_png(rgb.data(), h, w, 3);
    const std::string suffix = "clip_" + std::to_string(i);
    job.tb->add_audio("audio/" + suffix, wav, static_cast<float>(p.sr), 1, n, job.step);
    job.tb->add_image("mel/" + suffix, std::string(png.begin(), png.end()), h, w, 3, job.step);
  }
  job.tb->flush();
}

std::unique_ptr<MelAudioPreview> mel_audio_preview_for(const std::string& npy_path, const AudioPreviewOptions& options) {
  if (!is_mel_sidecar(load_image_dataset(npy_path).sidecar_json)) return nullptr;
  return std::make_unique<MelAudioPreview>(read_mel_info_for(npy_path), options);
}

}  // namespace ds
