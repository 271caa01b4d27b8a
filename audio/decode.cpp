// Decoding with libsndfile (MPEG audio with libmpg123), resampling with libsoxr, and the folder scan
// (see decode.h).
#include "audio/decode.h"

#include <fcntl.h>
#include <mpg123.h>
#include <sndfile.h>
#include <soxr.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace ds {
namespace {

// libsndfile clamps a WAV/RF64/W64/AIFF file whose chunks claim more bytes than the file holds, and
// says so only in its log ("data : 132300 (should be 59956)", "riff : 64136 (should be 38481)"): its
// frame count is then the clamped one. The frames the header announced (the clamped count plus the
// missing bytes in frames: the data chunk's line where there is one, else the outer chunk's), or −1
// when the log says nothing of the kind or the encoding has no fixed frame size. A length of 0 or
// 0xFFFFFFFF is what streaming writers put when they cannot seek back: unknown, not a cut.
int64_t announced_frames_from_log(SNDFILE* file, const SF_INFO& info, int64_t frames) {
  int sample_bytes = 0;
  switch (info.format & SF_FORMAT_SUBMASK) {
    case SF_FORMAT_PCM_S8: case SF_FORMAT_PCM_U8: sample_bytes = 1; break;
    case SF_FORMAT_PCM_16: sample_bytes = 2; break;
    case SF_FORMAT_PCM_24: sample_bytes = 3; break;
    case SF_FORMAT_PCM_32: case SF_FORMAT_FLOAT: sample_bytes = 4; break;
    case SF_FORMAT_DOUBLE: sample_bytes = 8; break;
    default: return -1;
  }
  const int64_t frame_bytes = static_cast<int64_t>(sample_bytes) * info.channels;
  std::vector<char> log(16384, '\0');
  sf_command(file, SFC_GET_LOG_INFO, log.data(), static_cast<int>(log.size()) - 1);
  std::istringstream in(log.data());
  std::string line;
  int64_t outer_missing = -1;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(0, key.find_first_not_of(' '));
    key.erase(key.find_last_not_of(' ') + 1);
    const bool data = key == "data" || key == "SSND";
    const bool outer = key == "RIFF" || key == "riff" || key == "RF64" || key == "FORM";
    if (!data && !outer) continue;
    unsigned long long said = 0, real = 0;
    if (std::sscanf(line.c_str() + colon + 1, " %llu (should be %llu)", &said, &real) != 2) continue;
    if (said <= real || said == 0xFFFFFFFFull) continue;
    const int64_t missing = static_cast<int64_t>((said - real) / static_cast<unsigned long long>(frame_bytes));
    if (data) return frames + missing;
    if (outer_missing < 0) outer_missing = missing;
  }
  return outer_missing >= 0 ? frames + outer_missing : -1;
}

std::runtime_error decode_error(const std::string& path, const std::string& reason) {
  return std::runtime_error("cannot decode audio file '" + path + "': " + reason);
}

