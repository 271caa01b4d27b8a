// darkstar-bench's smoke mode (what CI runs): every configuration and the audio part write the JSON
// fields the README and prove.sh read, with consistent values. Times are never asserted (CI machines are
// shared and noisy); only that they were measured (positive, finite) and that derived figures agree.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

int run_bench(const std::string& args, std::string* output) {
  // One file per process and call: ctest -j runs this file's cases as parallel processes, and a shared
  // name let one case read another's output (seen in the sanitizer run of .ci/run).
  static int calls = 0;
  const fs::path log = fs::path(DS_TEST_TMP) / ("bench_output_" + std::to_string(::getpid()) + "_" +
                                                std::to_string(calls++) + ".txt");
  const std::string cmd = std::string(DS_BENCH_EXE) + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool positive(const nlohmann::json& v) { return v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0; }

}  // namespace

TEST_CASE("unit bench: --smoke --json writes every configuration's fields") {
  const fs::path dir = ds::test::fresh_dir("bench_smoke");
  const fs::path json = dir / "bench.json";
  std::string out;
  const int rc = run_bench("--smoke --device cpu --threads 1 --json " + json.string(), &out);
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(fs::exists(json));
  std::ifstream in(json);
  const nlohmann::json doc = nlohmann::json::parse(in);

  CHECK(doc.at("threads") == 1);
  CHECK(positive(doc.at("matrix_peak").at("flop_per_s")));
  const auto& configs = doc.at("configs");
  REQUIRE(configs.size() == 3);  // all three named configurations when --config is absent
  const char* names[] = {"dcgan64", "mel128", "mel128x512"};
  for (size_t i = 0; i < configs.size(); ++i) {
    const auto& c = configs[i];
    INFO(c.dump(1));
    CHECK(c.at("name") == names[i]);
    CHECK(c.at("device") == "cpu");
    CHECK(c.at("threads") == 1);
    CHECK(c.at("batch") == 4);
    const double median = c.at("step_ms").at("median").get<double>();
    CHECK(positive(c.at("step_ms").at("median")));
    CHECK(c.at("step_ms").at("min").get<double>() <= median);
    CHECK(c.at("step_ms").at("max").get<double>() >= median);
    CHECK(c.at("step_ms").at("samples").size() == c.at("timed_steps").get<size_t>());
    // images/s is batch ÷ the median step, as documented.
    CHECK(c.at("images_per_s").get<double>() == doctest::Approx(4.0 / (median * 1e-3)).epsilon(1e-9));
    // The analytic count equals the sum its printed inputs give.
    double flops = 0;
    for (const auto& l : c.at("flop_count").at("layers"))
      flops += 2.0 * 4 * l.at("macs_per_image_per_pass").get<double>() * l.at("passes_per_step").get<double>();
    CHECK(positive(c.at("flops_per_step")));
    CHECK(c.at("flops_per_step").get<double>() == doctest::Approx(flops).epsilon(1e-12));
    CHECK(positive(c.at("achieved_flop_per_s")));
    CHECK(positive(c.at("fraction_of_matrix_peak")));
    CHECK(positive(c.at("memory").at("peak_rss_bytes")));
    // One row per conv layer of D and G, each with the three passes timed.
    const size_t layers = c.at("flop_count").at("layers").size();
    REQUIRE(c.at("layers").size() == layers);
    bool saw_bn = false, saw_act = false;
    for (const auto& l : c.at("layers")) {
      CHECK(positive(l.at("forward_ms")));
      CHECK(positive(l.at("backward_data_ms")));
      CHECK(positive(l.at("backward_filter_ms")));
      saw_bn = saw_bn || l.contains("batchnorm_forward_ms");
      saw_act = saw_act || l.contains("activation_forward_ms");
    }
    CHECK(saw_bn);
    CHECK(saw_act);
    const auto& b = c.at("step_breakdown_ms");
    for (const char* part : {"conv_forward", "conv_backward_data", "conv_backward_filter", "batchnorm", "activations",
                             "loss", "adam"})
      CHECK(positive(b.at(part)));
  }
  if (fs::exists(ds::test::kSectoidSong)) {
    const auto& a = doc.at("audio");
    CHECK(positive(a.at("mel").at("x_realtime")));
    CHECK(positive(a.at("griffin_lim").at("x_realtime")));
  }
}

TEST_CASE("unit bench: a bad --config and a bad --size are refused by name") {
  std::string out;
  CHECK(run_bench("--smoke --device cpu --config dcgan32 --no-audio", &out) != 0);
  CHECK(ds::test::contains(out, "--config dcgan32"));
  CHECK(run_bench("--smoke --device cpu --config dcgan64 --size 64by64 --no-audio", &out) != 0);
  CHECK(ds::test::contains(out, "--size 64by64"));
}
