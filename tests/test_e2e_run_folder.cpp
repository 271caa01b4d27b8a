// The run folder through the real binary: a folder that holds a run is refused without --resume or
// --force (and each does what it says), empty/missing/unrelated folders need neither, an unwritable
// folder is named before training (a read-only tmpfs), and a full disk (a tmpfs of a few pages) under
// a checkpoint, the log or a prepared dataset gives a clear error, keeps what was there, leaves no
// temp file and resumes once space is back.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sndfile.h>

#include "engine/formats/safetensors.h"
#include "engine/train/checkpoint.h"
#include "tests/e2e_run_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using namespace ds::test;

namespace {

const std::string kTiny = " --batch 4 --nz 8 --ngf 4 --ndf 4 --device cpu";

// Every file under dir with its bytes, to show that a refused command changed nothing.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_whole(e.path());
  return files;
}

int count_prefix(const fs::path& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().rfind(prefix, 0) == 0;
  return n;
}

// A path as a regular expression matching exactly it.
std::string re(const fs::path& path) {
  static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
  return std::regex_replace(path.string(), special, R"(\$&)");
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

}  // namespace

TEST_CASE("e2e run folder: a run there is refused without --resume or --force, and each flag does what it says") {
  const fs::path dir = fresh_dir("e2e_run_folder_refuse");
  const std::string data = write_tiny_dataset(dir);
  const fs::path run = dir / "run";
  const std::string train = "train --data " + data + " --out " + run.string() + kTiny;
  std::string out;
  REQUIRE(run_darkstar_in(dir, "first", train + " --steps 3 --checkpoint-every 3 --sample-every 3 --log-every 1", &out) == 0);
  write_text(run / "notes.txt", "mine\n");          // files that are not the run's: never touched
  write_text(run / "gen" / "000.wav", "not a wav\n");
  const auto before = snapshot(run);
  REQUIRE(before.count("samples/step_0000003.png") == 1);

  // No flag: refused, saying what is there and what each flag would do; nothing changed.
  CHECK(run_darkstar_in(dir, "again", train + " --steps 3", &out) == 1);
  INFO(out);
  CHECK(contains(out, "run folder " + run.string() + " already holds a run"));
  CHECK(contains(out, "last.safetensors is at step 3 of 3"));
  CHECK(contains(out, "--resume  continue that run from " + (run / "last.safetensors").string()));
  CHECK(contains(out, "--force   start a new run there: deletes last.safetensors, netG.safetensors, "
                      "netD.safetensors, log.jsonl, events.out.tfevents.* (1 file), samples/step_*.png (1 file)"));
  CHECK(contains(out, "every other file in " + run.string() + " is left alone"));
  CHECK_FALSE(contains(out, "training on"));
  CHECK(snapshot(run) == before);

  // Both flags: refused as a contradiction, nothing changed.
  CHECK(run_darkstar_in(dir, "both", train + " --steps 3 --resume --force", &out) == 1);
  CHECK(contains(out, "--resume and --force contradict"));
  CHECK(snapshot(run) == before);

  // --force: the run's files deleted and a new run written; the other files byte for byte as they were.
  REQUIRE(run_darkstar_in(dir, "forced", train + " --steps 2 --checkpoint-every 2 --sample-every 0 --log-every 1 --force",
                          &out) == 0);
  CHECK(contains(out, "--force: deleted the earlier run's files in " + run.string()));
  CHECK(state_step(run / "last.safetensors") == 2);
  const std::string forced_log = read_whole(run / "log.jsonl");
  CHECK(std::count(forced_log.begin(), forced_log.end(), '\n') == 2);
  CHECK(count_prefix(run, "events.out.tfevents.") == 1);  // the old one gone, the new one only
  CHECK_FALSE(fs::exists(run / "samples" / "step_0000003.png"));
  CHECK(read_whole(run / "notes.txt") == before.at("notes.txt"));
  CHECK(read_whole(run / "gen" / "000.wav") == before.at("gen/000.wav"));

  // --resume keeps its behaviour: continues, appends to the log, adds an event file.
  REQUIRE(run_darkstar_in(dir, "resumed", "train --data " + data + " --out " + run.string() +
                                              " --steps 4 --checkpoint-every 4 --log-every 1 --device cpu --resume",
                          &out) == 0);
  CHECK(contains(out, "resuming from step 2 of 4"));
  CHECK(state_step(run / "last.safetensors") == 4);
  const std::string log = read_whole(run / "log.jsonl");
  CHECK(std::count(log.begin(), log.end(), '\n') == 4);
  CHECK(count_prefix(run, "events.out.tfevents.") == 2);
}