// libsndfile's own names for the container and the codec, e.g. "WAV (Microsoft), Signed 16 bit PCM".
std::string format_name(SNDFILE* file, int format) {
  SF_FORMAT_INFO major{}, sub{};
  major.format = format & SF_FORMAT_TYPEMASK;
  sub.format = format & SF_FORMAT_SUBMASK;
  const bool has_major = sf_command(file, SFC_GET_FORMAT_INFO, &major, sizeof major) == 0 && major.name;
  const bool has_sub = sf_command(file, SFC_GET_FORMAT_INFO, &sub, sizeof sub) == 0 && sub.name;
  std::ostringstream name;
  if (has_major) name << major.name; else name << "format 0x" << std::hex << (format & SF_FORMAT_TYPEMASK);
  name << ", ";
  if (has_sub) name << sub.name; else name << "codec 0x" << std::hex << (format & SF_FORMAT_SUBMASK);
  return name.str();
}

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// What a file libsndfile does not recognise is, by its first bytes or its extension, with what to do:
// the reason a user needs ("Format not recognised" alone does not say that an .m4a is AAC).
std::string unreadable_container(const std::string& path, const unsigned char* head, size_t n) {
  const std::string ext = lower_extension(path);
  const char* to_flac = "; convert it first, e.g. ffmpeg -i IN OUT.flac";
  if ((n >= 8 && std::memcmp(head + 4, "ftyp", 4) == 0) || ext == ".m4a" || ext == ".mp4" || ext == ".aac" ||
      ext == ".m4b" || ext == ".alac")
    return std::string("an MP4/AAC (") + (ext.empty() ? "ftyp" : ext) + ") file, which libsndfile cannot read" + to_flac;
  if ((n >= 2 && head[0] == 0xFF && (head[1] & 0xF6) == 0xF0) || ext == ".adts")
    return std::string("a raw AAC (ADTS) stream, which libsndfile cannot read") + to_flac;
  if ((n >= 4 && std::memcmp(head, "ajkg", 4) == 0) || ext == ".shn")
    return "a Shorten (.shn) file, which libsndfile cannot read; convert it first, e.g. ffmpeg -i IN OUT.flac "
           "(or shntool conv -o flac IN)";
  if ((n >= 4 && std::memcmp(head, "MAC ", 4) == 0) || ext == ".ape")
    return std::string("a Monkey's Audio (.ape) file, which libsndfile cannot read") + to_flac;
  if ((n >= 4 && std::memcmp(head, "wvpk", 4) == 0) || ext == ".wv")
    return std::string("a WavPack (.wv) file, which libsndfile cannot read") + to_flac;
  if ((n >= 4 && std::memcmp(head, "0&\xB2u", 4) == 0) || ext == ".wma")
    return std::string("a Windows Media (.wma) file, which libsndfile cannot read") + to_flac;
  return "";
}

// The offset of the first MPEG audio frame header when the file starts as an MPEG audio stream does
// (ID3v2 tags, then a frame header, and the next frame's header right after it), else −1. Such files
// go to libmpg123 directly: libsndfile would stop at its estimated length, and its own libmpg123
// handle is not quiet (it prints libmpg123's warnings on stderr).
int64_t mpeg_stream_start(const unsigned char* buf, size_t n) {
  size_t pos = 0;
  while (pos + 10 <= n && std::memcmp(buf + pos, "ID3", 3) == 0) {
    const size_t size = (size_t(buf[pos + 6] & 0x7F) << 21) | (size_t(buf[pos + 7] & 0x7F) << 14) |
                        (size_t(buf[pos + 8] & 0x7F) << 7) | size_t(buf[pos + 9] & 0x7F);
    pos += 10 + size + ((buf[pos + 5] & 0x10) ? 10 : 0);
  }
  // Frame length in bytes of the header at p, 0 if it is not a valid header.
  auto frame_bytes = [&](size_t p) -> size_t {
    if (p + 4 > n || buf[p] != 0xFF || (buf[p + 1] & 0xE0) != 0xE0) return 0;
    const int version = (buf[p + 1] >> 3) & 3, layer = (buf[p + 1] >> 1) & 3;
    const int bitrate_index = buf[p + 2] >> 4, rate_index = (buf[p + 2] >> 2) & 3, padding = (buf[p + 2] >> 1) & 1;
    if (version == 1 || layer == 0 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3) return 0;
    static const int kbps[2][3][15] = {
        {{0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448},   // MPEG-1 Layer I
         {0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384},      // Layer II
         {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320}},      // Layer III
        {{0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256},      // MPEG-2/2.5 Layer I
         {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},           // Layer II
         {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160}}};         // Layer III
    static const int rates[3] = {44100, 48000, 32000};
    const bool mpeg1 = version == 3;
    const int rate = rates[rate_index] >> (mpeg1 ? 0 : version == 2 ? 1 : 2);
    const int bitrate = kbps[mpeg1 ? 0 : 1][3 - layer][bitrate_index] * 1000;
    if (layer == 3) return static_cast<size_t>((12 * bitrate / rate + padding) * 4);       // Layer I
    if (layer == 1 && !mpeg1) return static_cast<size_t>(72 * bitrate / rate + padding);    // III, MPEG-2/2.5
    return static_cast<size_t>(144 * bitrate / rate + padding);
  };
  const size_t first = frame_bytes(pos);
  if (first == 0) return -1;
  // A second header where the first frame ends rules out a chance 0xFFE in other data.
  if (pos + first + 4 <= n && frame_bytes(pos + first) == 0) return -1;
  return static_cast<int64_t>(pos);
}

