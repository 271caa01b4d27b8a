# The GPU mel path's cuFFT LTO load callback (kernels/lto/stft_framing_callback.cu, issue 9) compiled to
# LTO-IR and embedded as a C array, for cufftXtSetJITCallback (audio/mel_gpu.cpp):
#   nvcc -dc -fatbin -gencode arch=compute_XX,code=lto_XX   (as NVIDIA's cuFFT LTO sample's CMake does,
#   github.com/NVIDIA/CUDALibrarySamples cuFFT/lto_callback_window_1d/CMakeLists.txt)
#   bin2c --const --name ds_stft_framing_lto --type longlong   ("the binary containing the callback can be
#   turned into a header file containing a C array with the data using the bin2c application included in
#   the CUDA Toolkit", docs.nvidia.com/cuda/cufft/ltoea/usage/api_usage.html)
# One LTO target, XX = the lowest architecture the build compiles for: "users can compile their callback
# function to LTO-IR for target arch XX and it should work in GPUs with arch YY, with XX <= YY" (same
# page: PTX JIT is part of the JIT LTO finalisation), so one IR serves every GPU the rest of the build
# runs on. Lists without a number (native, all, all-major) fall back to 75, CUDA 13's oldest.
# Sets DS_LTO_ARCH, DS_LTO_HEADER (the generated header), DS_LTO_HEADER_DIR (its folder) and the
# function ds_lto_fatbin_header (also used by tests/CMakeLists.txt).
set(DS_LTO_ARCH "")
foreach(arch IN LISTS CMAKE_CUDA_ARCHITECTURES)
  if(arch MATCHES "^([0-9]+)")
    set(number "${CMAKE_MATCH_1}")
    if(DS_LTO_ARCH STREQUAL "" OR number LESS DS_LTO_ARCH)
      set(DS_LTO_ARCH "${number}")
    endif()
  endif()
endforeach()
if(DS_LTO_ARCH STREQUAL "")
  set(DS_LTO_ARCH 75)
endif()
message(STATUS "darkstar: the mel framing's cuFFT LTO callback is compiled to LTO-IR for compute_${DS_LTO_ARCH}")

find_program(DS_BIN2C bin2c HINTS "${CUDAToolkit_BIN_DIR}" REQUIRED)
set(DS_LTO_HEADER_DIR "${CMAKE_BINARY_DIR}/generated")

# ds_lto_fatbin_header(SOURCE NAME HEADER [DEPENDS ...]): SOURCE (.cu) -> LTO-IR fatbin -> HEADER, a C
# array NAME (unsigned long long[], so sizeof is the byte size, a multiple of 8). Call it in the folder
# of the target that lists HEADER among its sources.
function(ds_lto_fatbin_header source name header)
  set(fatbin "${CMAKE_CURRENT_BINARY_DIR}/${name}.fatbin")
  add_custom_command(
    OUTPUT "${header}"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${DS_LTO_HEADER_DIR}"
    COMMAND "${CMAKE_CUDA_COMPILER}" -std=c++17 -I "${PROJECT_SOURCE_DIR}" -dc -fatbin
            -gencode "arch=compute_${DS_LTO_ARCH},code=lto_${DS_LTO_ARCH}" "${source}" -o "${fatbin}"
    COMMAND "${CMAKE_COMMAND}" "-DBIN2C=${DS_BIN2C}" "-DINPUT=${fatbin}" "-DOUTPUT=${header}" "-DNAME=${name}"
            -P "${PROJECT_SOURCE_DIR}/cmake/Bin2cHeader.cmake"
    DEPENDS "${source}" "${PROJECT_SOURCE_DIR}/cmake/Bin2cHeader.cmake" ${ARGN}
    COMMENT "LTO-IR (compute_${DS_LTO_ARCH}) of ${source} -> ${header}"
    VERBATIM)
endfunction()

set(DS_LTO_HEADER "${DS_LTO_HEADER_DIR}/stft_framing_lto.h")
ds_lto_fatbin_header("${CMAKE_CURRENT_SOURCE_DIR}/kernels/lto/stft_framing_callback.cu" ds_stft_framing_lto
                     "${DS_LTO_HEADER}" "${CMAKE_CURRENT_SOURCE_DIR}/kernels/stft_framing.h")
