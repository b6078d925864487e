# CUDA runtime slice (Hopper, sm_90a): library vlq_cuda (src/cuda/, headers include/vlq/cuda/), the GoogleTest
# binary vlq_cuda_tests (tests/cuda/*_test.cc, ctest label `cuda`) and benchmarks bench/cuda/*_bench.cpp.
# Included from the root CMakeLists.txt. VLQ_CUDA defaults ON when check_language(CUDA) finds nvcc; with it
# OFF nothing here is configured and the rest of the project builds as before.
# Arch: -gencode=arch=compute_90a,code=sm_90a (wgmma/setmaxnreg need sm_90a; the -arch=sm_90a shorthand
# also ran a plain sm_90 pass on nvcc 13.0, see the device notes HOPPER.md). Override with VLQ_CUDA_GENCODE.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_vlq_cuda_default ON)
else()
  set(_vlq_cuda_default OFF)
endif()
option(VLQ_CUDA "Build the CUDA runtime (needs nvcc; GPU only needed to run)" ${_vlq_cuda_default})
if(NOT VLQ_CUDA)
  return()
endif()
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "VLQ_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER or -DVLQ_CUDA=OFF)")
endif()
set(CMAKE_CUDA_ARCHITECTURES OFF)  # arch flags below, not CMake's -arch shorthand
enable_language(CUDA)
# CMake < 3.26 does not know nvcc's C++20 flag (targets inherit CXX_STANDARD 20): tell it.
if(CMAKE_VERSION VERSION_LESS 3.26)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
find_package(CUDAToolkit REQUIRED)
if(CCACHE_PROGRAM)
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()
set(VLQ_CUDA_GENCODE "-gencode=arch=compute_90a,code=sm_90a" CACHE STRING "nvcc -gencode flags for vlq_cuda")
separate_arguments(_vlq_gencode UNIX_COMMAND "${VLQ_CUDA_GENCODE}")

file(GLOB VLQ_CUDA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/cuda/*.cu ${PROJECT_SOURCE_DIR}/src/cuda/*.cpp)
add_library(vlq_cuda STATIC ${VLQ_CUDA_SOURCES})
target_include_directories(vlq_cuda PUBLIC ${PROJECT_SOURCE_DIR}/include PRIVATE ${PROJECT_SOURCE_DIR}/src)
# The device layer sits just above core (docs/architecture.md): it links nothing higher.
target_link_libraries(vlq_cuda PUBLIC vlq_core CUDA::cudart CUDA::cublasLt)
add_dependencies(vlq_cuda vlq_layering)
target_compile_options(vlq_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${_vlq_gencode} -Xptxas=-warn-spills --expt-relaxed-constexpr -lineinfo>
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
set_target_properties(vlq_cuda PROPERTIES CUDA_SEPARABLE_COMPILATION OFF POSITION_INDEPENDENT_CODE ON)

# The Qwen2.5-VL language model on the device (src/model_cuda: weights in the stored dtype, paged KV,
# batch-first forward over the vlq_cuda kernels). Layer: above model and cuda.
file(GLOB VLQ_MODEL_CUDA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/model_cuda/*.cpp)
add_library(vlq_model_cuda STATIC ${VLQ_MODEL_CUDA_SOURCES})
target_include_directories(vlq_model_cuda PUBLIC ${PROJECT_SOURCE_DIR}/include PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(vlq_model_cuda PUBLIC vlq_model vlq_cuda)
target_compile_options(vlq_model_cuda PRIVATE -Wall -Wextra -Wno-unused-parameter)
add_dependencies(vlq_model_cuda vlq_layering)
# NCCL for tensor parallelism (model_cuda/tensor_parallel.cpp); the CUDA toolkit image ships it.
find_library(VLQ_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
find_path(VLQ_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
if(VLQ_NCCL_LIBRARY AND VLQ_NCCL_INCLUDE)
  target_include_directories(vlq_model_cuda PRIVATE ${VLQ_NCCL_INCLUDE})
  target_link_libraries(vlq_model_cuda PUBLIC ${VLQ_NCCL_LIBRARY})
  target_compile_definitions(vlq_model_cuda PRIVATE VLQ_HAVE_NCCL=1)
  message(STATUS "vlq: NCCL ${VLQ_NCCL_LIBRARY} (tensor parallelism)")
else()
  message(STATUS "vlq: NCCL not found: --tensor-parallel > 1 is refused")
endif()
# engine::DeviceModel runs models on the GPU in CUDA builds (src/engine/device_model.cpp, VLQ_HAVE_CUDA).
target_link_libraries(vlq_engine PUBLIC vlq_model_cuda)
target_compile_definitions(vlq_engine PRIVATE VLQ_HAVE_CUDA=1)
# quant::calibrate_cuda (layer-sequential GPU calibration, src/quant/calibrate_cuda.cpp) likewise.
target_compile_definitions(vlq_quant PRIVATE VLQ_HAVE_CUDA=1)

# Static OpenBLAS for binaries that run on the device machine (it lacks the Debian libraries):
# -DVLQ_CUDA_STATIC_BLAS=ON links libopenblas.a (+ gfortran, gomp) into the CUDA test/bench executables.
option(VLQ_CUDA_STATIC_BLAS "Link OpenBLAS statically into vlq_cuda_tests / benches" OFF)
function(vlq_cuda_executable name)
  target_link_libraries(${name} PRIVATE vlq_model_cuda vlq_cuda vlq_lib)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  if(VLQ_CUDA_STATIC_BLAS)
    target_link_options(${name} PRIVATE -Wl,--as-needed)
    # vlq_lib first, so its sgemm references resolve from the archive; --as-needed drops the .so.
    target_link_libraries(${name} PRIVATE vlq_lib /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a gfortran)
  endif()
endfunction()

if(VLQ_BUILD_TESTS)
  find_package(GTest REQUIRED)
  file(GLOB VLQ_CUDA_TEST_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/cuda/*_test.cc)
  add_executable(vlq_cuda_tests ${VLQ_CUDA_TEST_SOURCES})
  set_source_files_properties(${VLQ_CUDA_TEST_SOURCES} PROPERTIES LANGUAGE CXX)
  vlq_cuda_executable(vlq_cuda_tests)
  target_link_libraries(vlq_cuda_tests PRIVATE GTest::gtest GTest::gtest_main)
  target_compile_definitions(vlq_cuda_tests PRIVATE VLQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  enable_testing()
  add_test(NAME vlq_cuda_tests COMMAND vlq_cuda_tests WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(vlq_cuda_tests PROPERTIES LABELS cuda)
endif()

if(VLQ_BUILD_BENCH)
  file(GLOB VLQ_CUDA_BENCH_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/bench/cuda/*_bench.cpp)
  foreach(src ${VLQ_CUDA_BENCH_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(cuda_${name} ${src})
    vlq_cuda_executable(cuda_${name})
  endforeach()
endif()
