// Image datasets: `prepare-images` (a folder of JPEG/PNG/BMP/GIF, or an IDX file such as Fashion-MNIST,
// into a uint8 N×C×H×W .npy plus a .json sidecar) and loading such a dataset back for the trainer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/formats/npy.h"
#include "engine/formats/npy_map.h"

namespace ds {

// DCGAN sides are 4·2^k (4, 8, 16, 32, 64, ...): the generator starts from 4 and doubles per layer.
bool is_dcgan_size(int size);
// Throws std::runtime_error "<flag> <value>: expected 4·2^k ..." when !is_dcgan_size(value).
void check_dcgan_size(int value, const std::string& flag);

// Largest image prepare-images decodes (2^28 pixels: 16k×16k, beyond any photo): a header claiming more
// is refused before stb_image allocates for it (stb's own limit is 2^24 per side).
constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

struct PrepareImagesOptions {
  int64_t limit = 0;   // keep at most this many images (0: all)
  int pad_small = -1;  // -1: on for IDX input, off for folders; 0 off; 1 on (see prepare_images)
  bool progress = true;               // progress lines on stderr
  std::string size_flag = "--size";   // how the CLI names the size, for error messages
};

struct PrepareImagesResult {
  int64_t count = 0;    // images written
  int64_t skipped = 0;  // files in a folder that could not be used
  std::string sidecar_path;
};

// input: a folder (searched recursively, paths sorted, hidden files ignored; every other file is tried
// and skipped with a one-line stderr warning if stb_image cannot decode it) or an IDX file (gzipped or
// plain, unsigned bytes, N×H×W or N×H×W×C). Each image: alpha composited on black; grey replicated to 3
// channels or RGB reduced to BT.601 luma; then, if pad_small is on and the image fits inside the target,
// centred on a canvas of the background value; otherwise centre-cropped to the target aspect and
// resampled per axis (area averaging when shrinking, bilinear when enlarging). Writes out_npy (uint8
// N×C×H×W) and sidecar_path_for(out_npy) atomically, creating the output folder. Throws
// std::runtime_error naming the input, file or flag for: missing input, bad sizes/channels, an empty
// folder or no usable image, a corrupt IDX file.
PrepareImagesResult prepare_images(const std::string& input, const std::string& out_npy, int size_h, int size_w,
                                   int channels, const PrepareImagesOptions& options = {});

// "X.npy" -> "X.json" (any other name gets ".json" appended).
std::string sidecar_path_for(const std::string& npy_path);

// A prepared dataset as the trainer and `inspect` read it: the .npy memory-mapped (rows are read in
// place from the page cache; the file is never copied whole into memory) plus the sidecar's text.
struct ImageDataset {
  DType dtype = DType::U8;  // as stored: U8 (images) or F16 (mel spectrograms, already in [-1, 1])
  int64_t count = 0, channels = 0, height = 0, width = 0;
  std::shared_ptr<const MappedNpy> file;  // count×C×H×W elements of dtype at file->data()
  std::string sidecar_json;               // the sidecar's text, "" if there is none

  int64_t sample_size() const { return channels * height * width; }
  size_t row_bytes() const { return static_cast<size_t>(sample_size()) * dtype_size(dtype); }
  // The stored bytes of row index (row_bytes() of them).
  const uint8_t* row(int64_t index) const { return file->data() + static_cast<size_t>(index) * row_bytes(); }
  // One sample as float in [-1, 1] (x/127.5 - 1 for U8, exact half -> float for F16). out: C×H×W.
  void sample_as_float(float* out, int64_t index) const;
  // The CPU batch gather: out[i, :] = sample_as_float(indices[i]) for i < n (out: n×C×H×W).
  void gather_as_float(float* out, const int32_t* indices, int64_t n) const;
};

// Throws std::runtime_error naming path unless it is a 4-D uint8 or float16 .npy; also if the sidecar
// exists and disagrees with the array's shape.
ImageDataset load_image_dataset(const std::string& path);

// ---- building blocks, exposed for tests --------------------------------------------------------

// One image file's bytes decoded by stb_image (interleaved, *channels 1..4 as stored). Throws
// std::runtime_error with the reason: a header claiming more than max_pixels (refused before stb
// allocates), a JPEG Huffman table that would overflow Debian's stb, or stb's own reason.
std::vector<uint8_t> decode_image(int* height, int* width, int* channels, const uint8_t* bytes, size_t size,
                                  int64_t max_pixels = kMaxImagePixels);

// One channel plane, in_h×in_w -> out_h×out_w, each axis on its own: area averaging (box filter with
// fractional coverage) when that axis shrinks, bilinear (half-pixel centres, edge clamped) when it grows.
void resample_plane(float* out, const float* in, int in_h, int in_w, int out_h, int out_w);

// One decoded image (interleaved, src_channels 1..4 as stb_image gives) -> out (out_channels×out_h×out_w
// uint8). background: per output channel, used only when padding; nullptr: the per-channel median of the
// image's outermost ring of pixels (after compositing and channel conversion).
void fit_image(uint8_t* out, const uint8_t* src, int src_h, int src_w, int src_channels, int out_channels,
               int out_h, int out_w, bool pad_small, const float* background);

}  // namespace ds
