# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#
# safepin_add_guest_group(GROUP <name> KERNEL <6.1|5.10>... [EDU] [NUMA]
#                         [TIMEOUT <sec>] [TEST_TIMEOUT <sec>]
#                         TEST <name> COMMAND <cmd> [args...]
#                         [TEST <name> COMMAND <cmd> [args...]]...)
#
# Boots one QEMU guest per group and kernel and runs all the group's tests in
# it, in order (tests/vm/run-group). CTest entries:
#   guest:kernel-<k>:fetch   fetches the kernel, builds the initramfs (fixture)
#   guest:<group>:boot       boots the guest, runs the whole group (fixture)
#   guest:<group>:<test>     prints that test's log, exits with its status
# With several KERNEL values, one group per kernel named <name>-<kernel>.
# Commands run as root in the guest with the build tree as cwd; arguments may
# use generator expressions ($<TARGET_FILE:...>). The word TEST cannot be a
# command argument. Exit status 77 marks a guest test as skipped.
# TEST_TIMEOUT: per test in the guest (default 120); TIMEOUT: the whole guest
# (default 180 + sum of the test timeouts).
#
# Scheduling: every boot takes one slot of the ctest resource safepin_guests,
# which has SAFEPIN_GUEST_PARALLEL slots (a resource spec file in the build
# tree, named by CTEST_RESOURCE_SPEC_FILE, so a plain ctest -jN uses it).
# Whichever guest ends, the next one starts in its slot, the groups with the
# most tests first (their COST, 10 + 5 per test: the long groups do not end
# up alone at the end of the run). A spec file of your own (ctest
# --resource-spec-file, or CTEST_RESOURCE_SPEC_FILE set before) must declare
# safepin_guests.

set(SAFEPIN_GUEST_PARALLEL 2 CACHE STRING
  "How many QEMU guests ctest may run at the same time (2 GiB RAM, 2 vCPUs each)")
if(NOT SAFEPIN_GUEST_PARALLEL MATCHES "^[1-9][0-9]*$")
  message(FATAL_ERROR "SAFEPIN_GUEST_PARALLEL must be a positive integer, not '${SAFEPIN_GUEST_PARALLEL}'")
