// --device-data and the streamed batches' host side (see batch_stream.h).
#include "engine/data/batch_stream.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace ds {

DeviceData parse_device_data(const std::string& flag) {
  if (flag == "auto") return DeviceData::Auto;
  if (flag == "resident") return DeviceData::Resident;
  if (flag == "stream") return DeviceData::Stream;
  throw std::invalid_argument("--device-data " + flag + ": expected auto, resident or stream");
}

const char* device_data_name(DeviceData mode) {
  switch (mode) {
    case DeviceData::Auto: return "auto";
    case DeviceData::Resident: return "resident";
    case DeviceData::Stream: return "stream";
  }
  return "?";
}

size_t resident_device_bytes(const ImageDataset& data) {
  const size_t element = data.dtype == DType::U8 ? 1 : sizeof(float);
  return element * static_cast<size_t>(data.sample_size()) * static_cast<size_t>(data.count);
}

size_t resident_budget(size_t free_bytes) {
  const size_t reserve = std::max<size_t>(size_t(512) << 20, free_bytes / 8);
  return free_bytes > reserve ? free_bytes - reserve : 0;
}

bool choose_resident(DeviceData mode, size_t device_bytes, size_t free_bytes) {
  switch (mode) {
    case DeviceData::Stream: return false;
    case DeviceData::Auto: return device_bytes <= resident_budget(free_bytes);
    case DeviceData::Resident:
      if (device_bytes > free_bytes)
        throw std::runtime_error("--device-data resident: the dataset takes " + std::to_string(device_bytes >> 20) +
                                 " MiB on the device but only " + std::to_string(free_bytes >> 20) +
                                 " MiB are free (use --device-data stream or auto)");
      return true;
  }
  return true;
}

BatchStream::BatchStream(int64_t batch, const ImageDataset& data)
    : batch_(batch),
      data_(data),
      staged_row_bytes_((data.dtype == DType::U8 ? 1 : sizeof(float)) * static_cast<size_t>(data.sample_size())) {}

BatchStream::Upload BatchStream::next(const std::vector<int32_t>& permutation, int64_t first) {
  if (first < 0 || first + batch_ > static_cast<int64_t>(permutation.size()))
    throw std::logic_error("BatchStream::next: batch [" + std::to_string(first) + ", " + std::to_string(first + batch_) +
                           ") outside the epoch's order of " + std::to_string(permutation.size()));
  Upload u{static_cast<int>(uploads_ % 2), permutation.data() + first, batch_};
  ++uploads_;
  return u;
}

void BatchStream::stage(void* staging, const int32_t* rows, int64_t n) const {
  if (data_.dtype == DType::U8) {
    uint8_t* out = static_cast<uint8_t*>(staging);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(out + static_cast<size_t>(i) * staged_row_bytes_, data_.row(rows[i]), staged_row_bytes_);
  } else {
    data_.gather_as_float(static_cast<float*>(staging), rows, n);
  }
}

std::vector<int32_t> BatchStream::ring_order() const {
  std::vector<int32_t> order(static_cast<size_t>(2 * batch_));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  return order;
}

}  // namespace ds
