// `darkstar report` on a real tiny run (a mel dataset of a synthetic tone, trained for a few steps,
// clips from `listen`), then the page in a real headless browser (Debian's chromium-headless-shell):
// the DOM it parsed holds the SVG paths, images and audio players, and its screenshot has the stated
// size and is not blank.
#include <doctest/doctest.h>
#include <stb_image.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "audio/listen.h"
#include "engine/formats/atomic_file.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using ds::test::contains;
using ds::test::fresh_dir;

namespace {

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// Runs a shell command with stdout and stderr into files under dir; returns its exit status.
int run_shell(const std::string& cmd, const fs::path& out, const fs::path& err) {
  const int status = std::system((cmd + " > '" + out.string() + "' 2> '" + err.string() + "'").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The headless browser: $DS_CHROMIUM, else Debian's headless shell, else the full chromium.
std::string find_chromium() {
  if (const char* env = std::getenv("DS_CHROMIUM")) return env;
  for (const char* p : {"/usr/bin/chromium-headless-shell", "/usr/bin/chromium"})
    if (fs::exists(p)) return p;
  return "";
}

}  // namespace

TEST_CASE("e2e report: a tiny real run's page, parsed and drawn by headless chromium") {
  const fs::path dir = fresh_dir("e2e_report");
  const std::string exe = DS_DARKSTAR_EXE;
  // A 6 s warbling tone at 8 kHz: three 2 s slices of 32 mel bands × 64 frames.
  const int sr = 8000;
  std::vector<float> tone(6 * sr);
  for (size_t i = 0; i < tone.size(); ++i) {
    const double t = double(i) / sr;
    tone[i] = static_cast<float>(0.4 * std::sin(2 * M_PI * (440 * t + 20 * std::sin(2 * M_PI * 3 * t))));
  }
  fs::create_directories(dir / "in");
  ds::write_wav_float((dir / "in" / "tone.wav").string(), tone.data(), static_cast<int64_t>(tone.size()), sr);
  const fs::path run = dir / "run";
  const std::string npy = (dir / "tone.npy").string();
  const fs::path log = dir / "cmd.out", err = dir / "cmd.err";
  auto darkstar = [&](const std::string& args) {
    const int rc = run_shell(exe + " " + args, log, err);
    INFO(args << "\n" << ds::read_file_text(log.string()) << ds::read_file_text(err.string()));
    REQUIRE(rc == 0);
  };
  darkstar("prepare-audio " + (dir / "in").string() + " --out " + npy +
           " --device cpu --sr 8000 --slice-seconds 2 --n-mels 32 --n-fft 1024 --frames 64");
  darkstar("train --data " + npy + " --out " + run.string() +
           " --device cpu --steps 12 --batch 2 --nz 8 --ngf 4 --ndf 4 --log-every 1 --sample-every 3"
           " --checkpoint-every 6");
  darkstar("listen --checkpoint " + (run / "last.safetensors").string() + " --n 2 --out " + (run / "gen").string() +
           " --gl-iters 2 --device cpu");
  darkstar("report " + run.string());
  const std::string said = ds::read_file_text(log.string());
  CHECK(contains(said, "report.html"));
  const fs::path page = run / "report.html";
  REQUIRE(fs::is_regular_file(page));
  const std::string html = ds::read_file_text(page.string());
  CHECK(count_of(html, "<audio controls") == 2);
  // Five curves (Loss_D, Loss_G, D(x), D(G(z)) before and after D's update) plus the SWD, which train
  // logs by default at the last step: its mean and its two levels (32×64, 16×32) in a third chart.
  CHECK(count_of(html, "<path d=\"M") == 5 + 3);
  CHECK(contains(html, "Sliced Wasserstein distance"));

  // Not a run: refused with the folder named, exit non-zero.
  fs::create_directories(dir / "not_a_run");
  CHECK(run_shell(exe + " report " + (dir / "not_a_run").string(), log, err) != 0);
  CHECK(contains(ds::read_file_text(err.string()), "not a darkstar run folder"));

  const std::string chromium = find_chromium();
  INFO("chromium: '" << chromium << "'");
  REQUIRE_MESSAGE(!chromium.empty(), "no headless chromium: apps/setup.sh installs chromium-headless-shell");
  // Root needs --no-sandbox; a profile of its own so no other chromium's state is touched; `timeout`
  // so a browser that hangs (no dbus, a stuck GPU process) fails the test instead of blocking ctest.
  const std::string browser = "timeout -k 5 90 " + chromium +
                              " --headless --no-sandbox --disable-gpu --no-first-run --no-default-browser-check"
                              " --hide-scrollbars --user-data-dir=" + (dir / "profile").string();
  const std::string url = "file://" + fs::absolute(page).string();

  // --dump-dom prints the DOM after parsing: the SVG paths, grids, mel images and players are elements.
  const fs::path dom_path = dir / "dom.html";
  const int dom_rc = run_shell(browser + " --dump-dom '" + url + "'", dom_path, dir / "dom.err");
  // Its stderr is noise (no dbus, no GPU) unless it failed: shown only then.
  REQUIRE_MESSAGE(dom_rc == 0, "chromium stderr: " << ds::read_file_text((dir / "dom.err").string()).substr(0, 3000));
  const std::string dom = ds::read_file_text(dom_path.string());
  CHECK(count_of(dom, "<svg") == 3);
  CHECK(count_of(dom, "<path d=\"M") == 5 + 3);
  CHECK(count_of(dom, "<img") == 4 + 2);  // 12 steps / 3: grids at steps 3, 6, 9, 12; a mel image per clip
  CHECK(count_of(dom, "<audio controls") == 2);
  CHECK(contains(dom, "src=\"data:audio/wav;base64,UklGR"));  // "RIFF" survived into the element
  CHECK(contains(dom, "D(x) and D(G(z))"));

  // --screenshot: a PNG of the window size, with the page's many colours (not one blank colour).
  const int width = 1000, height = 1400;
  const fs::path shot = dir / "screenshot.png";
  const int shot_rc = run_shell(browser + " --window-size=" + std::to_string(width) + "," + std::to_string(height) +
                                    " --screenshot=" + shot.string() + " '" + url + "'",
                                dir / "shot.out", dir / "shot.err");
  REQUIRE_MESSAGE(shot_rc == 0, "chromium stderr: " << ds::read_file_text((dir / "shot.err").string()).substr(0, 3000));
  REQUIRE(fs::is_regular_file(shot));
  int w = 0, h = 0, channels = 0;
  unsigned char* pixels = stbi_load(shot.string().c_str(), &w, &h, &channels, 3);
  REQUIRE(pixels != nullptr);
  CHECK(w == width);
  CHECK(h == height);
  std::set<uint32_t> colours;
  size_t not_background = 0, loss_d_red = 0, loss_g_blue = 0;
  for (int i = 0; i < w * h; ++i) {
    const unsigned char* p = pixels + 3 * i;
    const uint32_t rgb = uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2];
    colours.insert(rgb);
    loss_d_red += rgb == 0xd62728;
    loss_g_blue += rgb == 0x1f77b4;
    not_background += !(p[0] == 0xfa && p[1] == 0xfa && p[2] == 0xfa) && !(p[0] == 0xff && p[1] == 0xff && p[2] == 0xff);
  }
  stbi_image_free(pixels);
  MESSAGE("screenshot " << shot.string() << ": " << colours.size() << " colours, " << loss_d_red << " Loss_D red, "
                        << loss_g_blue << " Loss_G blue pixels, "
                        << 100.0 * double(not_background) / (double(w) * h) << "% not background");
  // The curves were drawn: their stroke colours, exact, along the lines (a 1.6 px stroke has fully
  // covered pixels along each of the ~560 px of plot width; the legend swatches alone give ~40).
  CHECK(loss_d_red >= 100);
  CHECK(loss_g_blue >= 100);
  // A blank page is one or two colours; text, the coloured curves and the magma grids give hundreds.
  CHECK(colours.size() >= 100);
  // The white chart panels count as background: what is left (text, lines, frames, grids) must still
  // cover more than a thin sliver of the window.
  CHECK(double(not_background) / (double(w) * h) > 0.02);
}
