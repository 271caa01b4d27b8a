// Atomic file writes (temp file in the same folder, fsync, rename, fsync the folder): a crash mid-write
// leaves either the old file or the new one, never a torn one. Every checkpoint/dataset/sample goes here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace ds {

// Calls write_contents on a FILE* opened on "<path>.tmp.<pid>", then flushes, fsyncs, renames it over
// path and fsyncs the folder. write_contents reports its own failures by throwing; short writes are
// caught here through ferror. On any failure the temp file is removed and std::runtime_error names path.
void write_file_atomic(const std::string& path, const std::function<void(FILE*)>& write_contents);

void write_bytes_atomic(const std::string& path, const void* data, size_t size);
void write_bytes_atomic(const std::string& path, const std::vector<uint8_t>& bytes);
void write_text_atomic(const std::string& path, const std::string& text);

// Whole file into memory; throws std::runtime_error naming path if it is missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);

}  // namespace ds
