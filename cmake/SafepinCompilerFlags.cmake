# Warnings and sanitizers for every target of the project.
add_compile_definitions(_GNU_SOURCE)
add_compile_options(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
                    -Wpointer-arith -Wformat=2)
if(SAFEPIN_WERROR)
  add_compile_options(-Werror)
endif()
if(SAFEPIN_SANITIZE)
  add_compile_options(-fsanitize=${SAFEPIN_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${SAFEPIN_SANITIZE})
endif()

# The fast path of a registration (a parked range revived: no system call)
# is a chain of small calls across the library's files.  Calls are what it
# costs, in a guest above all, where every call and return through a PLT or
# across code pages is looked up anew: link-time optimisation inlines the
# chain, -fno-plt calls libc through the GOT directly, and
# -fno-semantic-interposition lets calls between the library's own
# functions stay direct.  Measured in bench/reg_mr_ab: docs/bench/reg-mr.md.
option(SAFEPIN_LTO "Link-time optimisation for optimised, unsanitised builds" ON)
add_compile_options(-fno-plt -fno-semantic-interposition)
# GCC only: its slim LTO objects still link into targets built without LTO
# (the LD_PRELOAD shim takes objects from the static library), clang's
# bitcode objects do not.
if(SAFEPIN_LTO AND NOT SAFEPIN_SANITIZE AND CMAKE_C_COMPILER_ID STREQUAL "GNU"
   AND CMAKE_BUILD_TYPE MATCHES "^(Release|RelWithDebInfo|MinSizeRel)$")
  include(CheckIPOSupported)
  check_ipo_supported(RESULT safepin_ipo OUTPUT safepin_ipo_why LANGUAGES C)
  if(safepin_ipo)
    set(CMAKE_INTERPROCEDURAL_OPTIMIZATION ON)
  else()
    message(STATUS "safepin: no link-time optimisation: ${safepin_ipo_why}")
  endif()
endif()
