# Test of cmake/check_layering.cmake (ctest `layering_catches_wrong_way_includes`): in a scratch tree under
# VLQ_SCRATCH with two areas (low may include nothing, high may include low), each spelling of an upward include
# must fail the check, and a downward one must pass.
#   cmake -DVLQ_CHECKER=<repo>/cmake/check_layering.cmake -DVLQ_SCRATCH=<dir> -P cmake/check_layering_test.cmake
cmake_minimum_required(VERSION 3.25)
set(cases
    "#include \"vlq/high/x.h\""
    "#include <vlq/high/x.h>"
    "# include \"vlq/high/x.h\""
    "#include   \"vlq/high/x.h\""
    "  #include \"vlq/../vlq/high/x.h\""
    "#include \"high/x.h\""
    "#include \"../high/x.h\"")
set(i 0)
foreach(inc IN LISTS cases)
  set(root "${VLQ_SCRATCH}/case${i}")
  file(REMOVE_RECURSE "${root}")
  file(WRITE "${root}/src/high/x.h" "#pragma once\n#include \"vlq/low/y.h\"\n")
  file(WRITE "${root}/src/low/y.cpp" "// low\n${inc}\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -DVLQ_ROOT=${root} "-DVLQ_LAYERS=low:@high:low" -P ${VLQ_CHECKER}
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "check_layering passed an upward include: ${inc}")
  endif()
  if(NOT err MATCHES "src/low/y.cpp")
    message(FATAL_ERROR "check_layering failed without naming the file for: ${inc}\n${err}")
  endif()
  math(EXPR i "${i} + 1")
endforeach()
# downward includes and system headers pass
set(root "${VLQ_SCRATCH}/ok")
file(REMOVE_RECURSE "${root}")
file(WRITE "${root}/src/high/x.cpp" "#include \"vlq/low/y.h\"\n#include <vlq/low/y.h>\n#include <CLI/CLI.hpp>\n#include \"impl.h\"\n")
file(WRITE "${root}/src/low/y.h" "#pragma once\n#include <vector>\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DVLQ_ROOT=${root} "-DVLQ_LAYERS=low:@high:low" -P ${VLQ_CHECKER}
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_layering refused a downward include:\n${err}")
endif()
file(REMOVE_RECURSE "${VLQ_SCRATCH}")
