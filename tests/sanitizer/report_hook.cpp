// Linked into every executable of the sanitizer build only (tests/run_sanitizers.sh compiles it and
// passes it in CMAKE_EXE_LINKER_FLAGS; the project never builds it): GCC links ASan and UBSan as two
// runtimes, and with both loaded UBSan ignores log_path (its __sanitizer_set_report_path call lands
// in libasan's copy), so a UBSan report reaches only stderr, which a test that runs `darkstar` and
// expects it to fail may swallow. libubsan calls its weak __ubsan_on_report for every report; this
// definition appends the report's kind, message and place to $DS_SANITIZER_REPORT_DIR/ubsan.<pid>,
// which the script checks after ctest, like the ASan/LSan reports log_path puts beside it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

extern "C" void __ubsan_get_current_report_data(const char** kind, const char** message, const char** file,
                                                unsigned* line, unsigned* column, void** address);

extern "C" void __ubsan_on_report() {
  const char* dir = std::getenv("DS_SANITIZER_REPORT_DIR");
  if (!dir || !*dir) return;
  const char *kind = "?", *message = "?", *file = "?";
  unsigned line = 0, column = 0;
  void* address = nullptr;
  __ubsan_get_current_report_data(&kind, &message, &file, &line, &column, &address);
  char path[4096];
  std::snprintf(path, sizeof path, "%s/ubsan.%d", dir, static_cast<int>(getpid()));
  const int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char text[4096];
  const int n = std::snprintf(text, sizeof text, "UndefinedBehaviorSanitizer: %s: %s at %s:%u:%u\n", kind, message,
                              file, line, column);
  if (n > 0 && write(fd, text, static_cast<std::size_t>(n) < sizeof text ? static_cast<std::size_t>(n) : sizeof text - 1) < 0) {
  }
  close(fd);
}