// Whether the first Layer III frame carries a Xing/Info frame count or a VBRI header (then libmpg123's
// length is the encoder's own count, gapless-corrected from the LAME tag where there is one); without
// it the length is estimated from the file size. Reads the file's first 64 KiB.
bool mpeg_has_frame_count(int fd) {
  unsigned char buf[1 << 16];
  const ssize_t got = ::pread(fd, buf, sizeof buf, 0);
  if (got <= 0) return false;
  const size_t n = static_cast<size_t>(got);
  size_t pos = 0;
  // ID3v2 tags (possibly several): "ID3", version, flags, a 28-bit syncsafe size, an optional footer.
  while (pos + 10 <= n && std::memcmp(buf + pos, "ID3", 3) == 0) {
    const size_t size = (size_t(buf[pos + 6] & 0x7F) << 21) | (size_t(buf[pos + 7] & 0x7F) << 14) |
                        (size_t(buf[pos + 8] & 0x7F) << 7) | size_t(buf[pos + 9] & 0x7F);
    pos += 10 + size + ((buf[pos + 5] & 0x10) ? 10 : 0);
  }
  for (; pos + 4 <= n; ++pos) {
    if (buf[pos] != 0xFF || (buf[pos + 1] & 0xE0) != 0xE0) continue;
    const int version = (buf[pos + 1] >> 3) & 3;  // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    const int layer = (buf[pos + 1] >> 1) & 3;    // 1: Layer III
    const int bitrate = buf[pos + 2] >> 4, rate = (buf[pos + 2] >> 2) & 3;
    if (version == 1 || layer == 0 || bitrate == 15 || rate == 3) continue;
    if (layer != 1) return false;  // Layer I/II: no such headers
    const bool mono = (buf[pos + 3] >> 6) == 3;
    const size_t side_info = version == 3 ? (mono ? 17 : 32) : (mono ? 9 : 17);
    const size_t xing = pos + 4 + side_info;
    if (xing + 8 <= n && (std::memcmp(buf + xing, "Xing", 4) == 0 || std::memcmp(buf + xing, "Info", 4) == 0))
      return (buf[xing + 7] & 1) != 0;  // flags, big-endian: bit 0 says the frame count is there
    const size_t vbri = pos + 4 + 32;
    return vbri + 4 <= n && std::memcmp(buf + vbri, "VBRI", 4) == 0;
  }
  return false;
}

void init_mpg123_once() {
  static std::once_flag once;
  std::call_once(once, [] { mpg123_init(); });
}

}  // namespace

// libsndfile reads through these callbacks on our descriptor (pread at our own offset), never owning
// it: sf_open_fd in libsndfile 1.2.0 closes the descriptor when the open fails even when told not to,
// which on several threads closes another file's newly opened descriptor.
struct VirtualFile {
  int fd = -1;
  int64_t size = 0, pos = 0;
};
sf_count_t vf_length(void* user) { return static_cast<VirtualFile*>(user)->size; }
sf_count_t vf_seek(sf_count_t offset, int whence, void* user) {
  VirtualFile& f = *static_cast<VirtualFile*>(user);
  const int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? f.pos : f.size;
  if (base + offset < 0) return -1;
  f.pos = base + offset;
  return f.pos;
}
sf_count_t vf_read(void* ptr, sf_count_t count, void* user) {
  VirtualFile& f = *static_cast<VirtualFile*>(user);
  sf_count_t done = 0;
  while (done < count) {
    const ssize_t got = ::pread(f.fd, static_cast<char*>(ptr) + done, static_cast<size_t>(count - done), f.pos);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    done += got;
    f.pos += got;
  }
  return done;
}
sf_count_t vf_write(const void*, sf_count_t, void*) { return 0; }
sf_count_t vf_tell(void* user) { return static_cast<VirtualFile*>(user)->pos; }

