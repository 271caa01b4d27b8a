#!/usr/bin/env python3
"""Checks a darkstar run folder with TensorBoard's own event loaders (not run by CI, which reads the
files with tests/tfrecord_reader.h so it needs no PyPI). Needs the `tensorboard` package, in a venv:
    python3 -m venv --system-site-packages /tmp/tb_venv && /tmp/tb_venv/bin/pip install tensorboard
    /tmp/tb_venv/bin/python tests/check_tensorboard.py RUN [--mel] [--histogram-every N]
Two loaders: event_accumulator (the raw Summary values: scalars, images, audio, histograms, tensors)
and plugin_event_accumulator (what the TensorBoard server itself uses: every value converted by
data_compat into its plugin's tensor form). Every expected tag must be there with its type at exactly
the steps the run's schedule (--steps, --log-every, --sample-every from its `config` text) gives.
Exits 1 with the list of failures."""
import argparse
import io
import json
import sys
import wave

from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import plugin_event_accumulator as pea

SCALARS = ["Loss_D", "Loss_G", "D(x)", "D(G(z))/before_D_update", "D(G(z))/after_D_update", "images_per_second"]

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def schedule(every, steps, first=0):
    if every <= 0:
        return set()
    return {s for s in range(first + 1, steps + 1) if s % every == 0} | {steps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--mel", action="store_true", help="a mel run: expect audio/ and mel/ clips")
    ap.add_argument("--histogram-every", type=int, default=100)
    ap.add_argument("--clips", type=int, default=2)
    args = ap.parse_args()

    size = {ea.SCALARS: 0, ea.IMAGES: 0, ea.AUDIO: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0, ea.COMPRESSED_HISTOGRAMS: 0}
    acc = ea.EventAccumulator(args.run, size_guidance=size)
    acc.Reload()
    tags = acc.Tags()
    print("event_accumulator tags: " + ", ".join("%s %d" % (k, len(v)) for k, v in sorted(tags.items())
                                                  if isinstance(v, list)))

    # The schedule from the run's own configuration text.
    check("config" in tags["tensors"], "text tag 'config' missing")
    config_events = acc.Tensors("config")
    config = json.loads(config_events[0].tensor_proto.string_val[0].decode())
    check(acc.PluginTagToContent("text").get("config") is not None, "'config' is not a text-plugin tensor")
    first = config_events[0].step
    steps, log_every, sample_every = config["steps"], config["log_every"], config["sample_every"]
    logged = schedule(log_every, steps, first)
    sampled = schedule(sample_every, steps, first)
    histogrammed = schedule(args.histogram_every, steps, first)
    print("config: steps %d, log_every %d, sample_every %d (histogram_every %d): logged %s, samples %s, histograms %s"
          % (steps, log_every, sample_every, args.histogram_every, sorted(logged), sorted(sampled),
             sorted(histogrammed)))

    def steps_of(events):
        return sorted(e.step for e in events)

    for tag in SCALARS:
        if check(tag in tags["scalars"], "scalar %s missing" % tag):
            check(set(steps_of(acc.Scalars(tag))) == logged, "scalar %s at steps %s" % (tag, steps_of(acc.Scalars(tag))))

    counts = {}
    for net in ("netG", "netD"):
        params = sorted(t[len("weight_norm/"):] for t in tags["scalars"]
                        if t.startswith("weight_norm/" + net + "."))
        check(net + ".main.0.weight" in params, "no weight_norm/%s.main.0.weight" % net)
        for p in params:
            for kind in ("weight_norm/", "grad_norm/", "update_ratio/"):
                tag = kind + p
                if check(tag in tags["scalars"], "scalar %s missing" % tag):
                    events = acc.Scalars(tag)
                    check(set(steps_of(events)) == logged, "%s at steps %s" % (tag, steps_of(events)))
                    check(all(e.value == e.value and e.value >= 0 for e in events), "%s not finite/positive" % tag)
            for kind in ("weights/", "grads/"):
                tag = kind + p
                if check(tag in tags["histograms"], "histogram %s missing" % tag):
                    events = acc.Histograms(tag)
                    check(set(steps_of(events)) == histogrammed, "%s at steps %s" % (tag, steps_of(events)))
                    for e in events:
                        h = e.histogram_value
                        check(sum(h.bucket) == h.num and h.num > 0 and h.min <= h.max and
                              len(h.bucket) == len(h.bucket_limit), "%s step %d: inconsistent histogram" % (tag, e.step))
        bn = sorted(t[len("bn_batch_mean/"):] for t in tags["scalars"] if t.startswith("bn_batch_mean/" + net + "."))
        check(len(bn) >= 1, "no batch-norm scalars for %s" % net)
        for layer in bn:
            for kind in ("bn_batch_mean/", "bn_batch_var/"):
                tag = kind + layer
                if check(tag in tags["scalars"], "scalar %s missing" % tag):
                    check(set(steps_of(acc.Scalars(tag))) == logged, "%s at steps %s" % (tag, steps_of(acc.Scalars(tag))))
        counts[net] = (len(params), len(bn))

    check("samples" in tags["images"], "image 'samples' missing")
    if "samples" in tags["images"]:
        images = acc.Images("samples")
        check(set(steps_of(images)) == sampled, "samples at steps %s" % steps_of(images))
        check(all(i.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and i.width > 0 and i.height > 0 for i in images),
              "samples: not PNG")
        print("samples: %d images %dx%d" % (len(images), images[-1].width, images[-1].height))

    audio_tags = [t for t in tags["audio"]]
    mel_tags = [t for t in tags["images"] if t.startswith("mel/")]
    if args.mel:
        for i in range(args.clips):
            a, m = "audio/clip_%d" % i, "mel/clip_%d" % i
            if check(a in audio_tags, "audio %s missing" % a):
                events = acc.Audio(a)
                check(set(steps_of(events)) == sampled, "%s at steps %s" % (a, steps_of(events)))
                for e in events:
                    check(e.content_type == "audio/wav", "%s: content_type %r" % (a, e.content_type))
                    with wave.open(io.BytesIO(e.encoded_audio_string)) as w:
                        ok = (w.getnchannels() == 1 and w.getframerate() == int(e.sample_rate) and
                              w.getnframes() == e.length_frames and w.getsampwidth() == 2)
                        check(ok, "%s step %d: WAV header disagrees with Summary.Audio" % (a, e.step))
                print("%s: steps %s, %d frames at %g Hz (%.2f s), WAV read by Python's wave module"
                      % (a, steps_of(events), events[-1].length_frames, events[-1].sample_rate,
                         events[-1].length_frames / events[-1].sample_rate))
            if check(m in mel_tags, "image %s missing" % m):
                check(set(steps_of(acc.Images(m))) == sampled, "%s at steps %s" % (m, steps_of(acc.Images(m))))
    else:
        check(not audio_tags and not mel_tags, "audio or mel tags in an image run: %s" % (audio_tags + mel_tags))

    # What the TensorBoard server sees: every legacy value converted by data_compat into its plugin's form.
    pacc = pea.EventAccumulator(args.run, size_guidance={"tensors": 0})
    pacc.Reload()
    by_plugin = {}
    for tag, meta in pacc.summary_metadata.items() if hasattr(pacc, "summary_metadata") else []:
        by_plugin.setdefault(meta.plugin_data.plugin_name, []).append(tag)
    if not by_plugin:
        for plugin in ("scalars", "images", "audio", "histograms", "text"):
            by_plugin[plugin] = list(pacc.PluginTagToContent(plugin).keys())
    print("plugin_event_accumulator (the server's view): " +
          ", ".join("%s %d" % (k, len(v)) for k, v in sorted(by_plugin.items())))
    expect_plugins = {"scalars", "images", "histograms", "text"} | ({"audio"} if args.mel else set())
    for plugin in expect_plugins:
        check(len(by_plugin.get(plugin, [])) > 0, "plugin %s shows nothing" % plugin)
    for plugin, plugin_tags in by_plugin.items():
        for tag in plugin_tags:
            check(len(pacc.Tensors(tag)) > 0, "plugin %s tag %s: no tensors after data_compat" % (plugin, tag))

    print("per network (parameter tensors, batch-norm layers): %s" % counts)
    if failures:
        print("FAILED (%d):" % len(failures))
        for f in failures:
            print("  " + f)
        return 1
    print("OK: every expected tag, type and step is there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
