# Every ctest entry that is a doctest case must run at least one case (tests/run.sh runs this first).
# A doctest name with `;` in it is split by CMake into entries that each match nothing and would
# "pass" while running no test. Entries whose command carries doctest's `--test-case=` filter
# (doctest_discover_tests) are checked; the others (the `gpu` binary, other add_test commands) are
# left alone. A filter equal to a name its binary lists (`--list-test-cases`, once per binary) matches
# that case; any other filter is judged by running the entry's exact command with `--count`.
# (Counting every entry that way is exact too, but each start of the test binary loads the CUDA
# libraries: ~0.5 s apiece on a loaded 2-core machine.)
#   cmake -DBUILD_DIR=build-tests [-DCTEST=ctest] -P tests/check_counted.cmake
if(NOT DEFINED BUILD_DIR)
  message(FATAL_ERROR "check_counted: give -DBUILD_DIR=<the build folder>")
endif()
get_filename_component(BUILD_DIR "${BUILD_DIR}" ABSOLUTE)
if(NOT DEFINED CTEST)
  set(CTEST ctest)
endif()

execute_process(COMMAND ${CTEST} --show-only=json-v1 WORKING_DIRECTORY "${BUILD_DIR}"
                OUTPUT_VARIABLE json ERROR_VARIABLE json_error RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_counted: `ctest --show-only=json-v1` in ${BUILD_DIR} failed (${rc}): ${json_error}")
endif()
string(JSON entries LENGTH "${json}" tests)
if(entries EQUAL 0)
  message(FATAL_ERROR "check_counted: ${BUILD_DIR} has no ctest entries (not built?)")
endif()

# Names and filters compared as CMake list elements: `;`, `[` and `]` would change how a list splits,
# so they are spelled out first (a name split at `;` must not match its halves).
function(ds_listable text out_var)
  string(REPLACE ";" "<semicolon>" text "${text}")
  string(REPLACE "[" "<open>" text "${text}")
  string(REPLACE "]" "<close>" text "${text}")
  set(${out_var} "${text}" PARENT_SCOPE)
endfunction()

# The case names `exe --list-test-cases` prints, as a list in ${out_var}.
function(ds_list_cases exe wd out_var)
  execute_process(COMMAND "${exe}" --list-test-cases WORKING_DIRECTORY "${wd}"
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "check_counted: `${exe} --list-test-cases` failed (${rc}): ${out}${err}")
  endif()
  ds_listable("${out}" out)
  string(REPLACE "\n" ";" lines "${out}")
  set(names "")
  foreach(line IN LISTS lines)
    if(line STREQUAL "" OR line MATCHES "^===+$" OR line MATCHES "^<open>doctest<close> ")
      continue()
    endif()
    list(APPEND names "${line}")
  endforeach()
  set(${out_var} "${names}" PARENT_SCOPE)
endfunction()

set(checked 0)
set(counted 0)
set(empty "")
math(EXPR last "${entries} - 1")
foreach(i RANGE ${last})
  string(JSON entry GET "${json}" tests ${i})  # one entry's own JSON, so each lookup below parses little
  string(JSON name GET "${entry}" name)
  string(JSON argc ERROR_VARIABLE no_command LENGTH "${entry}" command)
  if(no_command OR argc EQUAL 0)
    continue()  # ctest cannot run it at all; ctest itself reports that
  endif()
  set(command "")
  set(is_doctest FALSE)
  math(EXPR last_arg "${argc} - 1")
  foreach(j RANGE ${last_arg})
    string(JSON arg GET "${entry}" command ${j})
    list(APPEND command "${arg}")
    if(arg MATCHES "^--test-case=(.*)$")
      set(is_doctest TRUE)
      string(REPLACE "\\," "," filter "${CMAKE_MATCH_1}")  # doctest_discover_tests escapes commas
    endif()
  endforeach()
  if(NOT is_doctest)
    continue()
  endif()
  # The entry's working directory, as ctest would use it.
  set(wd "${BUILD_DIR}")
  string(JSON nprops ERROR_VARIABLE no_props LENGTH "${entry}" properties)
  if(NOT no_props AND nprops GREATER 0)
    math(EXPR last_prop "${nprops} - 1")
    foreach(k RANGE ${last_prop})
      string(JSON prop_name GET "${entry}" properties ${k} name)
      if(prop_name STREQUAL "WORKING_DIRECTORY")
        string(JSON wd GET "${entry}" properties ${k} value)
      endif()
    endforeach()
  endif()
  list(GET command 0 exe)
  string(MD5 key "${exe}")
  if(NOT DEFINED names_${key})
    ds_list_cases("${exe}" "${wd}" names_${key})
  endif()
  ds_listable("${filter}" filter)
  list(FIND names_${key} "${filter}" found)
  math(EXPR checked "${checked} + 1")
  if(found GREATER -1)
    continue()  # exactly a listed name: it runs that case
  endif()
  math(EXPR counted "${counted} + 1")
  execute_process(COMMAND ${command} --count WORKING_DIRECTORY "${wd}"
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "passing the current filters: ([0-9]+)")
    message(FATAL_ERROR "check_counted: cannot count the cases of ctest entry '${name}' (exit ${rc}): ${out}${err}")
  endif()
  if(CMAKE_MATCH_1 EQUAL 0)
    list(APPEND empty "${name}")
  endif()
endforeach()

if(empty)
  list(LENGTH empty n_empty)
  string(REPLACE ";" "'\n  '" listed "${empty}")
  message(FATAL_ERROR "check_counted: ${n_empty} ctest entries run no doctest case (a `;` in a TEST_CASE name is "
                      "split by CMake into such entries; never put `;` in a test name):\n  '${listed}'")
endif()
message(STATUS "check_counted: each of ${checked} doctest entries runs at least one case "
               "(${counted} judged by --count)")
