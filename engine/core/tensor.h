// Tensor: a float32 NCHW array with a shape and a device (CPU or CUDA). Either owns its memory
// (host vector / cudaMalloc) or is a view into a larger buffer (parameters of a network live in one
// contiguous buffer; each layer's weight is a view into it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ds {

enum class Device { CPU, CUDA };
const char* device_name(Device d);

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);

// Alignment of the memory Tensor::empty allocates on the host.
constexpr size_t kHostAlignBytes = 64;

class Tensor {
 public:
  Tensor() = default;
  // Allocates (uninitialised on CUDA, zeroed on CPU; at least 64-byte aligned on both).
  static Tensor empty(const Shape& shape, Device device);
  static Tensor zeros(const Shape& shape, Device device);
  // A non-owning view of `data` (which must outlive the view).
  static Tensor view(float* data, const Shape& shape, Device device);
  static Tensor from_host(const std::vector<float>& values, const Shape& shape, Device device);

  float* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  Device device() const { return device_; }
  bool on_cuda() const { return device_ == Device::CUDA; }
  int64_t numel() const { return shape_numel(shape_); }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t rank() const { return shape_.size(); }
  bool defined() const { return data_ != nullptr || numel() == 0; }

  // The same memory seen with another shape of equal size.
  Tensor reshaped(const Shape& shape) const;
  // Rows [begin, end) along dimension 0.
  Tensor rows(int64_t begin, int64_t end) const;

  std::vector<float> to_host() const;
  void copy_from_host(const float* values, int64_t count);
  void copy_from(const Tensor& src);  // same numel, any devices
  void fill(float value);

 private:
  std::shared_ptr<void> owner_;
  float* data_ = nullptr;
  Shape shape_;
  Device device_ = Device::CPU;
};

}  // namespace ds
