// libFuzzer: audio/decode.cpp's decode_audio (libsndfile: WAV, FLAC, Ogg, ... headers and data) on
// arbitrary bytes written to a scratch file; std::runtime_error is the only accepted failure.
// libsndfile itself is Debian's, not instrumented: this checks darkstar's use of it (sizes, channel
// counts, rates, frame counts it reports), not libsndfile's internals.
#include <cstdint>
#include <stdexcept>

#include "audio/decode.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ds::fuzz::write_scratch("input.audio", data, size);
  try {
    const ds::DecodedAudio audio = ds::decode_audio(path);
    if (audio.frames != static_cast<int64_t>(audio.samples.size()) || audio.frames == 0) __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
