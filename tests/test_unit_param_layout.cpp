// The flat parameter layout (engine/nn/dcgan.h): every parameter view at a multiple of 16 floats, the
// padding between views zero in params, grads and Adam's moments through training steps, and the
// packed (checkpoint) layout a lossless round trip.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/nn/dcgan.h"
#include "engine/core/rng.h"
#include "engine/train/trainer.h"

using namespace ds;

namespace {

// Odd widths everywhere (an odd BN width put the next view at an 8-byte boundary before the padding),
// a square and a non-square (4×16 start map) architecture.
std::vector<ModelConfig> odd_configs() {
  ModelConfig square;
  square.height = square.width = 16;
  square.channels = 3;
  square.nz = 5;
  square.ngf = 3;
  square.ndf = 3;
  ModelConfig wide;
  wide.height = 8;
  wide.width = 32;
  wide.channels = 1;
  wide.nz = 7;
  wide.ngf = 5;
  wide.ndf = 7;
  return {square, wide};
}

// True for the elements of a params()-shaped buffer that belong to no parameter view.
std::vector<bool> padding_mask(const Network& net) {
  std::vector<bool> pad(static_cast<size_t>(net.params().numel()), true);
  for (size_t i = 0; i < net.parameters().size(); ++i)
    for (int64_t k = 0; k < net.parameters()[i].tensor.numel(); ++k)
      pad[static_cast<size_t>(net.parameter_offsets()[i] + k)] = false;
  return pad;
}

int64_t nonzero_padding(const Network& net, const Tensor& flat) {
  const std::vector<bool> pad = padding_mask(net);
  const std::vector<float> v = flat.to_host();
  int64_t bad = 0;
  for (size_t k = 0; k < v.size(); ++k) bad += pad[k] && v[k] != 0.f;
  return bad;
}

Tensor normals(const Shape& shape, uint32_t stream) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  Philox(31, stream).fill_normal(v.data(), 0.f, 1.f, static_cast<int64_t>(v.size()));
  return Tensor::from_host(v, shape, Device::CPU);
}

}  // namespace

TEST_CASE("unit param layout: every parameter view starts at a multiple of 16 floats, in order, not overlapping") {
  for (const ModelConfig& mc : odd_configs()) {
    Generator G(mc, 2, Device::CPU);
    Discriminator D(mc, 2, Device::CPU);
    for (Network* net : {static_cast<Network*>(&G), static_cast<Network*>(&D)}) {
      INFO(mc.to_json());
      const auto& params = net->parameters();
      REQUIRE(params.size() == net->parameter_offsets().size());
      int64_t end = 0, packed = 0, misaligned_before = 0, unpadded = 0;
      for (size_t i = 0; i < params.size(); ++i) {
        INFO(params[i].name);
        const int64_t off = net->parameter_offsets()[i];
        CHECK(off % kParamAlignFloats == 0);
        CHECK(off >= end);                                  // in parameters() order, no overlap
        CHECK(off - end < kParamAlignFloats);               // padding only up to the next boundary
        CHECK(params[i].tensor.data() == net->params().data() + off);
        CHECK(reinterpret_cast<uintptr_t>(params[i].tensor.data()) % 64 == 0);
        misaligned_before += unpadded % kParamAlignFloats != 0;  // where the old packed layout put it
        unpadded += params[i].tensor.numel();
        end = off + params[i].tensor.numel();
        packed += params[i].tensor.numel();
      }
      CHECK(net->params().numel() - end < kParamAlignFloats);
      CHECK(net->packed_parameter_count() == packed);
      CHECK(net->grads().numel() == net->params().numel());
      // The configurations are chosen so the packed layout would misalign at least one view.
      if (net == &G) CHECK(misaligned_before > 0);
    }
  }
}

TEST_CASE("unit param layout: padding stays zero in params, grads and Adam moments through CPU GAN steps") {
  for (const ModelConfig& mc : odd_configs()) {
    INFO(mc.to_json());
    const int64_t B = 3;
    Generator G(mc, B, Device::CPU);
    Discriminator D(mc, B, Device::CPU);
    G.init_weights(1, 0);
    D.init_weights(1, 1);
    CHECK(nonzero_padding(G, G.params()) == 0);
    CHECK(nonzero_padding(D, D.params()) == 0);
    GanStepState st(G, D);
    const Tensor real = normals({B, mc.channels, mc.height, mc.width}, 2);
    const Tensor z = normals({B, mc.nz, 1, 1}, 3);
    for (int step = 0; step < 2; ++step) gan_step(G, D, st, real, z, AdamConfig{});
    // The steps did something: otherwise zero padding would prove nothing.
    CHECK(st.stepG.step() == 2);
    const std::vector<float> mg = st.mG.to_host();
    double moved = 0;
    for (float v : mg) moved += std::fabs(v);
    CHECK(moved > 0);
    for (const Network* net : {static_cast<const Network*>(&G), static_cast<const Network*>(&D)}) {
      const bool g = net == &G;
      CHECK(nonzero_padding(*net, net->params()) == 0);
      CHECK(nonzero_padding(*net, net->grads()) == 0);
      CHECK(nonzero_padding(*net, g ? st.mG : st.mD) == 0);
      CHECK(nonzero_padding(*net, g ? st.vG : st.vD) == 0);
    }
  }
}

TEST_CASE("unit param layout: packed is the concatenation of the views, unpack its inverse leaving padding alone") {
  const ModelConfig mc = odd_configs()[0];
  Generator G(mc, 2, Device::CPU);
  G.init_weights(4, 0);
  const std::vector<float> packed = G.packed(G.params());
  std::vector<float> want;
  for (const NamedTensor& p : G.parameters()) {
    const std::vector<float> v = p.tensor.to_host();
    want.insert(want.end(), v.begin(), v.end());
  }
  CHECK(packed == want);
  Tensor back = Tensor::empty(G.params().shape(), Device::CPU);
  back.fill(7.f);  // padding must be left as it is
  G.unpack(back, packed.data(), static_cast<int64_t>(packed.size()));
  const std::vector<bool> pad = padding_mask(G);
  const std::vector<float> b = back.to_host(), p = G.params().to_host();
  int64_t wrong = 0;
  for (size_t k = 0; k < b.size(); ++k) wrong += pad[k] ? b[k] != 7.f : b[k] != p[k];
  CHECK(wrong == 0);
  CHECK_THROWS(G.unpack(back, packed.data(), static_cast<int64_t>(packed.size()) - 1));
  CHECK_THROWS(G.packed(Tensor::zeros({3}, Device::CPU)));
}