TEST_CASE("e2e run folder: missing, empty and unrelated folders need no flag, a run without a checkpoint needs --force") {
  const fs::path dir = fresh_dir("e2e_run_folder_kinds");
  const std::string data = write_tiny_dataset(dir);
  const std::string steps = " --steps 1 --checkpoint-every 1 --sample-every 0 --log-every 1" + kTiny;
  std::string out;
  // Missing (made, parents included) and empty folders.
  REQUIRE(run_darkstar_in(dir, "missing", "train --data " + data + " --out " + (dir / "a" / "b").string() + steps, &out) == 0);
  CHECK(state_step(dir / "a" / "b" / "last.safetensors") == 1);
  fs::create_directories(dir / "empty");
  REQUIRE(run_darkstar_in(dir, "empty", "train --data " + data + " --out " + (dir / "empty").string() + steps, &out) == 0);
  // Files that are not a run's (samples/ with other names included): trained beside, left alone.
  write_text(dir / "other" / "README.txt", "hello\n");
  write_text(dir / "other" / "samples" / "mine.png", "x");
  REQUIRE(run_darkstar_in(dir, "other", "train --data " + data + " --out " + (dir / "other").string() + steps, &out) == 0);
  CHECK(read_whole(dir / "other" / "README.txt") == "hello\n");
  CHECK(read_whole(dir / "other" / "samples" / "mine.png") == "x");

  // --resume where there is no run: says so and what to do instead.
  fs::create_directories(dir / "nothing");
  CHECK(run_darkstar_in(dir, "resume_nothing", "train --data " + data + " --out " + (dir / "nothing").string() +
                                                   " --resume --device cpu",
                        &out) == 1);
  CHECK(contains(out, "--resume: no checkpoint at " + (dir / "nothing" / "last.safetensors").string()));
  CHECK(contains(out, "holds no run"));

  // A run stopped before its first checkpoint (a log, an event file, a checkpoint's temp file of a
  // killed write): refused without a flag; --resume cannot continue it and says --force; --force does.
  const fs::path early = dir / "early";
  write_text(early / "log.jsonl", "");
  write_text(early / "events.out.tfevents.1.host.darkstar", "");
  write_text(early / "last.safetensors.tmp.999999", "torn");
  CHECK(run_darkstar_in(dir, "early_plain", "train --data " + data + " --out " + early.string() + steps, &out) == 1);
  CHECK(contains(out, "--resume cannot continue it"));
  CHECK(contains(out, "*.tmp.<pid> (temp files of interrupted writes) (1 file)"));
  CHECK(run_darkstar_in(dir, "early_resume", "train --data " + data + " --out " + early.string() + " --resume --device cpu",
                        &out) == 1);
  CHECK(contains(out, "stopped before its first checkpoint"));
  CHECK(contains(out, "--force starts a new run"));
  REQUIRE(run_darkstar_in(dir, "early_force", "train --data " + data + " --out " + early.string() + steps + " --force", &out) == 0);
  CHECK_FALSE(fs::exists(early / "last.safetensors.tmp.999999"));
  CHECK_FALSE(fs::exists(early / "events.out.tfevents.1.host.darkstar"));
  CHECK(state_step(early / "last.safetensors") == 1);
}

