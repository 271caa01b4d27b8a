// The GPU mel path (see mel_gpu.h): the cuFFT plan (with the framing as its LTO load callback and |X|²
// as its LTO store callback, issue 9)
// and the cuBLAS call in a few thin, cited lines; every other step is a kernel of kernels/spectral.cu,
// emulated on the CPU in tests/test_emu_spectral.cpp and tests/test_emu_mel_path.cpp.
#include "audio/mel_gpu.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "audio/cufft_check.h"
#include "audio/mel_cpu.h"
#include "engine/core/cuda_context.h"
#include "kernels/spectral.h"
#include "stft_framing_lto.h"  // generated (cmake/StftFramingLto.cmake): ds_stft_framing_lto[], the LTO-IR fatbin

#include <cufftXt.h>

namespace ds {

StftFftLayout stft_fft_layout(const MelParams& p, int64_t n_slices) {
  const int64_t batch = n_slices * p.stft_frames(p.slice_samples());
  if (batch > INT_MAX || batch * p.n_fft > INT_MAX)
    throw std::invalid_argument("mel on the GPU: " + std::to_string(n_slices) +
                                " slices per batch exceed cuFFT's 32-bit plan sizes; use smaller batches");
  StftFftLayout l;
  l.n = p.n_fft;
  // Frame rows are contiguous and back to back (frame_window writes them so): stride 1, distance n_fft
  // reals. The R2C keeps the n/2 + 1 non-redundant bins of each, back to back: distance n_freqs complex.
  l.inembed = p.n_fft;
  l.onembed = p.n_freqs();
  l.istride = 1;
  l.idist = p.n_fft;
  l.ostride = 1;
  l.odist = p.n_freqs();
  l.batch = static_cast<int>(batch);
  return l;
}

// cuBLAS is column-major (cuBLAS docs, "Data Layout": "column-major storage ... 1-based indexing"), and
// a row-major r×c matrix is, read column-major, its c×r transpose. The standard trick for a row-major
// product (P. Wittek, peterwittek.com/2013/06/cublas-matrix-c-style/; NVIDIA's
// matrixMulCUBLAS sample): to get row-major C = X·Y ask cuBLAS for Cᵀ = Yᵀ·Xᵀ, whose operands are
// the buffers as they lie. Here, per slice:
//   want  mel (n_mels × frames, row-major)             = F · Pᵀ
//   cuBLAS sees mel's buffer as melᵀ (frames × n_mels), = P · Fᵀ
//   A = the power buffer, which cuBLAS reads as Pᵀ (n_freqs × frames, lda = n_freqs): transa = T gives P
//   B = the filterbank buffer, which it reads as Fᵀ (n_freqs × n_mels, ldb = n_freqs): transb = N
//   C = the mel buffer as melᵀ: m = frames, n = n_mels, k = n_freqs, ldc = frames.
// Batch entries: consecutive slices (stride frames·n_freqs in A, n_mels·frames in C), one shared
// filterbank (stride 0 in B).
MelProjectionGemm mel_projection_gemm(const MelParams& p, int64_t n_slices) {
  const int64_t frames = p.stft_frames(p.slice_samples());
  MelProjectionGemm g;
  g.transa = CUBLAS_OP_T;
  g.transb = CUBLAS_OP_N;
  g.m = static_cast<int>(frames);
  g.n = p.n_mels;
  g.k = p.n_freqs();
  g.lda = p.n_freqs();
  g.ldb = p.n_freqs();
  g.ldc = static_cast<int>(frames);
  g.stride_a = static_cast<long long>(frames) * p.n_freqs();
  g.stride_b = 0;
  g.stride_c = static_cast<long long>(p.n_mels) * frames;
  g.batch_count = static_cast<int>(n_slices);
  return g;
}

const char* mel_framing_name(MelFraming f) { return f == MelFraming::LoadCallback ? "load_callback" : "kernel"; }

MelGpu::MelGpu(const MelParams& p, int64_t max_slices, MelFraming framing) : p_(p), max_slices_(max_slices) {
  if (!p.center) throw std::invalid_argument("mel on the GPU: only center=True is implemented");
  if (p.win != p.n_fft) throw std::invalid_argument("mel on the GPU: --win must equal --n-fft (as mel_cpu)");
  if (p.pad_mode != "constant" && p.pad_mode != "reflect")
    throw std::invalid_argument("--pad-mode " + p.pad_mode + ": expected 'constant' or 'reflect'");
  // As mel_cpu (audio/mel_cpu.cpp's checks): numpy's 'reflect' needs a signal longer than the pad;
  // frame_window would silently reflect periodically instead.
  if (p.pad_mode == "reflect" && p.slice_samples() <= p.n_fft / 2)
    throw std::invalid_argument("pad_mode 'reflect' needs more than n_fft/2 = " + std::to_string(p.n_fft / 2) +
                                " samples per slice");
  if (max_slices <= 0) throw std::invalid_argument("MelGpu: max_slices must be positive");
  frames_ = p.stft_frames(p.slice_samples());
  if (!p.resize_w && frames_ != p.frames)
    throw std::invalid_argument("mel on the GPU: " + std::to_string(frames_) + " STFT frames but --frames " +
                                std::to_string(p.frames) + " and no resize");
  stft_fft_layout(p, max_slices);  // refuses sizes cuFFT's int plan cannot take, before any allocation

  const int64_t rows = max_slices * frames_;
  window_ = DeviceBuffer<float>::from_host(hann_window_periodic(p.n_fft));
  filterbank_ = DeviceBuffer<float>::from_host(mel_filterbank(p));
  // frame_rows_ only if a kernel plan is made (allocate_frame_rows): with the callbacks nothing reads it.
  spectrum_ = DeviceBuffer<float2>(static_cast<size_t>(rows * p.n_freqs()));
  power_ = DeviceBuffer<float>(static_cast<size_t>(rows * p.n_freqs()));
  mel_ = DeviceBuffer<float>(static_cast<size_t>(max_slices * p.n_mels * frames_));
  if (p.resize_w) resize_tmp_ = DeviceBuffer<double>(static_cast<size_t>(max_slices * p.n_mels * p.image_width()));
  const char* forced = std::getenv("DARKSTAR_MEL_FRAMING");
  if (framing == MelFraming::Kernel) {
    framing_note_ = "the framing kernel was asked for";
  } else if (forced && std::strcmp(forced, "kernel") == 0) {
    framing_note_ = "DARKSTAR_MEL_FRAMING=kernel";
  } else {
    if (forced && *forced && std::strcmp(forced, "load_callback") != 0)
      throw std::invalid_argument(std::string("DARKSTAR_MEL_FRAMING=") + forced +
                                  ": expected 'kernel' or 'load_callback' (or unset)");
    framing_ = DeviceBuffer<StftFraming>(1);
    load_callback_ = true;
  }
  plan_for(max_slices);
  if (load_callback_) check_load_callback();
}

MelGpu::~MelGpu() {
  for (auto& entry : plans_) cufftDestroy(entry.second.handle);  // never throws from a destructor
}

// The LTO callbacks' symbols: kernels/lto/stft_framing_callback.cu defines both (one fatbin).
constexpr const char* kLoadCallbackSymbol = "ds_stft_framing_load";
constexpr const char* kStoreCallbackSymbol = "ds_stft_power_store";

void MelGpu::allocate_frame_rows() {
  if (frame_rows_.get()) return;
  frame_rows_ = DeviceBuffer<float>(static_cast<size_t>(max_slices_ * frames_ * p_.n_fft));
}

// cuFFT LTO callbacks, checked against NVIDIA's documentation:
//  - cufftXtSetJITCallback(plan, lto_callback_symbol_name, lto_callback_fatbin, lto_callback_fatbin_size,
//    type, caller_info) is CUDA 13's signature (cufftXt.h; nvmath-python's binding notes: "Signature of
//    cufftXtSetJITCallback changed with CTK 13", docs.nvidia.com/cuda/nvmath-python/latest/bindings/
//    generated/nvmath.bindings.cufft.xt_set_jit_callback.html). NVIDIA's CUDA 13 sample passes the
//    device function's plain name as the symbol (github.com/NVIDIA/CUDALibrarySamples,
//    cuFFT/lto_callback_window_1d/src/r2c_c2r_windowing_lto_callback_example.cpp).
//  - When: "this function must be called after plan creation (after using cufftCreate to initialize the
//    handle), but before using the planning function (such as cufftMakePlan1D)"
//    (docs.nvidia.com/cuda/cufft/ltoea/api/index.html, cufftXtSetJITCallback).
//  - lto_callback_fatbin: "Pointer to the location in host memory where the callback device function is
//    located, after being compiled into LTO-IR with nvcc or NVRTC"; "The data could be an array
//    containing the fatbin compiled using nvcc" (same page); the size is in bytes.
//  - caller_info: "Optional array of device pointers to caller specific information, one per GPU"
//    (same page): a host array holding one device pointer, here the StftFraming in framing_.
//  - type CUFFT_CB_LD_REAL: a load callback of a single-precision real input, what an R2C reads
//    (cufftJITCallbackLoadR in cufftXt.h; the callback's signature is at kernels/stft_framing.h).
//  - type CUFFT_CB_ST_COMPLEX: a store callback of a single-precision complex output, what an R2C
//    writes (cufftJITCallbackStoreC in cufftXt.h), set on the same plan with a second call (the type
//    argument says which of the plan's callbacks it is; the fatbin, holding both symbols, is the same).
//    Its caller_info is the power buffer itself, so the callback writes power[offset] = |element|².
//  - The store offset, for this batched R2C: NVIDIA's LTO store sample indexes dataOut with it directly
//    (`out[offset] = ...`, cuFFT/lto_callback_window_1d/src/r2c_c2r_padding_lto_store_callback_device.cu),
//    i.e. the element's index from the start of odata, in output elements (complex values for an R2C),
//    which under the advanced layout is b·odist + x·ostride for bin x of transform b. stft_fft_layout
//    has ostride 1 and odist n_freqs, so offset = row·n_freqs + x: the index power_spectrum writes.
//    (As for the load offset, the main cuFFT guide's wording of this was not among the pages found;
//    the construction check below compares the powers with the kernel path's before any use.)
//  - The offset counts elements (not bytes) from the start of the input buffer, as for legacy callbacks
//    ("In general, LTO-callbacks in cuFFT LTO EA support the same functionaliity as non-LTO callbacks",
//    docs.nvidia.com/cuda/cufft/ltoea/usage/supported_functionalities.html); NVIDIA's LTO sample reads
//    its input as `cb_output[idx]` and its position in a signal as `idx % params->signal_size`
//    (cuFFT/lto_callback_window_1d/src/r2c_c2r_windowing_lto_callback_device.cu). With
//    stft_fft_layout's istride 1 and idist n_fft it is row·n_fft + j. (The callback-routine section of
//    the main cuFFT guide, which words this, was not among the pages found; a GPU run of
//    tests/gpu/test_gpu_spectral.cpp is what settles it.)
//  - Runtime: "cuFFT LTO EA requires nvJitLink to do runtime linking of LTO-callbacks with cuFFT
//    kernels" (docs.nvidia.com/cuda/cufft/ltoea/usage/requirements.html); this libcufft.so.12 loads
//    libnvJitLink.so.13 itself (its strings name it; it is not a NEEDED entry), so darkstar does not
//    link nvJitLink and a machine without it gets a failing plan, i.e. the fallback below. The same page:
//    "LTO-callbacks must be compiled with the nvcc compiler distributed as part of the same CUDA Toolkit
//    as the nvJitLink used; or an older compiler", i.e. an nvJitLink at least as new as this nvcc.
//  - The plan's other arguments are those of the plain plan below (cufftMakePlanMany takes the same
//    layout as cufftPlanMany, plus the work size it returns).
bool MelGpu::make_callback_plan(cufftHandle* out, const StftFftLayout& l) {
#if CUFFT_VERSION < 12000
  // cuFFT 11 (CUDA 12) declares cufftXtSetJITCallback without the symbol name (CUDA 12.6 U2 – 12.9) or
  // not at all; this code is written against CUDA 13's. Such a build frames with the kernel.
  (void)out;
  (void)l;
  load_callback_ = false;
  framing_note_ = "this build's cuFFT (" + std::to_string(CUFFT_VERSION) + ") predates CUDA 13's cufftXtSetJITCallback";
  std::fprintf(stderr, "mel on the GPU: %s; the mel runs with the framing kernel\n", framing_note_.c_str());
  return false;
#else
  int n[1] = {l.n};
  int inembed[1] = {l.inembed};
  int onembed[1] = {l.onembed};
  cufftHandle plan = 0;
  DS_CUFFT_CHECK(cufftCreate(&plan));  // not the callback's business: a failure here is an error
  void* caller_info[1] = {framing_.get()};
  void* store_info[1] = {power_.get()};
  const char* failed = nullptr;
  cufftResult r = cufftXtSetJITCallback(plan, kLoadCallbackSymbol, ds_stft_framing_lto, sizeof(ds_stft_framing_lto),
                                        CUFFT_CB_LD_REAL, caller_info);
  if (r != CUFFT_SUCCESS) {
    failed = "cufftXtSetJITCallback (load)";
  } else if ((r = cufftXtSetJITCallback(plan, kStoreCallbackSymbol, ds_stft_framing_lto, sizeof(ds_stft_framing_lto),
                                        CUFFT_CB_ST_COMPLEX, store_info)) != CUFFT_SUCCESS) {
    failed = "cufftXtSetJITCallback (store)";
  } else {
    size_t work_bytes = 0;
    r = cufftMakePlanMany(plan, 1, n, inembed, l.istride, l.idist, onembed, l.ostride, l.odist, CUFFT_R2C, l.batch,
                          &work_bytes);
    if (r != CUFFT_SUCCESS) failed = "cufftMakePlanMany with the LTO callbacks";
  }
  if (failed) {
    cufftDestroy(plan);
    (void)cudaGetLastError();  // a failed JIT link must not surface as the next kernel launch's error
    load_callback_ = false;
    framing_note_ = std::string(failed) + ": " + cufft_result_name(r);
    std::fprintf(stderr,
                 "mel on the GPU: the fused framing's cuFFT load/store callbacks are unavailable (%s, e.g. no "
                 "libnvJitLink.so.13 or an old driver); the mel runs with the framing and power kernels\n",
                 framing_note_.c_str());
    return false;
  }
  *out = plan;
  return true;
#endif
}

cufftHandle MelGpu::make_kernel_plan(const StftFftLayout& l) {
  int n[1] = {l.n};
  // cuFFT API reference, "Advanced Data Layout" and cufftPlanMany (docs.nvidia.com/cuda/cufft): for
  // rank 1, transform b reads input[b·idist + x·istride] and writes output[b·odist + x·ostride];
  // inembed/onembed give the storage sizes (a null one would switch the plan to the basic layout and
  // ignore the strides and distances, so they are passed explicitly; for rank 1 only their presence
  // matters). idist/istride count reals (cufftReal) and odist/ostride complex values (cufftComplex) for
  // an R2C. The plan allocates its own work area (automatic allocation is cuFFT's default).
  int inembed[1] = {l.inembed};
  int onembed[1] = {l.onembed};
  cufftHandle handle = 0;
  DS_CUFFT_CHECK(cufftPlanMany(&handle, 1, n, inembed, l.istride, l.idist, onembed, l.ostride, l.odist, CUFFT_R2C,
                               l.batch));
  return handle;
}

StftFraming MelGpu::callback_framing(const float* device_audio, int64_t signal_stride) const {
  StftFraming f;
  f.audio = device_audio;
  f.window = window_.get();
  f.L = p_.slice_samples();
  f.signal_stride = signal_stride;
  f.n_fft = p_.n_fft;
  f.hop = p_.hop;
  f.n_frames = static_cast<int>(frames_);
  f.pad_mode = p_.pad_mode == "reflect" ? 1 : 0;
  return f;
}

// The callbacks' reading of `offset` (element b·idist + x of the R2C input, bin b·odist + x of its
// output, as the advanced layout addresses them) rests on NVIDIA's LTO samples and on "the same
// functionality as non-LTO callbacks", not on a sentence that says so (see make_callback_plan), and this
// project has not run them on a GPU yet. A plan that JIT-links but reads or writes differently would
// put wrong mels into a dataset without a word, so before the first use one slice of fixed noise goes
// through both paths (callbacks: power written by the store callback; kernels: frame_window, a plain
// R2C, power_spectrum, on temporaries of one slice) and the two powers are compared. Same FFT size and
// batch, same input values and the same |X|² arithmetic (kernels/stft_framing.h): cuFFT may still pick
// other kernels for a callback plan, so the bound is relative, 2e-5 of the largest power (float FFT
// error is ~1e-7·log2(n) of the largest magnitude, doubled by the square; a wrong offset gives O(1)
// differences, a power left unwritten shows as the NaN the buffer is filled with first).
void MelGpu::check_load_callback() {
  CudaContext& ctx = CudaContext::get();
  const cudaStream_t stream = ctx.stream();
  const int64_t L = p_.slice_samples();
  std::vector<float> host(static_cast<size_t>(L));
  std::mt19937 rng(20261201);
  std::uniform_real_distribution<float> noise(-0.5f, 0.5f);
  for (float& x : host) x = noise(rng);
  DeviceBuffer<float> audio = DeviceBuffer<float>::from_host(host);
  const size_t n = static_cast<size_t>(frames_ * p_.n_freqs());
  std::vector<float> with_callbacks(n, std::nanf("")), with_kernels(n);

  const Plan one = plan_for(1);
  if (!one.load_callback) return;  // the plan already fell back (its line printed)
  power_.upload(with_callbacks.data(), n);  // NaN: a bin the store callback skips stays NaN
  kcuda::store_stft_framing(framing_.get(), callback_framing(audio.get(), L), stream);
  DS_CUFFT_CHECK(cufftExecR2C(one.handle, audio.get(), reinterpret_cast<cufftComplex*>(spectrum_.get())));
  power_.download(with_callbacks.data(), n);

  DeviceBuffer<float> rows(static_cast<size_t>(frames_ * p_.n_fft)), power(n);
  DeviceBuffer<float2> spectrum(n);
  const cufftHandle plain = make_kernel_plan(stft_fft_layout(p_, 1));
  cufftResult set = cufftSetStream(plain, stream);
  if (set == CUFFT_SUCCESS) {
    kcuda::frame_window(rows.get(), audio.get(), window_.get(), 1, L, L, p_.n_fft, p_.hop, static_cast<int>(frames_),
                        p_.pad_mode == "reflect" ? 1 : 0, stream);
    set = cufftExecR2C(plain, rows.get(), reinterpret_cast<cufftComplex*>(spectrum.get()));
  }
  cufftDestroy(plain);
  check_cufft(set, "cufftExecR2C (the callbacks' check)", __FILE__, __LINE__);
  kcuda::power_spectrum(power.get(), spectrum.get(), static_cast<int64_t>(n), stream);
  power.download(with_kernels.data(), n);

  double largest = 0, worst = 0;
  for (size_t i = 0; i < n; ++i) {
    largest = std::max(largest, std::fabs(double{with_kernels[i]}));
    worst = std::max(worst, std::fabs(double{with_callbacks[i]} - with_kernels[i]));  // NaN is caught below
    if (std::isnan(with_callbacks[i])) worst = std::numeric_limits<double>::infinity();
  }
  if (std::isfinite(worst) && worst <= 2e-5 * largest) return;
  char note[160];
  std::snprintf(note, sizeof note, "its power spectrum of a test slice differs from the kernels' by %.3g of the "
                "largest power", largest > 0 ? worst / largest : worst);
  framing_note_ = note;
  std::fprintf(stderr, "mel on the GPU: the fused framing's cuFFT load/store callbacks are not used (%s); the mel "
               "runs with the framing and power kernels\n", note);
  for (auto& entry : plans_) cufftDestroy(entry.second.handle);
  plans_.clear();
  load_callback_ = false;
  plan_for(max_slices_);
}

MelGpu::Plan MelGpu::plan_for(int64_t n_slices) {
  auto found = plans_.find(n_slices);
  if (found != plans_.end()) return found->second;
  const StftFftLayout l = stft_fft_layout(p_, n_slices);
  Plan made;
  if (load_callback_ && make_callback_plan(&made.handle, l)) {
    made.load_callback = true;
  } else {
    allocate_frame_rows();  // the kernel path's input, made when its first plan is
    made.handle = make_kernel_plan(l);
  }
  // cufftSetStream: the plan's kernels (and its later executions) go on this stream (cuFFT API
  // reference, cufftSetStream).
  cufftResult set = cufftSetStream(made.handle, CudaContext::get().stream());
  if (set != CUFFT_SUCCESS) {
    cufftDestroy(made.handle);
    check_cufft(set, "cufftSetStream(plan, stream)", __FILE__, __LINE__);
  }
  plans_[n_slices] = made;
  return made;
}

void MelGpu::compute(float* out_image, const float* device_audio, int64_t n_slices, int64_t signal_stride,
                     float* slice_ref_out) {
  if (n_slices <= 0) return;
  if (n_slices > max_slices_)
    throw std::invalid_argument("MelGpu::compute: " + std::to_string(n_slices) + " slices, built for at most " +
                                std::to_string(max_slices_));
  CudaContext& ctx = CudaContext::get();
  const cudaStream_t stream = ctx.stream();
  const int64_t L = p_.slice_samples();
  const int64_t rows = n_slices * frames_;

  // Framing and power, two ways (MelFraming, mel_gpu.h), each element computed by kernels/stft_framing.h:
  //  - the LTO callbacks: cuFFT asks the load callback for input element `offset` and gets
  //    window[j]·(padded sample) read from the audio, so no frame rows exist (issue 9); its callerInfo
  //    (framing_) gets this call's audio pointer and stride on the stream, ordered before the
  //    transform, without a host synchronisation. idata is the audio itself: with a load callback
  //    cuFFT reads the input only through it (the callback's dataIn is that pointer, unused), and an
  //    R2C does not write its input (cuFFT documents overwriting only for out-of-place C2R). The store
  //    callback writes each bin's |X|² to power_[offset]; odata is still spectrum_: nothing found in
  //    NVIDIA's documentation says a plan with a store callback leaves odata untouched (a multi-kernel
  //    transform may stage data there), so the buffer stays allocated, but no complex value is stored
  //    for power_spectrum to read back.
  //  - the kernels (fallback, or forced): frame_window writes the rows, cuFFT reads them and writes the
  //    spectrum, power_spectrum reads it.
  // The way not taken: a plan with idist = hop reading overlapping frames straight from the signal, the
  // Hann window applied after the FFT (X_w[k] = ½X[k] − ¼X[k−1] − ¼X[k+1]): cuFFT's documentation gives
  // the addressing but says nothing of batches that overlap, the centre padding still needs a padded
  // copy of each slice, and one plan has a single idist while consecutive slices' frames are not evenly
  // spaced (a slice spans (frames − 1)·hop + n_fft > frames·hop padded samples).
  const Plan plan = plan_for(n_slices);
  // cufftExecR2C(plan, idata, odata): forward (sign −1), unnormalised, as numpy.fft.rfft (cuFFT API
  // reference, cufftExecR2C; "cuFFT performs un-normalized FFTs"). Out of place: the input stays intact.
  cufftComplex* const odata = reinterpret_cast<cufftComplex*>(spectrum_.get());
  if (plan.load_callback) {
    kcuda::store_stft_framing(framing_.get(), callback_framing(device_audio, signal_stride), stream);
    DS_CUFFT_CHECK(cufftExecR2C(plan.handle, const_cast<float*>(device_audio), odata));  // power_ by the callback
  } else {
    kcuda::frame_window(frame_rows_.get(), device_audio, window_.get(), n_slices, L, signal_stride, p_.n_fft, p_.hop,
                        static_cast<int>(frames_), p_.pad_mode == "reflect" ? 1 : 0, stream);
    DS_CUFFT_CHECK(cufftExecR2C(plan.handle, frame_rows_.get(), odata));
    kcuda::power_spectrum(power_.get(), spectrum_.get(), rows * p_.n_freqs(), stream);
  }

  const MelProjectionGemm g = mel_projection_gemm(p_, n_slices);
  const float one = 1.0f, zero = 0.0f;
  // cublasGemmStridedBatchedEx (cuBLAS docs): C_i = α·op(A_i)·op(B_i) + β·C_i with A_i = A + i·strideA
  // etc., the same arguments as cublasSgemmStridedBatched plus data and compute types; operand roles
  // explained at mel_projection_gemm. The handle is on the context's stream. CUBLAS_COMPUTE_32F_PEDANTIC
  // keeps this product in full FP32 whatever the handle's math mode: with TF32 (the training default)
  // the mel would be off by ~4e-3 dB, 20–800× the FFT's own error, in data that is stored once.
  DS_CUBLAS_CHECK(cublasGemmStridedBatchedEx(ctx.cublas(), g.transa, g.transb, g.m, g.n, g.k, &one, power_.get(),
                                             CUDA_R_32F, g.lda, g.stride_a, filterbank_.get(), CUDA_R_32F, g.ldb,
                                             g.stride_b, &zero, mel_.get(), CUDA_R_32F, g.ldc, g.stride_c,
                                             g.batch_count, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));

  const int64_t per_slice = static_cast<int64_t>(p_.n_mels) * frames_;
  kcuda::power_to_db(mel_.get(), slice_ref_out, mel_.get(), n_slices, per_slice, p_.amin, p_.top_db, p_.ref, stream);
  // As mel_image: the `seed` layout is resized in the dB domain, then mapped onto [−1, 1].
  const float* db = mel_.get();
  int64_t image_values = n_slices * per_slice;
  if (p_.resize_w) {
    kcuda::resize_antialiased(out_image, resize_tmp_.get(), mel_.get(), n_slices, p_.n_mels,
                              static_cast<int>(frames_), p_.image_height(), p_.image_width(), stream);
    db = out_image;
    image_values = n_slices * p_.image_height() * p_.image_width();
  }
  kcuda::db_to_unit(out_image, db, image_values, p_.top_db, stream);
}

double bench_mel_gpu(const MelParams& p, double audio_seconds, int repeats, int64_t slices_per_batch) {
  const int64_t L = p.slice_samples();
  const int64_t n_slices = std::max<int64_t>(1, static_cast<int64_t>(audio_seconds * p.sr / L));
  const int64_t batch = slices_per_batch > 0 ? std::min(slices_per_batch, n_slices) : n_slices;
  std::vector<float> host(static_cast<size_t>(n_slices * L));
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> noise(-0.5f, 0.5f);
  for (float& x : host) x = noise(rng);
  DeviceBuffer<float> audio = DeviceBuffer<float>::from_host(host);
  DeviceBuffer<float> images(static_cast<size_t>(n_slices * p.image_height() * p.image_width()));
  DeviceBuffer<float> refs(static_cast<size_t>(n_slices));
  MelGpu mel(p, batch);
  const int64_t image_size = static_cast<int64_t>(p.image_height()) * p.image_width();
  auto run_all = [&] {
    for (int64_t s = 0; s < n_slices; s += batch) {
      const int64_t count = std::min(batch, n_slices - s);
      mel.compute(images.get() + s * image_size, audio.get() + s * L, count, L, refs.get() + s);
    }
  };
  CudaContext& ctx = CudaContext::get();
  run_all();  // warm-up: the shorter tail plan, lazy library initialisation
  ctx.synchronize();
  cudaEvent_t start = nullptr, stop = nullptr;
  DS_CUDA_CHECK(cudaEventCreate(&start));
  DS_CUDA_CHECK(cudaEventCreate(&stop));
  DS_CUDA_CHECK(cudaEventRecord(start, ctx.stream()));
  for (int r = 0; r < repeats; ++r) run_all();
  DS_CUDA_CHECK(cudaEventRecord(stop, ctx.stream()));
  DS_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  DS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const double seconds_per_run = ms / 1000.0 / std::max(1, repeats);
  return static_cast<double>(n_slices * L) / p.sr / seconds_per_run;
}

}  // namespace ds
