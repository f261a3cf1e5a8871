# install(): libraries, headers, pkg-config file and a CMake package.
include(CMakePackageConfigHelpers)

install(TARGETS safepin safepin_static EXPORT safepinTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/safepin
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")

set(SAFEPIN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/safepin)
install(EXPORT safepinTargets NAMESPACE safepin:: DESTINATION ${SAFEPIN_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/safepinConfig.cmake.in
  ${PROJECT_BINARY_DIR}/safepinConfig.cmake
  INSTALL_DESTINATION ${SAFEPIN_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/safepinConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/safepinConfig.cmake
  ${PROJECT_BINARY_DIR}/safepinConfigVersion.cmake
  DESTINATION ${SAFEPIN_CMAKE_DIR})

configure_file(${PROJECT_SOURCE_DIR}/cmake/safepin.pc.in
  ${PROJECT_BINARY_DIR}/safepin.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/safepin.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