TEST_CASE("e2e run folder: an unwritable run folder (a read-only mount) is named before training starts") {
  const fs::path dir = fresh_dir("e2e_run_folder_readonly");
  const std::string data = write_tiny_dataset(dir);
  const fs::path ro = dir / "ro";
  fs::create_directories(ro);
  std::string out;
  // A folder to be made inside a read-only file system, and an existing folder on one (a tmpfs
  // remounted read-only after the folder was made in it).
  const std::string train = "\"$DS\" train --data " + data + " --steps 2" + kTiny;
  const int rc = run_in_mount_namespace(
      dir,
      "mount -t tmpfs -o ro tmpfs '" + ro.string() + "' || exit 90\n" + train + " --out '" + ro.string() +
          "/new' > '" + (dir / "new.txt").string() + "' 2>&1; echo $? > '" + (dir / "new.rc").string() + "'\n" +
          "umount '" + ro.string() + "' && mount -t tmpfs tmpfs '" + ro.string() + "' && mkdir '" + ro.string() +
          "/run' && mount -o remount,ro '" + ro.string() + "' || exit 91\n" + train + " --out '" + ro.string() +
          "/run' > '" + (dir / "existing.txt").string() + "' 2>&1; echo $? > '" + (dir / "existing.rc").string() + "'\n",
      &out);
  REQUIRE_MESSAGE(rc == 0, "unshare -rm and a tmpfs mount must work here (as root or with user namespaces): " << out);
  const std::string made = read_whole(dir / "new.txt"), existing = read_whole(dir / "existing.txt");
  INFO(made);
  INFO(existing);
  CHECK(read_whole(dir / "new.rc") == "1\n");
  CHECK(contains(made, "run folder " + (ro / "new").string() + " cannot be created"));
  CHECK(contains(made, "Read-only file system"));
  CHECK(read_whole(dir / "existing.rc") == "1\n");
  CHECK(contains(existing, "run folder " + (ro / "run").string() + " is not writable"));
  CHECK(contains(existing, "Read-only file system"));
  CHECK_FALSE(contains(made + existing, "training on"));
}

// The disk scripts: a tmpfs mounted on DISK, a first command that fills part of it, then a filler file
// that leaves `free_pages` 4 KiB pages (tmpfs allocates whole pages), then the command under test.
std::string fill_disk_script(const fs::path& disk, int free_pages) {
  return "avail=$(df -B1 --output=avail '" + disk.string() + "' | tail -1)\n"
         "fallocate -l $((avail - " + std::to_string(free_pages) + " * 4096)) '" + disk.string() + "/filler' || exit 92\n";
}

TEST_CASE("e2e full disk: a checkpoint write hitting ENOSPC names the file, keeps the last good one, resumes exactly") {
  const fs::path dir = fresh_dir("e2e_full_disk_checkpoint");
  const std::string data = write_tiny_dataset(dir);
  const fs::path disk = dir / "disk", run = disk / "run";
  fs::create_directories(disk);
  // ngf 16: netG.safetensors is ~50 KB, far more than the 2 pages left (one goes to the new event file).
  const std::string flags = " --batch 4 --nz 8 --ngf 16 --ndf 4 --device cpu --sample-every 0 --log-every 1000"
                            " --checkpoint-every 1";
  const std::string train = "\"$DS\" train --data " + data + " --out '" + run.string() + "'" + flags;
  std::string out;
  const int rc = run_in_mount_namespace(
      dir,
      "mount -t tmpfs -o size=1m tmpfs '" + disk.string() + "' || exit 90\n" + train + " --steps 0 || exit 91\n" +
          fill_disk_script(disk, 2) + train + " --steps 6 --resume > '" + (dir / "full.txt").string() +
          "' 2>&1; echo $? > '" + (dir / "full.rc").string() + "'\n" + "cp -r '" + run.string() + "' '" +
          (dir / "after_full").string() + "' || exit 93\n" + "rm '" + disk.string() + "/filler'\n" + train +
          " --steps 6 --resume > '" + (dir / "resumed.txt").string() + "' 2>&1; echo $? > '" +
          (dir / "resumed.rc").string() + "'\n" + "cp -r '" + run.string() + "' '" + (dir / "after_resume").string() +
          "' || exit 94\n",
      &out);
  REQUIRE_MESSAGE(rc == 0, out);
  const std::string full = read_whole(dir / "full.txt");
  INFO(full);
  CHECK(read_whole(dir / "full.rc") == "1\n");
  CHECK(std::regex_search(full, std::regex("cannot write '" + re(run) +
                                           "/(netG|netD|last)\\.safetensors': .*No space left on device")));
  CHECK(contains(full, "checkpoint of step 1 not written; last good checkpoint: " + (run / "last.safetensors").string() +
                           " (step 0)"));
  CHECK(temp_files_under(dir / "after_full").empty());
  CHECK(state_step(dir / "after_full" / "last.safetensors") == 0);  // readable, the last good step
  CHECK(load_generator((dir / "after_full" / "netG.safetensors").string(), 1, Device::CPU).generator != nullptr);

  // Space back: --resume finishes, bit for bit the run that never met a full disk.
  CHECK(read_whole(dir / "resumed.rc") == "0\n");
  CHECK(contains(read_whole(dir / "resumed.txt"), "resuming from step 0 of 6"));
  std::string straight;
  REQUIRE(run_darkstar_in(dir, "straight", "train --data " + data + " --out " + (dir / "straight").string() + flags +
                                               " --steps 6",
                          &straight) == 0);
  int compared = 0;
  CHECK(differing_tensor_count(dir / "after_resume" / "last.safetensors", dir / "straight" / "last.safetensors",
                               &compared) == 0);
  CHECK(compared > 20);
}