struct AudioReader::Impl {
  std::string path;
  int fd = -1;  // owned here: libsndfile (through `virtual_file`) and libmpg123 read it, never close it
  VirtualFile virtual_file;
  SNDFILE* sndfile = nullptr;
  mpg123_handle* mpg = nullptr;
  int sample_rate = 0, channels = 0;
  std::string format;
  int64_t header_frames = -1;
  bool estimate = false;    // header_frames is an estimate (MP3 without a frame count)
  int64_t file_bytes = 0;
  int64_t frames = 0;
  bool done = false;
  std::string error;  // the decoder's reason when it stopped on an error
  std::vector<float> block;

  ~Impl() {
    if (sndfile) sf_close(sndfile);
    if (mpg) {
      mpg123_close(mpg);  // leaves a descriptor given to mpg123_open_fd open
      mpg123_delete(mpg);
    }
    if (fd >= 0) ::close(fd);
  }

  void check_format() const {
    if (channels <= 0) throw decode_error(path, "the decoder reports " + std::to_string(channels) + " channels");
    if (sample_rate <= 0 || sample_rate > kMaxSampleRate)
      throw decode_error(path, "sample rate " + std::to_string(sample_rate) + " Hz is outside (0, " +
                                   std::to_string(static_cast<int64_t>(kMaxSampleRate)) + "] Hz");
  }

  void open_mpeg() {
    init_mpg123_once();
    int err = MPG123_OK;
    mpg = mpg123_new(nullptr, &err);
    if (!mpg) throw decode_error(path, std::string("libmpg123: ") + mpg123_plain_strerror(err));
    // Quiet (no text of its own on stderr), gapless (the LAME tag's encoder delay and padding removed),
    // float output at the stream's own rate.
    mpg123_param(mpg, MPG123_ADD_FLAGS, MPG123_QUIET, 0.0);
    mpg123_param(mpg, MPG123_ADD_FLAGS, MPG123_GAPLESS, 0.0);
    mpg123_param(mpg, MPG123_ADD_FLAGS, MPG123_FORCE_FLOAT, 0.0);
    mpg123_param(mpg, MPG123_REMOVE_FLAGS, MPG123_AUTO_RESAMPLE, 0.0);
    if (::lseek(fd, 0, SEEK_SET) != 0 || mpg123_open_fd(mpg, fd) != MPG123_OK)
      throw decode_error(path, std::string("libmpg123 cannot open it: ") + mpg123_strerror(mpg));
    long rate = 0;
    int ch = 0, encoding = 0;
    if (mpg123_getformat(mpg, &rate, &ch, &encoding) != MPG123_OK)
      throw decode_error(path, std::string("libmpg123: ") + mpg123_strerror(mpg));
    sample_rate = static_cast<int>(rate);
    channels = ch;
    const off_t length = mpg123_length(mpg);
    header_frames = length >= 0 ? static_cast<int64_t>(length) : -1;
    estimate = !mpeg_has_frame_count(fd);
    mpg123_frameinfo fi{};
    if (mpg123_info(mpg, &fi) == MPG123_OK) {
      const char* version = fi.version == MPG123_1_0 ? "MPEG-1" : fi.version == MPG123_2_0 ? "MPEG-2" : "MPEG-2.5";
      const char* layer = fi.layer == 1 ? "Layer I" : fi.layer == 2 ? "Layer II" : "Layer III";
      format = std::string(version) + " Audio, " + layer + (fi.vbr == MPG123_CBR ? ", CBR" : ", VBR") +
               (estimate ? " (no frame count in its header: length estimated)" : "") + " (libmpg123)";
    } else {
      format = "MPEG Audio (libmpg123)";
    }
    check_format();
  }

