// Tensor implementation: allocation on host or device, views, copies.
#include "engine/core/tensor.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include "engine/core/allocation_stats.h"
#include "engine/core/cuda_context.h"
#include "kernels/fill.h"
#include "kernels/launch_log.h"

namespace ds {

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

Tensor Tensor::empty(const Shape& shape, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.device_ = device;
  const int64_t n = shape_numel(shape);
  if (device == Device::CPU) {
    // 64-byte aligned, as cudaMalloc's (256-byte) allocations are at least: views placed at multiples
    // of 16 floats into a host buffer (the parameters, engine/nn/dcgan.h) are then 64-byte aligned too.
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float);
    float* p = static_cast<float*>(::operator new(bytes, std::align_val_t{kHostAlignBytes}));
    std::memset(p, 0, bytes);
    note_allocation(Device::CPU, bytes);
    auto buf = std::shared_ptr<float>(p, [bytes](float* q) {
      ::operator delete(q, std::align_val_t{kHostAlignBytes});
      note_release(Device::CPU, bytes);
    });
    t.data_ = buf.get();
    t.owner_ = buf;
  } else {
    launch_log::require_outside_step("Tensor::empty (cudaMalloc)");
    CudaContext::get();  // fails clearly if there is no GPU
    float* p = nullptr;
    const size_t bytes = std::max<int64_t>(n, 1) * sizeof(float);
    const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&p), bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw CudaError("out of GPU memory allocating " + std::to_string(bytes >> 20) + " MiB for a tensor of shape " +
                      shape_str(shape) + " (try a smaller --batch, --ngf or --ndf)");
    }
    DS_CUDA_CHECK(err);
    note_allocation(Device::CUDA, bytes);
    t.owner_ = std::shared_ptr<float>(p, [bytes](float* q) {
      cudaFree(q);
      note_release(Device::CUDA, bytes);
    });
    t.data_ = p;
  }
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Device device) {
  Tensor t = empty(shape, device);
  if (device == Device::CUDA) t.fill(0.f);
  return t;
}

Tensor Tensor::view(float* data, const Shape& shape, Device device) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.device_ = device;
  return t;
}

Tensor Tensor::from_host(const std::vector<float>& values, const Shape& shape, Device device) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    throw std::invalid_argument("Tensor::from_host: " + std::to_string(values.size()) + " values for shape " +
                                shape_str(shape));
  Tensor t = empty(shape, device);
  t.copy_from_host(values.data(), static_cast<int64_t>(values.size()));
  return t;
}

Tensor Tensor::reshaped(const Shape& shape) const {
  if (shape_numel(shape) != numel())
    throw std::invalid_argument("Tensor::reshaped: " + shape_str(shape_) + " to " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (rank() == 0 || begin < 0 || end > shape_[0] || begin > end)
    throw std::out_of_range("Tensor::rows: [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                            shape_str(shape_));
  const int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  Tensor t = *this;
  t.data_ = data_ + begin * row;
  t.shape_[0] = end - begin;
  return t;
}

std::vector<float> Tensor::to_host() const {
  launch_log::require_outside_step("Tensor::to_host");
  std::vector<float> out(numel());
  if (out.empty()) return out;
  if (device_ == Device::CPU) {
    std::memcpy(out.data(), data_, out.size() * sizeof(float));
  } else {
    CudaContext& ctx = CudaContext::get();
    DS_CUDA_CHECK(cudaMemcpyAsync(out.data(), data_, out.size() * sizeof(float), cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
  }
  return out;
}

void Tensor::copy_from_host(const float* values, int64_t count) {
  launch_log::require_outside_step("Tensor::copy_from_host");
  if (count != numel()) throw std::invalid_argument("Tensor::copy_from_host: size mismatch for " + shape_str(shape_));
  if (count == 0) return;
  if (device_ == Device::CPU) {
    std::memcpy(data_, values, count * sizeof(float));
  } else {
    CudaContext& ctx = CudaContext::get();
    DS_CUDA_CHECK(cudaMemcpyAsync(data_, values, count * sizeof(float), cudaMemcpyHostToDevice, ctx.stream()));
    ctx.synchronize();  // `values` may be a temporary of the caller
  }
}

void Tensor::copy_from(const Tensor& src) {
  if (src.numel() != numel())
    throw std::invalid_argument("Tensor::copy_from: " + shape_str(src.shape_) + " into " + shape_str(shape_));
  if (numel() == 0) return;
  if (device_ == Device::CPU && src.device_ == Device::CPU) {
    std::memcpy(data_, src.data_, numel() * sizeof(float));
    return;
  }
  const cudaMemcpyKind kind = src.device_ == Device::CPU
                                  ? cudaMemcpyHostToDevice
                                  : (device_ == Device::CPU ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice);
  // A device-to-device copy is stream-ordered and capturable; any other kind reads or writes host
  // memory and waits for it.
  if (kind != cudaMemcpyDeviceToDevice) launch_log::require_outside_step("Tensor::copy_from (host side)");
  CudaContext& ctx = CudaContext::get();
  if (launch_log::LaunchLog* log = launch_log::active())
    log->call("cudaMemcpyAsync", ctx.stream(), static_cast<void*>(data_), static_cast<const void*>(src.data_),
              numel() * sizeof(float), kind);
  DS_CUDA_CHECK(cudaMemcpyAsync(data_, src.data_, numel() * sizeof(float), kind, ctx.stream()));
  if (kind != cudaMemcpyDeviceToDevice) ctx.synchronize();
}

void Tensor::fill(float value) {
  if (device_ == Device::CPU) {
    std::fill(data_, data_ + numel(), value);
  } else {
    kcuda::fill(data_, value, numel(), CudaContext::get().stream());
  }
}

}  // namespace ds
