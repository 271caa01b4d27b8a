// What a `--precision bf16` network asks for (issue 9): built for bf16 it allocates the float32
// parameters, gradients, batch-norm state and output (the float boundary) and its bf16 buffers, never
// the float32 activations, activation gradients or conv ops of the float path. Counted on the CPU with
// the engine's allocation counter (engine/core/allocation_stats.h: every Tensor storage, the same code
// path as on CUDA but for the malloc call) and the bf16 buffers with a counting stand-in backend (on CUDA
// they are DeviceBuffers, counted by the same counter); the expected figures are derived here from
// PyTorch's dcgan64 layer sizes, not from the engine.
#include <doctest/doctest.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <stdexcept>
#include <vector>

#include "engine/core/allocation_stats.h"
#include "engine/nn/bf16_path.h"
#include "engine/nn/dcgan.h"

using namespace ds;

namespace {

// Allocates and counts; runs nothing (these tests only build networks).
class CountingBf16Backend final : public Bf16Backend {
 public:
  explicit CountingBf16Backend(int64_t* bytes) : bytes_(bytes) {}
  bf16* allocate(int64_t n) override {
    *bytes_ += n * int64_t(sizeof(bf16));
    storage_.emplace_back(static_cast<size_t>(n), bf16{0});
    return storage_.back().data();
  }
  void cast_float_to_bf16(bf16*, const float*, int64_t) override { fail(); }
  void cast_bf16_to_float(float*, const bf16*, int64_t) override { fail(); }
  void accumulate_bf16_into_float(float*, const bf16*, int64_t) override { fail(); }
  void activation_forward(Activation, bf16*, int64_t) override { fail(); }
  void activation_backward(Activation, bf16*, const bf16*, int64_t) override { fail(); }
  void batchnorm_act_forward_train(bf16*, Stage&, const bf16*, BnActivation) override { fail(); }
  void batchnorm_act_forward_eval(bf16*, const Stage&, const bf16*, BnActivation) override { fail(); }
  void batchnorm_act_backward(bf16*, Stage&, const bf16*, const bf16*, const bf16*, BnActivation) override { fail(); }
  void conv_forward(size_t, bf16*, const bf16*, const bf16*) override { fail(); }
  void conv_backward_data(size_t, bf16*, const bf16*, const bf16*) override { fail(); }
  void conv_backward_filter(size_t, bf16*, const bf16*, const bf16*) override { fail(); }

 private:
  [[noreturn]] static void fail() { throw std::logic_error("CountingBf16Backend runs nothing"); }
  int64_t* bytes_;
  std::deque<std::vector<bf16>> storage_;
};

struct Build {
  int64_t float_bytes = 0;  // the engine's host allocations held after building G and D
  int64_t float_peak = 0;   // the most held at once while building them
  int64_t bf16_bytes = 0;   // the bf16 backend's buffers
};

// Builds G and D (dcgan64, batch B) on the CPU, float32 or built for bf16; measures, then frees them.
Build build_dcgan64(int64_t batch, bool bf16) {
  const ModelConfig mc;  // the defaults are PyTorch's examples/dcgan: 64×64×3, nz 100, ngf = ndf = 64
  Build b;
  Bf16BackendFactory factory;
  if (bf16) factory = [&b](const std::vector<Stage>&) { return std::make_unique<CountingBf16Backend>(&b.bf16_bytes); };
  reset_allocation_peak(Device::CPU);
  const int64_t before = allocation_stats(Device::CPU).live;
  {
    Generator G(mc, batch, Device::CPU, factory);
    Discriminator D(mc, batch, Device::CPU, factory);
    CHECK(G.bf16() == bf16);
    CHECK(D.bf16() == bf16);
    for (const Network* net : {static_cast<const Network*>(&G), static_cast<const Network*>(&D)}) {
      const std::vector<Stage>& st = net->stages();
      for (size_t i = 0; i < st.size(); ++i) {
        const bool last = i + 1 == st.size();
        // bf16: no float conv op (on CUDA: no float32 cuDNN plans, no workspace for them), no float
        // activations but the output; float32: all of them.
        CHECK((st[i].conv != nullptr) == !bf16);
        CHECK((st[i].dout.data() != nullptr) == !bf16);
        CHECK((st[i].out.data() != nullptr) == (!bf16 || last));
        CHECK(st[i].out.numel() == shape_numel(conv_output_shape(st[i].geometry)));  // shapes kept either way
      }
      CHECK(net->output().data() != nullptr);
    }
    b.float_bytes = allocation_stats(Device::CPU).live - before;
    b.float_peak = allocation_stats(Device::CPU).peak - before;
  }
  CHECK(allocation_stats(Device::CPU).live == before);  // everything released with the networks
  return b;
}

// dcgan64's figures, from the architecture (per image, in values):
//  G outputs 512·4·4, 256·8·8, 128·16·16, 64·32·32 (each with batch norm) and 3·64·64 (tanh);
//  D outputs 64·32·32 (no batch norm), 128·16·16, 256·8·8, 512·4·4 (batch norm) and 1 (the logit).
// The float path holds pre and dout per stage, plus out and dpre when it has batch norm.
constexpr int64_t kGOut[5] = {512 * 16, 256 * 64, 128 * 256, 64 * 1024, 3 * 4096};
constexpr int64_t kDOut[5] = {64 * 1024, 128 * 256, 256 * 64, 512 * 16, 1};
constexpr bool kGBn[5] = {true, true, true, true, false}, kDBn[5] = {false, true, true, true, false};
constexpr int64_t activation_values_per_image() {
  int64_t a = 0;
  for (int i = 0; i < 5; ++i) a += kGOut[i] * (kGBn[i] ? 4 : 2) + kDOut[i] * (kDBn[i] ? 4 : 2);
  return a;
}
constexpr int64_t kActivations = activation_values_per_image();  // 876,546
constexpr int64_t kBoundary = 3 * 4096 + 1;                      // the float outputs kept: G's images, D's logits
constexpr int64_t kInputs = 100 + 3 * 4096;                      // G's z and D's image, per image
// PyTorch's parameter counts of netG and netD (every tensor a multiple of 16: no padding) and each
// network's largest conv weight (G 512→256, D 256→512: 4·4·131072), the one bf16 weight-gradient scratch.
constexpr int64_t kParamsG = 3576704, kParamsD = 2765568, kLargestWeight = 2097152;

}  // namespace

