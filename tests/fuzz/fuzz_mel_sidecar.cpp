// libFuzzer: the mel dataset sidecar reader (audio/prepare_audio.cpp parse_mel_sidecar, is_mel_sidecar)
// on arbitrary text; std::runtime_error is the only accepted failure.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "audio/prepare_audio.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)ds::is_mel_sidecar(text);
  try {
    const ds::MelDatasetInfo info = ds::parse_mel_sidecar(text, "fuzz.json");
    (void)info.median_ref_db();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
