#!/usr/bin/python3
"""darkstar against PyTorch on this machine, in one run, at the same thread count: the DCGAN training step
(darkstar-bench and bench/pytorch_dcgan.py, one process per configuration and thread count, alternating)
and the audio path (STFT + mel against torchaudio and librosa (bench/librosa_mel.py, --librosa-python), Griffin-Lim against
torchaudio). Prints both figures and darkstar's ratio; --json keeps everything.
Run with Debian's interpreter (python3-torch):
  /usr/bin/python3 bench/side_by_side.py [--bench build/darkstar-bench] [--threads 1,2] [--config dcgan64,mel128x512]
--python picks the interpreter of the PyTorch side (e.g. a venv made with --system-site-packages that
adds librosa from pip)."""
import argparse, json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd, path):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("side_by_side: %s failed (%d):\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="build/darkstar-bench")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--librosa-python", default=sys.executable,
                    help="interpreter with librosa for bench/librosa_mel.py (e.g. a pip venv)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--config", default="dcgan64,mel128x512")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--steps", "--repeats", dest="steps", type=int, default=3,
                    help="timed steps per side; mel128x512 at batch 64 is ~3 TFLOP a step: --repeats 1 --warmup 1 there")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--no-gan", action="store_true")
    ap.add_argument("--json", help="write both sides' figures here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="side_by_side_")
    common = ["--batch", str(args.batch), "--ngf", str(args.ngf), "--ndf", str(args.ndf), "--steps", str(args.steps),
              "--warmup", str(args.warmup), "--layer-reps", "0", "--device", "cpu"]
    rows, doc = [], {"gan": [], "audio": []}
    threads = [int(t) for t in args.threads.split(",")]
    if not args.no_gan:
        for t in threads:
            for c in args.config.split(","):
                dj, pj = os.path.join(tmp, "d.json"), os.path.join(tmp, "p.json")
                d = run_json([args.bench, "--config", c, "--threads", str(t), "--no-audio", "--json", dj] + common, dj)
                p = run_json([args.python, os.path.join(HERE, "pytorch_dcgan.py"), "--config", c, "--threads", str(t),
                              "--json", pj] + common, pj)
                dc, pc = d["configs"][0], p["configs"][0]
                rows.append((c, t, dc, pc, d["matrix_peak"]["flop_per_s"], p["matrix_peak"]["flop_per_s"]))
                doc["gan"].append({"config": c, "threads": t, "darkstar": d, "pytorch": p})
                print("%-11s %d thr batch %d: darkstar %7.2f img/s (%6.1f GFLOP/s)  pytorch %7.2f img/s (%6.1f GFLOP/s)"
                      "  ratio %.2fx" % (c, t, args.batch, dc["images_per_s"], dc["achieved_flop_per_s"] * 1e-9,
                                         pc["images_per_s"], pc["achieved_flop_per_s"] * 1e-9,
                                         dc["images_per_s"] / pc["images_per_s"]), flush=True)
    audio = None
    if not args.no_audio:
        for t in threads[:1]:
            dj, pj = os.path.join(tmp, "da.json"), os.path.join(tmp, "pa.json")
            d = run_json([args.bench, "--device", "cpu", "--threads", str(t), "--no-gan", "--json", dj], dj)["audio"]
            p = run_json([args.python, os.path.join(HERE, "pytorch_dcgan.py"), "--device", "cpu", "--threads", str(t),
                          "--no-gan", "--audio", "--json", pj], pj)["audio"]
            lp = subprocess.run([args.librosa_python, os.path.join(HERE, "librosa_mel.py")], capture_output=True, text=True)
            p["mel_librosa"] = json.loads(lp.stdout) if lp.returncode == 0 else {"skipped": (lp.stderr.strip().splitlines() or ["failed"])[-1]}
            audio = (t, d, p)
            doc["audio"].append({"threads": t, "darkstar": d, "pytorch": p})

    print("\nside by side on %s, one run (ratios: darkstar / PyTorch, higher is better for darkstar)" %
          (open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()))
    if rows:
        print("| config | threads | batch | darkstar images/s | PyTorch images/s | ratio | darkstar GFLOP/s | PyTorch GFLOP/s | SGEMM peak GFLOP/s (OpenBLAS / torch.mm) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c, t, dc, pc, dpk, ppk in rows:
            print("| %s | %d | %d | %.2f | %.2f | %.2fx | %.1f | %.1f | %.0f / %.0f |" %
                  (c, t, dc["batch"], dc["images_per_s"], pc["images_per_s"], dc["images_per_s"] / pc["images_per_s"],
                   dc["achieved_flop_per_s"] * 1e-9, pc["achieved_flop_per_s"] * 1e-9, dpk * 1e-9, ppk * 1e-9))
    if audio:
        t, d, p = audio
        dm = d["mel"]["ms_per_slice"]
        print("\naudio, %d thread(s), %d slices of 10 s of real music:" % (t, d["slices"]))
        print("  STFT + mel (default layout): darkstar %.2f ms/slice (%.0fx realtime); torchaudio %.2f ms/slice: %.2fx"
              % (dm, d["mel"]["x_realtime"], p["mel_torchaudio"]["ms_per_slice"], p["mel_torchaudio"]["ms_per_slice"] / dm))
        lib = p["mel_librosa"]
        if "ms_per_slice" in lib:
            print("  librosa %s: %.2f ms/slice: darkstar %.2fx librosa" % (lib["version"], lib["ms_per_slice"], lib["ms_per_slice"] / dm))
        else:
            print("  librosa: not run (%s)" % lib["skipped"])
        g, pg = d["griffin_lim"], p["griffin_lim_torchaudio"]
        print("  Griffin-Lim (64 iterations, 10 s): darkstar %.0f ms (%.1fx realtime); torchaudio %.0f ms: %.2fx"
              % (g["time_ms"]["median"], g["x_realtime"], pg["time_ms"]["median"], pg["time_ms"]["median"] / g["time_ms"]["median"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
