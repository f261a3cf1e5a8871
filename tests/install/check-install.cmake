# Install the build into a scratch prefix and build examples/ against it
# the way a user would: find_package(safepin CONFIG) and pkg-config.
foreach(v BUILD SRC WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check-install.cmake needs -D${v}=")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${SRC}/examples -B ${WORK}/examples -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK}/examples)

# The example must link the installed library, not the build tree's.
run(ldd ${WORK}/examples/fork_demo)
if(NOT last_output MATCHES "libsafepin\\.so\\.1 => ${prefix}/")
  message(FATAL_ERROR "fork_demo does not use the installed libsafepin:\n${last_output}")
endif()

file(GLOB pcdir LIST_DIRECTORIES true ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "${pcdir}")
run(pkg-config --cflags --libs safepin)
if(NOT last_output MATCHES "-lsafepin")
  message(FATAL_ERROR "pkg-config safepin: ${last_output}")
endif()
message(STATUS "installed into ${prefix}; examples built with find_package and pkg-config works")