TEST_CASE("unit network memory: a bf16 DCGAN at dcgan64 asks for no float32 activations and less than the tf32 one") {
  static_assert(kActivations == 876546, "dcgan64's activation values per image");
  const int64_t B = 32;
  const Build f = build_dcgan64(B, false);
  const Build h = build_dcgan64(B, true);
  // Nothing is allocated and freed again while building: the peak is what is held.
  CHECK(f.float_peak == f.float_bytes);
  CHECK(h.float_peak == h.float_bytes);
  CHECK(f.bf16_bytes == 0);
  // The float32 bytes the bf16 build does not ask for: every float activation but the two outputs,
  // 4·B·(876,546 − 12,289) = 110,624,896 bytes at batch 32 (3.46 MB per image).
  CHECK(f.float_bytes - h.float_bytes == 4 * B * (kActivations - kBoundary));
  // The bf16 path's own buffers: the same activations in bf16, the input and d(input) of each network,
  // the weight mirrors and the weight-gradient scratch.
  CHECK(h.bf16_bytes == 2 * (B * kActivations + 2 * B * kInputs + kParamsG + kParamsD + 2 * kLargestWeight));
  // In all: 1,654,384 bytes per image less, less 21,073,152 bytes of weight mirrors and scratch; at
  // batch 32: 31,867,136 bytes (30.4 MiB) below tf32. (At batch 128, the bench's: 181.9 MiB less; the
  // bf16 build is the larger one only below batch 13, where the mirrors outweigh the activations.)
  const int64_t saved = f.float_bytes - (h.float_bytes + h.bf16_bytes);
  CHECK(saved == B * (4 * (kActivations - kBoundary) - 2 * kActivations - 4 * kInputs) -
                     2 * (kParamsG + kParamsD + 2 * kLargestWeight));
  CHECK(saved == 31867136);
}

TEST_CASE("unit network memory: use_bf16 on a built float32 network releases its float activations") {
  // The emulated bf16 tests turn a built CPU network into a bf16 one; it must end as a bf16 build does.
  ModelConfig mc;
  mc.height = mc.width = 16;
  mc.ngf = mc.ndf = 4;
  mc.nz = 8;
  const int64_t before = allocation_stats(Device::CPU).live;
  int64_t bf16_a = 0, bf16_b = 0;
  Generator built(mc, 4, Device::CPU,
                  [&](const std::vector<Stage>&) { return std::make_unique<CountingBf16Backend>(&bf16_a); });
  const int64_t held_by_built = allocation_stats(Device::CPU).live - before;
  Generator converted(mc, 4, Device::CPU);
  converted.use_bf16(std::make_unique<CountingBf16Backend>(&bf16_b));
  CHECK(allocation_stats(Device::CPU).live - before == 2 * held_by_built);
  CHECK(bf16_a == bf16_b);
  for (size_t i = 0; i < converted.stages().size(); ++i) {
    const Stage& s = converted.stages()[i];
    CHECK(s.conv == nullptr);
    CHECK(s.pre.data() == (i + 1 == converted.stages().size() ? s.out.data() : nullptr));
    CHECK(s.dpre.data() == nullptr);
  }
}
