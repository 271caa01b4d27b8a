// --device-data auto|resident|stream: where a CUDA run keeps its dataset, and the host side of the
// streamed path. Resident: the whole dataset on the device, batches gathered there (trainer.cpp).
// Streamed (a dataset larger than the budget): each step's batch rows are gathered on the host from
// the memory map into one of two pinned staging buffers and copied into one of two device slots (a
// ring of 2 batches) between steps, while the previous step computes; the step's gather reads the
// slot a device cursor points at (kernels/image.h's *_at gathers over an identity order and
// advance_batch_cursor with count = batch, so the cursor alternates 0, batch, 0, ...). The rows and
// their order are DataOrder's, the very rows the resident path's device cursor reads, so one seed
// trains on the same batches either way. Everything here is host logic, tested on the CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/data/image_dataset.h"

namespace ds {

enum class DeviceData { Auto, Resident, Stream };
// "auto" | "resident" | "stream"; anything else throws std::invalid_argument naming --device-data.
DeviceData parse_device_data(const std::string& flag);
const char* device_data_name(DeviceData mode);

// Bytes a resident dataset takes on the device: uint8 as stored, float16 as float32 (the gather
// kernels read float rows).
size_t resident_device_bytes(const ImageDataset& data);
// What a resident dataset may take of the device's free memory after the model is built: all but
// max(512 MiB, 1/8 of it), kept for cuDNN's workspace, the sampler and other processes.
size_t resident_budget(size_t free_bytes);
// Resident or streamed for one run (true: resident). Auto: resident when device_bytes fits the
// budget. Resident forced: throws std::runtime_error naming --device-data resident and the sizes when
// device_bytes exceeds free_bytes. Stream forced: false.
bool choose_resident(DeviceData mode, size_t device_bytes, size_t free_bytes);

// The streamed path's bookkeeping: upload k (one per step, counted from this object's creation) goes
// to slot k % 2, as the device cursor (starting at 0) alternates; a resumed run starts a fresh one
// with its cursor at 0 again.
class BatchStream {
 public:
  BatchStream(int64_t batch, const ImageDataset& data);
  struct Upload {
    int slot;             // 0 or 1: staging buffer and device slot
    const int32_t* rows;  // batch dataset rows, in batch order
    int64_t n;            // = batch
  };
  // The upload for the batch order.next_batch() just returned (`first`: its index into the permutation).
  Upload next(const std::vector<int32_t>& permutation, int64_t first);
  // Bytes of one staged row (uint8: as stored; float16: as float32, converted exactly) and of a slot.
  size_t staged_row_bytes() const { return staged_row_bytes_; }
  size_t slot_bytes() const { return staged_row_bytes_ * static_cast<size_t>(batch_); }
  // Gathers rows (n of them) from the memory map into staging (slot_bytes() for n = batch): what the
  // copy sends to the device slot.
  void stage(void* staging, const int32_t* rows, int64_t n) const;
  int64_t uploads() const { return uploads_; }
  // The identity order over both slots (2·batch entries) the *_at gathers read the ring through.
  std::vector<int32_t> ring_order() const;

 private:
  int64_t batch_;
  const ImageDataset& data_;
  size_t staged_row_bytes_;
  int64_t uploads_ = 0;
};

}  // namespace ds