  // ::read from libmpg123 until it has frames (it answers NEW_FORMAT once at the start).
  int64_t read_mpeg(float* out, int64_t max_frames) {
    block.resize(static_cast<size_t>(std::min<int64_t>(max_frames, 16384) * channels));
    for (;;) {
      size_t bytes = 0;
      const int r = mpg123_read(mpg, reinterpret_cast<unsigned char*>(block.data()), block.size() * sizeof(float), &bytes);
      const int64_t got = static_cast<int64_t>(bytes / sizeof(float)) / channels;
      if (r == MPG123_NEW_FORMAT) {
        long rate = 0;
        int ch = 0, enc = 0;
        mpg123_getformat(mpg, &rate, &ch, &enc);
        if (rate == sample_rate && ch == channels) {
          if (got > 0) return downmix(out, got);
          continue;
        }
        // Garbage after the audio often parses as a frame of another rate; nothing after it is this stream.
        error = "the stream changes to " + std::to_string(rate) + " Hz, " + std::to_string(ch) +
                " channels: damaged or foreign data follows";
        done = true;
        return got > 0 ? downmix(out, got) : 0;
      }
      if (r == MPG123_OK) {
        if (got > 0) return downmix(out, got);
        continue;
      }
      if (r != MPG123_DONE) error = std::string("libmpg123: ") + mpg123_strerror(mpg);
      done = true;
      return got > 0 ? downmix(out, got) : 0;
    }
  }

  int64_t read_sndfile(float* out, int64_t max_frames) {
    const sf_count_t want = std::min<int64_t>(max_frames, 16384);
    block.resize(static_cast<size_t>(want * channels));
    const sf_count_t got = sf_readf_float(sndfile, block.data(), want);
    if (got <= 0) {
      if (sf_error(sndfile) != SF_ERR_NO_ERROR) error = sf_strerror(sndfile);
      done = true;
      return 0;
    }
    return downmix(out, got);
  }

  int64_t downmix(float* out, int64_t got) {
    if (channels == 1) {
      std::copy(block.begin(), block.begin() + got, out);
    } else {
      for (int64_t f = 0; f < got; ++f) {
        const float* frame = block.data() + f * channels;
        float sum = 0.0f;
        for (int c = 0; c < channels; ++c) sum += frame[c];
        out[f] = sum / static_cast<float>(channels);
      }
    }
    // A float file can hold NaN or infinite samples (libsndfile passes them through): they would turn
    // every STFT frame that touches them into NaN and the mel into noise or garbage without a word, so
    // the file is refused here, naming where.
    for (int64_t f = 0; f < got; ++f)
      if (!std::isfinite(out[f])) {
        char at[64];
        std::snprintf(at, sizeof at, "%.3f s", sample_rate > 0 ? static_cast<double>(frames + f) / sample_rate : 0.0);
        throw decode_error(path, std::string("sample ") + std::to_string(frames + f) + " (at " + at + ") is " +
                                     (std::isnan(out[f]) ? "NaN" : "infinite") +
                                     ": a float file with broken samples; not decoded");
      }
    frames += got;
    return got;
  }
};

