// `train --resume`: the log lines a killed or failed run wrote past the checkpoint the resume starts from
// move to log.rolled-back.jsonl (engine/train/run_folder.h, set_aside_log_lines_after), so log.jsonl
// keeps each step once, in order; nothing is dropped, unrelated lines stay, a second resume appends.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/train/run_folder.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {
std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }
std::string line(int step) { return "{\"step\":" + std::to_string(step) + ",\"Loss_D\":1.25}\n"; }
}  // namespace

TEST_CASE("unit log set aside: lines past the checkpoint move, in order, the rest stay byte for byte") {
  const fs::path dir = ds::test::fresh_dir("log_set_aside/basic");
  const fs::path log = dir / "log.jsonl", aside = dir / "log.rolled-back.jsonl";
  // Steps 1..7 logged; the checkpoint a resume reads is step 5. A line without an integer step (written
  // by hand, or by another tool) is not ours to judge: it stays.
  write_text(log, line(1) + line(2) + line(3) + "{\"note\":\"hand\"}\n" + line(4) + line(5) + line(6) +
                      "{\"step\":\"x\"}\n" + line(7));
  CHECK(ds::set_aside_log_lines_after(log.string(), 5, aside.string()) == 2);
  CHECK(read_text(log) == line(1) + line(2) + line(3) + "{\"note\":\"hand\"}\n" + line(4) + line(5) + "{\"step\":\"x\"}\n");
  CHECK(read_text(aside) == line(6) + line(7));
  // The resumed run logs 6, 7, 8 and is killed again after a checkpoint of step 6: 7 and 8 are appended.
  std::ofstream(log, std::ios::app) << line(6) << line(7) << line(8);
  CHECK(ds::set_aside_log_lines_after(log.string(), 6, aside.string()) == 2);
  CHECK(read_text(aside) == line(6) + line(7) + line(7) + line(8));
  CHECK(read_text(log).size() > 0);
  CHECK(read_text(log).substr(read_text(log).size() - line(6).size()) == line(6));
}

TEST_CASE("unit log set aside: nothing past the checkpoint, no log at all, and a torn aside file") {
  const fs::path dir = ds::test::fresh_dir("log_set_aside/edges");
  const fs::path log = dir / "log.jsonl", aside = dir / "log.rolled-back.jsonl";
  CHECK(ds::set_aside_log_lines_after(log.string(), 3, aside.string()) == 0);  // no log: nothing to do
  CHECK_FALSE(fs::exists(log));
  CHECK_FALSE(fs::exists(aside));
  write_text(log, line(1) + line(2) + line(3));
  const auto written = fs::last_write_time(log);
  CHECK(ds::set_aside_log_lines_after(log.string(), 3, aside.string()) == 0);
  CHECK(read_text(log) == line(1) + line(2) + line(3));
  CHECK(fs::last_write_time(log) == written);  // not rewritten
  CHECK_FALSE(fs::exists(aside));              // not created
  // An aside file whose last append a kill tore: the half line is cut before the new lines follow.
  write_text(aside, line(9) + "{\"step\":10,\"Lo");
  CHECK(ds::set_aside_log_lines_after(log.string(), 1, aside.string()) == 2);
  CHECK(read_text(aside) == line(9) + line(2) + line(3));
  CHECK(read_text(log) == line(1));
}
