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