AudioReader::AudioReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  m.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m.fd < 0) throw decode_error(path, std::strerror(errno));
  struct stat st {};
  if (::fstat(m.fd, &st) != 0) throw decode_error(path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw decode_error(path, "not a regular file");
  m.file_bytes = static_cast<int64_t>(st.st_size);

  {
    unsigned char head[4096];
    const ssize_t n = ::pread(m.fd, head, sizeof head, 0);
    if (n > 0 && mpeg_stream_start(head, static_cast<size_t>(n)) >= 0) {
      m.open_mpeg();
      return;
    }
  }
  SF_INFO info{};
  {
    // libsndfile keeps the reason of a failed sf_open in one global (sf_errno in sndfile.c, read by
    // sf_strerror(nullptr)); files are decoded on several threads, so opening and reading the reason
    // happen under one lock, or two failures at once could report each other's reasons.
    static std::mutex open_mutex;
    std::lock_guard<std::mutex> lock(open_mutex);
    static SF_VIRTUAL_IO io = {vf_length, vf_seek, vf_read, vf_write, vf_tell};
    m.virtual_file.fd = m.fd;
    m.virtual_file.size = m.file_bytes;
    m.sndfile = sf_open_virtual(&io, SFM_READ, &info, &m.virtual_file);
    if (!m.sndfile) {
      std::string reason = sf_strerror(nullptr);
      unsigned char head[16] = {};
      const ssize_t n = ::pread(m.fd, head, sizeof head, 0);
      const std::string container = unreadable_container(path, head, n > 0 ? static_cast<size_t>(n) : 0);
      if (m.file_bytes == 0) reason = "an empty file (" + reason + ")";
      else if (!container.empty()) reason = container + " (" + reason + ")";
      throw decode_error(path, reason);
    }
  }
  if (info.channels <= 0) throw decode_error(path, "libsndfile reports " + std::to_string(info.channels) + " channels");
  m.format = format_name(m.sndfile, info.format);
  if ((info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_MPEG) {
    // An MPEG stream our sniffing missed (e.g. junk before the first frame). libsndfile stops reading
    // at its frame count, which for an MP3 without a Xing/VBRI header is an estimate (often minutes
    // short for VBR): decode with libmpg123 itself, until it stops.
    sf_close(m.sndfile);
    m.sndfile = nullptr;
    m.open_mpeg();
  } else {
    m.sample_rate = info.samplerate;
    m.channels = info.channels;
    // libsndfile answers SF_COUNT_MAX when it cannot tell (e.g. an Ogg stream cut before its last page).
    m.header_frames = info.frames >= 0 && info.frames < SF_COUNT_MAX ? info.frames : -1;
    if (m.header_frames >= 0) m.header_frames = std::max(m.header_frames, announced_frames_from_log(m.sndfile, info, m.header_frames));
  }
  m.check_format();
}

AudioReader::~AudioReader() = default;

int AudioReader::sample_rate() const { return impl_->sample_rate; }
int AudioReader::channels() const { return impl_->channels; }
const std::string& AudioReader::format() const { return impl_->format; }
int64_t AudioReader::header_frames() const { return impl_->header_frames; }
bool AudioReader::length_is_estimate() const { return impl_->estimate; }
int64_t AudioReader::file_bytes() const { return impl_->file_bytes; }
int64_t AudioReader::frames_read() const { return impl_->frames; }

int64_t AudioReader::bytes_read() const {
  // How far the decoder has read (with some read-ahead): libsndfile's offset in our callbacks, or the
  // descriptor's offset that libmpg123 reads at.
  const int64_t pos = impl_->mpg ? static_cast<int64_t>(::lseek(impl_->fd, 0, SEEK_CUR)) : impl_->virtual_file.pos;
  return std::clamp<int64_t>(pos, 0, impl_->file_bytes);
}

int64_t AudioReader::read(float* out, int64_t max_frames) {
  Impl& m = *impl_;
  if (m.done || max_frames <= 0) return 0;
  return m.mpg ? m.read_mpeg(out, max_frames) : m.read_sndfile(out, max_frames);
}

DecodeEnd AudioReader::end() const {
  const Impl& m = *impl_;
  DecodeEnd e;
  e.frames = m.frames;
  const auto missing = [&] { return m.header_frames >= 0 ? std::max<int64_t>(0, m.header_frames - m.frames) : -1; };
  if (!m.error.empty()) {
    e.partial = true;
    e.missing_frames = m.estimate ? 0 : missing();
    e.reason = m.error;
    return e;
  }
  if (m.mpg) {
    // A Xing/Info/VBRI count is the encoder's: short of it by more than two frames and the decoder's
    // delay (what gapless trimming can differ by) means the file was cut. An estimate says nothing.
    const int64_t tolerance = 2 * 1152 + 529;
    if (!m.estimate && m.header_frames >= 0 && m.frames + tolerance < m.header_frames) {
      e.partial = true;
      e.missing_frames = missing();
      e.reason = "the file ends before the frame count of its Xing/Info header";
    }
    return e;
  }
  if (m.header_frames < 0) {
    e.partial = true;
    e.missing_frames = -1;
    e.reason = "the stream ends without its last page: cut short";
  } else if (m.frames < m.header_frames) {
    e.partial = true;
    e.missing_frames = missing();
    e.reason = "the file ends before the length its header announces";
  }
  return e;
}

DecodedAudio decode_audio(const std::string& path) {
  AudioReader reader(path);
  DecodedAudio out;
  out.sample_rate = reader.sample_rate();
  out.channels = reader.channels();
  out.format = reader.format();
  out.header_frames = reader.header_frames();
  constexpr int64_t kBlock = 16384;
  for (;;) {
    const size_t at = out.samples.size();
    out.samples.resize(at + kBlock);
    const int64_t got = reader.read(out.samples.data() + at, kBlock);
    out.samples.resize(at + static_cast<size_t>(got));
    if (got == 0) break;
  }
  out.samples.shrink_to_fit();
  out.frames = static_cast<int64_t>(out.samples.size());
  out.end = reader.end();
  if (out.frames == 0)
    throw decode_error(path, out.end.partial ? "nothing decodes: " + out.end.reason : "it contains no audio frames");
  return out;
}

namespace {

void check_rates(double in_rate, double out_rate) {
  for (const double rate : {in_rate, out_rate}) {
    if (!(rate > 0.0 && rate <= kMaxSampleRate)) {  // written so NaN fails too
      std::ostringstream msg;
      msg << "resample: sample rate " << rate << " Hz is outside (0, " << kMaxSampleRate << "] Hz";
      throw std::invalid_argument(msg.str());
    }
  }
}

// SOXR_HQ (20-bit precision, ~120 dB, linear phase: soxr.h) is what librosa >= 0.10 resamples with
// by default (res_type="soxr_hq"), so our datasets match librosa-made ones; its error is far below
// the 80 dB range (top_db) kept in the mels. VHQ (28-bit) would cost more and change nothing there.
// One thread: prepare decodes many files in parallel, one per core.
struct SoxrSpecs {
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  soxr_runtime_spec_t runtime = soxr_runtime_spec(1);
};

}  // namespace

std::vector<float> resample(const std::vector<float>& in, double in_rate, double out_rate) {
  check_rates(in_rate, out_rate);
  if (in_rate == out_rate || in.empty()) {
    if (in_rate == out_rate) return in;
    return {};
  }
  const size_t out_len = static_cast<size_t>(std::llround(static_cast<double>(in.size()) * out_rate / in_rate));
  std::vector<float> out(out_len, 0.0f);
  if (out_len == 0) return out;
  // Note librosa fixes the length to ceil(n·out/in); we round (the two differ by at most one sample).
  const SoxrSpecs specs;
  size_t in_done = 0, out_done = 0;
  // soxr_oneshot flushes the filter at the end of input, so out gets the whole signal, delay removed.
  const soxr_error_t err = soxr_oneshot(in_rate, out_rate, 1, in.data(), in.size(), &in_done, out.data(), out_len,
                                        &out_done, &specs.io, &specs.quality, &specs.runtime);
  if (err) {
    std::ostringstream msg;
    msg << "resample " << in_rate << " Hz -> " << out_rate << " Hz: soxr failed: " << err;
    throw std::runtime_error(msg.str());
  }
  // soxr emits floor-or-ceil of n·out/in; a rounded-up length leaves at most one trailing zero.
  return out;
}

StreamResampler::StreamResampler(double in_rate, double out_rate) : in_rate_(in_rate), out_rate_(out_rate) {
  check_rates(in_rate, out_rate);
  if (in_rate == out_rate) return;
  const SoxrSpecs specs;
  soxr_error_t err = nullptr;
  soxr_ = soxr_create(in_rate, out_rate, 1, &err, &specs.io, &specs.quality, &specs.runtime);
  if (!soxr_ || err) {
    std::ostringstream msg;
    msg << "resample " << in_rate << " Hz -> " << out_rate << " Hz: soxr_create failed: " << (err ? err : "?");
    throw std::runtime_error(msg.str());
  }
  block_.resize(16384);
}

StreamResampler::~StreamResampler() {
  if (soxr_) soxr_delete(static_cast<soxr_t>(soxr_));
}

void StreamResampler::push(std::vector<float>& out, const float* in, size_t n) {
  total_in_ += n;
  if (!soxr_) {
    out.insert(out.end(), in, in + n);
    total_out_ += n;
    return;
  }
  size_t offset = 0;
  for (;;) {
    size_t in_done = 0, out_done = 0;
    const soxr_error_t err = soxr_process(static_cast<soxr_t>(soxr_), in + offset, n - offset, &in_done, block_.data(),
                                          block_.size(), &out_done);
    if (err) throw std::runtime_error(std::string("resample: soxr_process failed: ") + err);
    offset += in_done;
    out.insert(out.end(), block_.begin(), block_.begin() + static_cast<std::ptrdiff_t>(out_done));
    total_out_ += out_done;
    // A full output block may leave more behind; otherwise soxr has taken all the input.
    if (offset >= n && out_done < block_.size()) break;
  }
}

void StreamResampler::finish(std::vector<float>& out) {
  if (!soxr_) return;
  const uint64_t expected =
      static_cast<uint64_t>(std::llround(static_cast<double>(total_in_) * out_rate_ / in_rate_));
  for (;;) {
    size_t out_done = 0;
    // No input (nullptr): the end, soxr flushes its filter.
    const soxr_error_t err =
        soxr_process(static_cast<soxr_t>(soxr_), nullptr, 0, nullptr, block_.data(), block_.size(), &out_done);
    if (err) throw std::runtime_error(std::string("resample: soxr_process failed: ") + err);
    out.insert(out.end(), block_.begin(), block_.begin() + static_cast<std::ptrdiff_t>(out_done));
    total_out_ += out_done;
    if (out_done == 0 || total_out_ >= expected + block_.size()) break;
  }
  // The length resample() gives: soxr's floor-or-ceil made round(), a missing sample a zero.
  if (total_out_ > expected) {
    const uint64_t surplus = std::min<uint64_t>(total_out_ - expected, out.size());
    out.resize(out.size() - static_cast<size_t>(surplus));
    total_out_ -= surplus;
  }
  if (total_out_ < expected) {
    out.resize(out.size() + static_cast<size_t>(expected - total_out_), 0.0f);
    total_out_ = expected;
  }
}

AudioFolderScan scan_audio_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (ec || !fs::exists(status)) throw std::runtime_error("audio folder '" + dir + "' does not exist");
  AudioFolderScan scan;
  if (fs::is_regular_file(status)) {
    scan.files.push_back(dir);
    return scan;
  }
  if (!fs::is_directory(status)) throw std::runtime_error("'" + dir + "' is neither a folder nor a file");

  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) throw std::runtime_error("cannot list audio folder '" + dir + "': " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw std::runtime_error("cannot list audio folder '" + dir + "': " + ec.message());
    const std::string name = it->path().filename().string();
    const bool hidden = !name.empty() && name[0] == '.';
    if (hidden) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    const std::string path = it->path().string();
    std::error_code link_ec;
    if (it->is_symlink(link_ec)) {
      // The iterator does not follow links to folders, which also rules out cycles; say so rather
      // than leave the folder out silently. A link that loops or points nowhere is named too.
      std::error_code target_ec;
      const fs::file_status target = fs::status(it->path(), target_ec);
      if (target_ec || !fs::exists(target))
        scan.refused.push_back({path, target_ec ? "a link that cannot be followed: " + target_ec.message()
                                                : "a link to nothing (its target does not exist)"});
      else if (fs::is_directory(target))
        scan.refused.push_back({path, "a link to a folder: not followed (links to folders are never entered, so "
                                      "loops cannot happen); give that folder itself"});
      else if (fs::is_regular_file(target))
        scan.files.push_back(path);
      else
        scan.refused.push_back({path, "a link to something that is not a regular file"});
      continue;
    }
    std::error_code type_ec;
    const fs::file_status st = it->status(type_ec);
    if (type_ec) {
      scan.refused.push_back({path, type_ec.message()});
    } else if (fs::is_regular_file(st)) {
      scan.files.push_back(path);
    } else if (!fs::is_directory(st)) {
      // A FIFO would block the reader forever, a device may never end.
      scan.refused.push_back({path, "not a regular file (a pipe, socket or device)"});
    }
  }
  std::sort(scan.files.begin(), scan.files.end());
  std::sort(scan.refused.begin(), scan.refused.end(),
            [](const AudioFolderScan::Refused& a, const AudioFolderScan::Refused& b) { return a.path < b.path; });
  return scan;
}

std::vector<std::string> find_audio_files(const std::string& dir) { return scan_audio_folder(dir).files; }

}  // namespace ds