endif()
set(_safepin_vm_dir ${CMAKE_CURRENT_LIST_DIR} CACHE INTERNAL "tests/vm directory")
set(_safepin_guest_spec ${CMAKE_BINARY_DIR}/safepin-guest-resources.json)
file(CONFIGURE OUTPUT ${_safepin_guest_spec} CONTENT
  "{\"version\": {\"major\": 1, \"minor\": 0},
 \"local\": [{\"safepin_guests\": [{\"id\": \"0\", \"slots\": ${SAFEPIN_GUEST_PARALLEL}}]}]}
")
if(NOT DEFINED CTEST_RESOURCE_SPEC_FILE OR "${CTEST_RESOURCE_SPEC_FILE}" STREQUAL "${_safepin_guest_spec}")
  # A cache entry: the top-level CTestTestfile.cmake must see it.
  set(CTEST_RESOURCE_SPEC_FILE ${_safepin_guest_spec} CACHE INTERNAL
    "ctest resource spec: the guest slots (tests/vm/SafepinGuest.cmake)")
else()
  message(STATUS "guest tests: CTEST_RESOURCE_SPEC_FILE is ${CTEST_RESOURCE_SPEC_FILE}; "
    "it must declare the resource safepin_guests (see ${_safepin_guest_spec})")
endif()

function(_safepin_guest_quote out arg)
  string(REPLACE "'" "'\\''" arg "${arg}")
  set(${out} "'${arg}'" PARENT_SCOPE)
endfunction()

function(safepin_add_guest_group)
  set(group "")
  set(kernels "")
  set(edu OFF)
  set(numa OFF)
  set(timeout "")
  set(test_timeout 120)
  set(names "")
  set(mode "")
  set(cur "")
  # Walk ARGV<i> rather than ARGN: it keeps arguments that contain ';'.
  math(EXPR last "${ARGC} - 1")
  foreach(i RANGE 0 ${last})
    set(arg "${ARGV${i}}")
    if(mode STREQUAL "COMMAND" AND NOT arg STREQUAL "TEST")
      _safepin_guest_quote(q "${arg}")
      string(APPEND cmd_${cur} " ${q}")
      continue()
    endif()
    if(arg STREQUAL "GROUP" OR arg STREQUAL "KERNEL" OR arg STREQUAL "TIMEOUT"
        OR arg STREQUAL "TEST_TIMEOUT" OR arg STREQUAL "TEST")
      set(mode ${arg})
    elseif(arg STREQUAL "EDU")
      set(edu ON)
      set(mode "")
    elseif(arg STREQUAL "NUMA")
      set(numa ON)
      set(mode "")
    elseif(arg STREQUAL "COMMAND")
      if(NOT mode STREQUAL "TEST_NAMED")
        message(FATAL_ERROR "safepin_add_guest_group: COMMAND without TEST <name>")
      endif()
      set(mode COMMAND)
    elseif(mode STREQUAL "GROUP")
      set(group "${arg}")
      set(mode "")
    elseif(mode STREQUAL "KERNEL")
      list(APPEND kernels "${arg}")
    elseif(mode STREQUAL "TIMEOUT")
      set(timeout "${arg}")
      set(mode "")
    elseif(mode STREQUAL "TEST_TIMEOUT")
      set(test_timeout "${arg}")
      set(mode "")
    elseif(mode STREQUAL "TEST")
      if(NOT arg MATCHES "^[A-Za-z0-9_.+-]+$")
        message(FATAL_ERROR "safepin_add_guest_group: bad test name '${arg}'")
      endif()
      if(arg IN_LIST names)
        message(FATAL_ERROR "safepin_add_guest_group: duplicate test '${arg}' in ${group}")
      endif()
      list(APPEND names ${arg})
      set(cur ${arg})
      set(cmd_${cur} "")
      set(mode TEST_NAMED)
    else()
      message(FATAL_ERROR "safepin_add_guest_group: unexpected argument '${arg}'")
    endif()
  endforeach()
  if(group STREQUAL "" OR NOT group MATCHES "^[A-Za-z0-9_.+-]+$")
    message(FATAL_ERROR "safepin_add_guest_group: GROUP <name> missing or invalid")
  endif()
  if(NOT timeout MATCHES "^[0-9]*$" OR NOT test_timeout MATCHES "^[0-9]+$")
    message(FATAL_ERROR "safepin_add_guest_group(${group}): TIMEOUT and TEST_TIMEOUT are seconds")
  endif()
  if(kernels STREQUAL "")
    message(FATAL_ERROR "safepin_add_guest_group(${group}): KERNEL missing")
  endif()
  if(names STREQUAL "")
    message(FATAL_ERROR "safepin_add_guest_group(${group}): no TEST")
  endif()
  foreach(n IN LISTS names)
    if(cmd_${n} STREQUAL "")
      message(FATAL_ERROR "safepin_add_guest_group(${group}): test ${n} has no COMMAND")
    endif()
  endforeach()
  list(LENGTH names ntests)
  if(timeout STREQUAL "")
    math(EXPR timeout "180 + ${ntests} * ${test_timeout}")
  endif()
  # Room for a second boot: ctest-step boots once more a guest that never started.
  math(EXPR ctest_timeout "2 * ${timeout} + 60")
  math(EXPR cost "10 + 5 * ${ntests}")

  set(content "# generated by safepin_add_guest_group(${group})\n")
  foreach(n IN LISTS names)
    string(APPEND content "${n}${cmd_${n}}\n")
  endforeach()

  set(opts "")
  if(edu)
    list(APPEND opts --edu)
  endif()
  if(numa)
    list(APPEND opts --numa)
  endif()
  set(step ${_safepin_vm_dir}/ctest-step)
  set(cache ${CMAKE_BINARY_DIR}/vm-cache)
  list(LENGTH kernels nkernels)
  foreach(k IN LISTS kernels)
    if(NOT k MATCHES "^(6\\.1|5\\.10)$")
      message(FATAL_ERROR "safepin_add_guest_group(${group}): unknown KERNEL ${k}")
    endif()
    if(nkernels GREATER 1)
      set(g ${group}-${k})
    else()
      set(g ${group})
    endif()
    get_property(seen GLOBAL PROPERTY _safepin_guest_groups)
    if(g IN_LIST seen)
      message(FATAL_ERROR "safepin_add_guest_group: group ${g} defined twice")
    endif()
    set_property(GLOBAL APPEND PROPERTY _safepin_guest_groups ${g})

    # One fetch fixture per kernel.
    get_property(fetched GLOBAL PROPERTY _safepin_guest_kernels)
    if(NOT k IN_LIST fetched)
      set_property(GLOBAL APPEND PROPERTY _safepin_guest_kernels ${k})
      add_test(NAME guest:kernel-${k}:fetch COMMAND ${step} fetch ${k} ${cache})
      set_tests_properties(guest:kernel-${k}:fetch PROPERTIES
        FIXTURES_SETUP safepin-kernel-${k} LABELS "guest;guest-setup" TIMEOUT 900)
    endif()

    set(res ${CMAKE_BINARY_DIR}/vm-results/${g})
    set(list ${CMAKE_BINARY_DIR}/vm-results/${g}.list)
    file(GENERATE OUTPUT ${list} CONTENT "${content}")

    add_test(NAME guest:${g}:boot
      COMMAND ${step} boot ${g} ${k} ${cache} ${CMAKE_BINARY_DIR} ${res} ${list}
              ${timeout} ${test_timeout} ${opts})
    set_tests_properties(guest:${g}:boot PROPERTIES
      FIXTURES_REQUIRED safepin-kernel-${k}
      FIXTURES_SETUP safepin-guest-${g}
      RESOURCE_GROUPS safepin_guests:1
      COST ${cost}
      LABELS "guest;guest-setup"
      TIMEOUT ${ctest_timeout})
    foreach(n IN LISTS names)
      add_test(NAME guest:${g}:${n} COMMAND ${step} result ${g} ${res} ${n})
      set_tests_properties(guest:${g}:${n} PROPERTIES
        FIXTURES_REQUIRED safepin-guest-${g}
        LABELS "guest"
        SKIP_RETURN_CODE 77
        TIMEOUT 30)
    endforeach()
  endforeach()
endfunction()