TEST_CASE("e2e full disk: a log write hitting ENOSPC stops with the file named, the resume cuts the torn line") {
  const fs::path dir = fresh_dir("e2e_full_disk_log");
  const std::string data = write_tiny_dataset(dir);
  const fs::path disk = dir / "disk", run = disk / "run";
  fs::create_directories(disk);
  // 3 pages left: the event file's first page, log.jsonl's first, the event file's second (~13 steps of
  // 6 scalars); log.jsonl's second page (~20 lines) finds none, mid-line. No checkpoint after step 0.
  const std::string flags = kTiny + " --sample-every 0 --log-every 1 --checkpoint-every 1000";
  const std::string train = "\"$DS\" train --data " + data + " --out '" + run.string() + "'" + flags;
  std::string out;
  const int rc = run_in_mount_namespace(
      dir,
      "mount -t tmpfs -o size=1m tmpfs '" + disk.string() + "' || exit 90\n" + train + " --steps 0 || exit 91\n" +
          fill_disk_script(disk, 3) + train + " --steps 200 --resume > '" + (dir / "full.txt").string() +
          "' 2>&1; echo $? > '" + (dir / "full.rc").string() + "'\n" + "cp -r '" + run.string() + "' '" +
          (dir / "after_full").string() + "' || exit 93\n" + "rm '" + disk.string() + "/filler'\n" + train +
          " --steps 30 --resume > '" + (dir / "resumed.txt").string() + "' 2>&1; echo $? > '" +
          (dir / "resumed.rc").string() + "'\n" + "cp -r '" + run.string() + "' '" + (dir / "after_resume").string() +
          "' || exit 94\n",
      &out);
  REQUIRE_MESSAGE(rc == 0, out);
  const std::string full = read_whole(dir / "full.txt");
  INFO(full);
  CHECK(read_whole(dir / "full.rc") == "1\n");
  // Whichever log file crossed into the missing page first, it is named with the system's reason.
  CHECK(std::regex_search(full, std::regex("cannot write (TensorBoard events file ')?" + re(run) +
                                           "/(log\\.jsonl|events\\.out\\.tfevents\\.[^ ]*).*No space left on device")));
  CHECK(contains(full, "last good checkpoint: " + (run / "last.safetensors").string() + " (step 0)"));
  CHECK(temp_files_under(dir / "after_full").empty());
  CHECK(state_step(dir / "after_full" / "last.safetensors") == 0);

  CHECK(read_whole(dir / "resumed.rc") == "0\n");
  CHECK(state_step(dir / "after_resume" / "last.safetensors") == 30);
  // One JSON object per line after the resume (a torn line left by the full disk would break this).
  // And each step once, in order, as an uninterrupted run logs them: the lines of steps 1.. that the run
  // stopped by the full disk had logged past its checkpoint (step 0) were moved to log.rolled-back.jsonl.
  std::istringstream lines(read_whole(dir / "after_resume" / "log.jsonl"));
  std::string line;
  std::vector<int> steps;
  while (std::getline(lines, line)) {
    INFO(line);
    CHECK_NOTHROW(steps.push_back(nlohmann::json::parse(line).at("step").get<int>()));
  }
  std::vector<int> one_to_30(30);
  for (int i = 0; i < 30; ++i) one_to_30[i] = i + 1;
  CHECK(steps == one_to_30);
  const fs::path aside = dir / "after_resume" / "log.rolled-back.jsonl";
  REQUIRE(fs::exists(aside));
  std::istringstream aside_lines(read_whole(aside));
  int moved = 0, previous = 0;
  while (std::getline(aside_lines, line)) {
    INFO(line);
    int step = -1;
    CHECK_NOTHROW(step = nlohmann::json::parse(line).at("step").get<int>());
    CHECK(step == previous + 1);  // the first run's own lines 1, 2, ... as it wrote them
    previous = step;
    ++moved;
  }
  CHECK(moved >= 1);
  CHECK(contains(read_whole(dir / "resumed.txt"),
                 "resuming at step 0: " + std::to_string(moved) + " line(s) of log.jsonl logged after that checkpoint "
                 "moved to " + (run / "log.rolled-back.jsonl").string()));
}

