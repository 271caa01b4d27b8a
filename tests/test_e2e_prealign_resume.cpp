// A training state written before parameter offsets were aligned to 16 floats (tests/fixtures/prealign,
// made by tests/make_prealign_checkpoint.sh with main at 7e2e7d1) still loads exactly into the padded
// layout and resumes to what the old binary itself computed.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/formats/safetensors.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;

namespace {

const fs::path kFixture = fs::path(DS_SOURCE_DIR) / "tests" / "fixtures" / "prealign";

// The flags the fixture was made with (tests/make_prealign_checkpoint.sh).
TrainConfig fixture_config(const fs::path& out, int64_t steps) {
  TrainConfig c;
  c.data_path = (kFixture / "data.npy").string();
  c.out_dir = out.string();
  c.batch = 4;
  c.model.nz = 5;
  c.model.ngf = 3;
  c.model.ndf = 3;
  c.seed = 5;
  c.sample_every = 0;
  c.log_every = 1;
  c.checkpoint_every = steps;
  c.steps = steps;
  c.device = Device::CPU;
  c.resume = true;
  c.quiet = true;
  return c;
}

fs::path run_from_step3(const std::string& name) {
  const fs::path out = ds::test::fresh_dir(name);
  fs::copy_file(kFixture / "step3.safetensors", out / "last.safetensors");
  return out;
}

}  // namespace

TEST_CASE("e2e prealign checkpoint: a pre-alignment training state loads into the padded layout exactly") {
  const fs::path out = run_from_step3("prealign_load");
  const SafeTensorsFile old_file = read_safetensors((kFixture / "step3.safetensors").string());
  Trainer trainer(fixture_config(out, 3));
  Generator& G = trainer.generator();
  Discriminator& D = trainer.discriminator();
  // The fixture's architecture really is laid out differently now.
  CHECK(G.params().numel() > G.packed_parameter_count());
  CHECK(D.params().numel() > D.packed_parameter_count());

  // The old flat Adam moments are exactly the packed layout (where each moment lands in the padded
  // buffer is checked by the unit packed/unpack test and, through the arithmetic, by the resume below).
  CHECK(old_file.tensors.at("optG.exp_avg").numel() == G.packed_parameter_count());
  CHECK(old_file.tensors.at("optD.exp_avg_sq").numel() == D.packed_parameter_count());
  for (const NamedTensor& p : G.parameters()) {
    INFO(p.name);
    CHECK(p.tensor.to_host() == old_file.tensors.at("netG." + p.name).to_float());
  }
  for (const NamedTensor& p : D.parameters()) {
    INFO(p.name);
    CHECK(p.tensor.to_host() == old_file.tensors.at("netD." + p.name).to_float());
  }

  // Written back (packed moments, named weights), every tensor is bit-identical to the old file.
  fs::remove(out / "last.safetensors");
  trainer.write_checkpoint();
  const SafeTensorsFile new_file = read_safetensors((out / "last.safetensors").string());
  CHECK(new_file.tensors.size() == old_file.tensors.size());
  int compared = 0;
  for (const auto& [name, t] : old_file.tensors) {
    INFO(name);
    REQUIRE(new_file.tensors.count(name) == 1);
    const SafeTensor& n = new_file.tensors.at(name);
    CHECK(n.dtype == t.dtype);
    CHECK(n.shape == t.shape);
    CHECK(n.data == t.data);
    ++compared;
  }
  CHECK(compared == 29);  // every tensor of the fixture
}

// The old binary resumed its own step-3 state to step 7 (tests/make_prealign_checkpoint.sh); this build
// resumes the same state to step 7. Same arithmetic in the same order: on the machine that made the
// fixture the result is bit-identical (measured). On another CPU, OpenBLAS may pick another sgemm
// kernel (a different FMA order: ~1e-7 relative per product), which four Adam steps can amplify where
// a gradient is tiny against sqrt(v) history, so weights are compared max-normalised with 1e-4: a
// wrong resume (moments misplaced or lost, another data order or noise offset) moves weights by
// O(lr) = 2e-4 absolute against a weight scale of ~0.02–1, i.e. ≥ 1e-4 normalised and usually far more.
TEST_CASE("e2e prealign checkpoint: a pre-alignment training state resumes to the old binary's step 7") {
  const fs::path out = run_from_step3("prealign_resume");
  Trainer(fixture_config(out, 7)).run();
  const SafeTensorsFile want = read_safetensors((kFixture / "step7.safetensors").string());
  const SafeTensorsFile got = read_safetensors((out / "last.safetensors").string());
  REQUIRE(got.tensors.size() == want.tensors.size());
  int identical = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, w] : want.tensors) {
    INFO(name);
    REQUIRE(got.tensors.count(name) == 1);
    const SafeTensor& g = got.tensors.at(name);
    REQUIRE(g.shape == w.shape);
    REQUIRE(g.dtype == w.dtype);
    identical += g.data == w.data;
    if (w.dtype != DType::F32) {
      CHECK(g.data == w.data);  // step, counters, data order: exact
      continue;
    }
    const double err = ds::test::normalised_error(g.to_float(), w.to_float(), 0.0);
    if (err > worst) {
      worst = err;
      worst_name = name;
    }
    CHECK(err <= 1e-4);
  }
  MESSAGE(identical, " of ", want.tensors.size(), " tensors bit-identical; worst max-normalised error ", worst, " (",
          worst_name, ")");
}
