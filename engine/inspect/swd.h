// Sliced Wasserstein distance between two image sets, as Karras et al. 2017 ("Progressive growing of
// GANs", their metrics/sliced_wasserstein.py): a Laplacian pyramid of each image down to 16 px, 7×7
// neighbourhoods at random positions (128 per image per level), each set's descriptors normalised per
// channel by that set's own mean and std, 512 random unit directions (4 repeats of 128), and per level
// the mean over directions of the mean |sorted projections of A − sorted projections of B|, reported
// ×1e3, finest level first, with their average. Every random number comes from darkstar's Philox
// (engine/core/rng.h) through SwdDraws, which tests may also fill by hand (tests/swd_reference.py).
//
// Where this differs from the reference: any channel count (theirs asserts 3); levels while both
// sides are >= min_resolution (theirs counts by height only); odd sides are halved to ceil(n/2) and the
// upsampled coarser level cropped to the finer size (cv2.pyrUp with dstsize; theirs fails on odd
// sides); a channel whose descriptors are all equal is only centred (theirs divides by 0); the pyramid
// is computed on the images as given (any affine intensity scale gives the same distance up to
// rounding: the pyramid is linear and keeps constants, and the per-set normalisation removes the
// scale and offset), where theirs takes uint8 [0, 255].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/data/image_dataset.h"

namespace ds {

struct SwdOptions {
  int patch_size = 7;               // odd
  int patches_per_image = 128;
  int direction_repeats = 4;
  int directions_per_repeat = 128;
  int min_resolution = 16;          // the coarsest level's smaller side is at least this
  uint64_t seed = 0;                // of the patch positions and directions
};

// n images, C×H×W float each (row-major, N×C×H×W), not owned.
struct ImageSetView {
  const float* data = nullptr;
  int64_t count = 0, channels = 0, height = 0, width = 0;
  int64_t image_size() const { return channels * height * width; }
};

// Pyramid levels for an H×W image: 1 + the number of halvings (ceil) while both sides stay >=
// min_resolution; 0 when a side is already below it.
int swd_level_count(int64_t height, int64_t width, int min_resolution);
// Side of level `level` (0 = the image): ceil(side / 2^level).
int64_t swd_level_side(int64_t side, int level);

// The Laplacian pyramid of each image, finest level first: level l < L−1 is G_l − up(G_{l+1}), the
// last is the Gaussian level G_{L−1}; G_{l+1} = every second pixel of G_l convolved with the 5×5
// binomial kernel [1 4 6 4 1]ᵀ[1 4 6 4 1]/256 (cv2.pyrDown), up() = zeros between pixels, the same
// kernel ×4, cropped to G_l's size (cv2.pyrUp); borders mirrored without repeating the edge pixel
// (scipy's "mirror", cv2's BORDER_REFLECT_101). Each level: N×C×h_l×w_l.
std::vector<std::vector<float>> laplacian_pyramid(const ImageSetView& images, int levels);

// The randomness of one comparison. centres_*[l]: for descriptor i (image i / patches_per_image),
// (y, x) at [2i], [2i + 1], both in [r, side − r − 1] (r = patch_size / 2), as the reference's
// randint(r, side − r). directions[l]: (repeats·per_repeat) rows of C·patch² unit-length components,
// direction d of repeat d / per_repeat.
struct SwdDraws {
  std::vector<std::vector<int32_t>> centres_a, centres_b;
  std::vector<std::vector<float>> directions;
};
// Draws them from Philox(options.seed): stream 0 for A's centres, 1 for B's, 2 for the directions
// (standard normals, normalised in double), level by level.
SwdDraws draw_swd(int64_t count_a, int64_t count_b, int64_t channels, int64_t height, int64_t width,
                  const SwdOptions& options);

// One level's descriptors: for each centre, the C×patch×patch neighbourhood, then every component of
// channel c shifted and scaled by the mean and (population) std of channel c over all of them.
// Returns n_centres × (C·patch²).
std::vector<float> swd_descriptors(const float* level, int64_t count, int64_t channels, int64_t height, int64_t width,
                                   const std::vector<int32_t>& centres, int patch_size, int patches_per_image);

// The distance of one level (not ×1e3): the mean over directions of mean_i |sort(A·d)_i − sort(B·d)_i|.
// a, b: n × dims each (the same n); directions: n_directions × dims.
double sliced_wasserstein_level(const std::vector<float>& a, const std::vector<float>& b, int64_t dims,
                                const std::vector<float>& directions);

struct SwdResult {
  std::vector<int64_t> heights, widths;  // of each level, finest first
  std::vector<double> levels;            // SWD ×1e3 per level, finest first
  double mean = 0;                       // their average (the reference's SWDx1e3_avg)
  int64_t images = 0;                    // per set
  int64_t descriptors = 0;               // per set and level
};

// Both sets must have the same C×H×W and count (the 1-D distances pair sorted values). Throws
// std::invalid_argument saying what differs, or that the images are smaller than min_resolution.
// draws: nullptr draws them with draw_swd.
SwdResult sliced_wasserstein_distance(const ImageSetView& a, const ImageSetView& b, const SwdOptions& options,
                                      const SwdDraws* draws = nullptr);

// A fixed set (the real images) prepared once: its pyramid descriptors, B's patch centres and the
// directions, so comparing many generated sets (training) repeats only their side's work, with the
// same positions and directions every time.
class SwdReference {
 public:
  SwdReference(const ImageSetView& reference, const SwdOptions& options);
  SwdResult compare(const ImageSetView& other) const;  // other: the reference's shape and count
  int64_t count() const { return count_; }

 private:
  SwdOptions options_;
  int64_t count_, channels_, height_, width_;
  SwdDraws draws_;
  std::vector<std::vector<float>> descriptors_;  // per level, normalised
};

// An image set from a .npy file as `inspect swd` reads it: a dataset as prepare-images (uint8,
// mapped to [−1, 1] as the trainer maps it) or prepare-audio (float16 in [−1, 1]) writes it, or
// float32 images (e.g. samples.npy of `inspect memorization`, `sample --out X.npy`), N×C×H×W; rows
// `rows` only (all when empty). Throws std::runtime_error naming path for other shapes and types.
std::vector<float> read_image_set(const std::string& path, int64_t* count, int64_t* channels, int64_t* height,
                                  int64_t* width, const std::vector<int64_t>& rows = {});

// `count` rows of 0..total−1 drawn without replacement by Philox(seed, stream) (all rows, in order,
// when count >= total), ascending: the fixed subsets of the tools and the trainer.
std::vector<int64_t> fixed_subset(int64_t total, int64_t count, uint64_t seed, uint32_t stream);

}  // namespace ds
