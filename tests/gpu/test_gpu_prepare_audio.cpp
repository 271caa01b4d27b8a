// prepare_audio on a GPU (MelGpu, batches of slices, the last one shorter) against the same call on the
// CPU reference: same slices, same order, same per-slice dB references, images equal to the tolerance
// of test_gpu_spectral.cpp plus float16 rounding.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "audio/prepare_audio.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/npy.h"

namespace fs = std::filesystem;

TEST_CASE("gpu prepare-audio: CUDA and CPU datasets agree on real music") {
  // DARKSTAR_TEST_SONG: the same song elsewhere (the bundle's data/music/song.ogg on a GPU machine).
  const char* env_song = std::getenv("DARKSTAR_TEST_SONG");
  const fs::path song = env_song && *env_song ? env_song
                                              : "/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg";
  REQUIRE_MESSAGE(fs::exists(song), "install fretsonfire-songs-sectoid (apps/setup.sh) or set DARKSTAR_TEST_SONG");
  const fs::path dir = fs::temp_directory_path() / "darkstar_gpu_prepare_audio";
  fs::remove_all(dir);
  fs::create_directories(dir);

  for (const char* preset : {"default", "seed"}) {
    ds::MelOverrides o;
    o.sr = 22050;
    o.slice_seconds = 10.0;
    ds::PrepareAudioOptions options;
    options.mel = ds::build_mel_params(preset, o);
    options.preset = preset;
    options.progress = false;
    options.slices_per_batch = 5;  // 14 slices: two full batches and a shorter one (a second cuFFT plan)
    const std::string cpu_npy = (dir / (std::string(preset) + "_cpu.npy")).string();
    const std::string gpu_npy = (dir / (std::string(preset) + "_gpu.npy")).string();
    options.device = ds::Device::CPU;
    const ds::PrepareAudioResult cpu = ds::prepare_audio(song.string(), cpu_npy, options);
    options.device = ds::Device::CUDA;
    const ds::PrepareAudioResult gpu = ds::prepare_audio(song.string(), gpu_npy, options);
    REQUIRE(gpu.count == cpu.count);
    const std::vector<float> a = ds::read_npy(cpu_npy).to_float(), b = ds::read_npy(gpu_npy).to_float();
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
    // 1e-4 (test_gpu_spectral.cpp's bound on the float image) + one float16 step of values in
    // [0.5, 1] (2^-11 ≈ 4.9e-4), since the two float values may round to neighbouring halves.
    CHECK_MESSAGE(worst <= 1e-4 + 4.9e-4, preset);
    // With the slice index (X.slices.jsonl) beside each dataset: the sidecar alone has no slices.
    const ds::MelDatasetInfo ic = ds::read_mel_dataset_info(cpu.sidecar_path);
    const ds::MelDatasetInfo ig = ds::read_mel_dataset_info(gpu.sidecar_path);
    REQUIRE(ic.slices.size() == static_cast<size_t>(cpu.count));
    REQUIRE(ic.slices.size() == ig.slices.size());
    for (size_t s = 0; s < ic.slices.size(); ++s) {
      CHECK(ic.slices[s].start_seconds == ig.slices[s].start_seconds);
      // The slice maximum of a float mel power (cuFFT + cuBLAS vs kissfft + double sums): ~1e-5
      // relative, 4e-5 dB; 1e-3 dB is the dB tolerance.
      CHECK(std::fabs(ic.slices[s].ref_db - ig.slices[s].ref_db) <= 1e-3);
    }
  }
}