TEST_CASE("e2e full disk: prepare-images and prepare-audio onto a full disk leave no dataset, half or whole") {
  const fs::path dir = fresh_dir("e2e_full_disk_prepare");
  const fs::path disk = dir / "disk";
  fs::create_directories(disk);
  // 300 16×16 IDX images (77 KB as a dataset) and a 4 s tone (4 slices of 1 s at 32×32 mel).
  {
    std::ofstream idx(dir / "images.idx", std::ios::binary);
    const unsigned char header[16] = {0, 0, 8, 3, 0, 0, 1, 44, 0, 0, 0, 16, 0, 0, 0, 16};
    idx.write(reinterpret_cast<const char*>(header), 16);
    for (int i = 0; i < 300 * 256; ++i) idx.put(static_cast<char>((i * 37) % 251));
  }
  {
    SF_INFO info{};
    info.samplerate = 22050;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    SNDFILE* f = sf_open((dir / "tone.wav").c_str(), SFM_WRITE, &info);
    REQUIRE(f != nullptr);
    std::vector<float> tone(4 * 22050);
    for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.5f * std::sin(6.2831853f * 440.f * i / 22050.f);
    sf_write_float(f, tone.data(), static_cast<sf_count_t>(tone.size()));
    sf_close(f);
  }
  const std::string images = "\"$DS\" prepare-images '" + (dir / "images.idx").string() + "' --size 16 --channels 1";
  const std::string audio = "\"$DS\" prepare-audio '" + (dir / "tone.wav").string() +
                            "' --device cpu --slice-seconds 1 --n-mels 32 --frames 32";
  std::string out;
  const int rc = run_in_mount_namespace(
      dir,
      "mount -t tmpfs -o size=1m tmpfs '" + disk.string() + "' || exit 90\n" +
          // An earlier, smaller dataset under the same name: it must survive the failed rewrite.
          images + " --limit 10 --out '" + disk.string() + "/d.npy' || exit 91\n" + "cp '" + disk.string() +
          "/d.npy' '" + disk.string() + "/d.json' '" + dir.string() + "/' || exit 92\n" + fill_disk_script(disk, 2) +
          images + " --out '" + disk.string() + "/d.npy' > '" + (dir / "images.txt").string() + "' 2>&1; echo $? > '" +
          (dir / "images.rc").string() + "'\n" + "rm '" + disk.string() + "/filler'\n" + fill_disk_script(disk, 1) +
          audio + " --out '" + disk.string() + "/m.npy' > '" + (dir / "audio.txt").string() + "' 2>&1; echo $? > '" +
          (dir / "audio.rc").string() + "'\n" + "mkdir '" + dir.string() + "/after' && cp '" + disk.string() +
          "'/d.* '" + dir.string() + "/after/' && ls -a '" + disk.string() + "' > '" + dir.string() + "/after.ls'\n",
      &out);
  REQUIRE_MESSAGE(rc == 0, out);
  const std::string img = read_whole(dir / "images.txt"), aud = read_whole(dir / "audio.txt");
  const std::string listing = read_whole(dir / "after.ls");
  INFO(img);
  INFO(aud);
  INFO(listing);
  CHECK(read_whole(dir / "images.rc") == "1\n");
  CHECK(std::regex_search(img, std::regex("cannot write '" + re(disk) + "/d\\.(npy|json)': .*No space left on device")));
  // The earlier dataset and its sidecar, byte for byte; nothing half-written beside them.
  CHECK(read_whole(dir / "after" / "d.npy") == read_whole(dir / "d.npy"));
  CHECK(read_whole(dir / "after" / "d.json") == read_whole(dir / "d.json"));
  CHECK(read_whole(dir / "audio.rc") == "1\n");
  CHECK(std::regex_search(aud, std::regex("cannot write '" + re(disk) + "/m\\.[a-z.]+': .*No space left on device")));
  CHECK_FALSE(contains(listing, "m.npy"));
  CHECK_FALSE(contains(listing, "m.json"));
  CHECK_FALSE(contains(listing, "m.slices.jsonl"));
  CHECK_FALSE(contains(listing, ".tmp."));
}
