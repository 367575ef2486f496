# check_layers.cmake - refuse an include that points upward in the layer order.
#
#   cmake -DROOT=<source dir> -DSTAMP=<file to touch on success> -P check_layers.cmake
#
# The layer table is cmake/layers.txt: one line per layer directory, lowest first,
# "<dir>: <the directories it may include>" (itself always). Every *.c / *.h / *.cu / *.cuh
# under a layer directory is scanned for  #include "<dir>/..."; an include of a directory
# that is not listed for its layer (a higher layer, or a sibling it does not depend on)
# is an error naming the file, the line and the include. Test and benchmark programs
# (tests/, bench/) may include any layer; what they link is set in their CMakeLists.
cmake_minimum_required(VERSION 3.20)
if(NOT ROOT)
  message(FATAL_ERROR "check_layers: -DROOT=<source dir> is required")
endif()
file(STRINGS "${ROOT}/cmake/layers.txt" lines REGEX "^[a-z_]+:")
set(layers "")
foreach(line ${lines})
  string(REGEX MATCH "^([a-z_]+):(.*)$" _ "${line}")
  set(dir "${CMAKE_MATCH_1}")
  string(STRIP "${CMAKE_MATCH_2}" deps)
  string(REPLACE " " ";" deps "${deps}")
  list(APPEND layers ${dir})
  set(allowed_${dir} ${dir} ${deps})
  foreach(d ${deps})
    if(NOT d IN_LIST layers)
      message(FATAL_ERROR "check_layers: cmake/layers.txt: '${dir}' depends on '${d}', "
                          "which is not a lower layer")
    endif()
  endforeach()
endforeach()
set(errors 0)
foreach(dir ${layers})
  file(GLOB_RECURSE srcs "${ROOT}/${dir}/*.c" "${ROOT}/${dir}/*.h" "${ROOT}/${dir}/*.cu"
       "${ROOT}/${dir}/*.cuh")
  foreach(src ${srcs})
    file(STRINGS "${src}" incs REGEX "^[ \t]*#[ \t]*include[ \t]+\"[a-z_]+/")
    foreach(inc ${incs})
      string(REGEX MATCH "\"([a-z_]+)/[^\"]*\"" _ "${inc}")
      set(target "${CMAKE_MATCH_1}")
      if(target IN_LIST layers AND NOT target IN_LIST allowed_${dir})
        file(RELATIVE_PATH rel "${ROOT}" "${src}")
        message(SEND_ERROR "layering: ${rel} includes ${CMAKE_MATCH_0}: layer '${dir}' may "
                           "include only ${allowed_${dir}} (cmake/layers.txt)")
        math(EXPR errors "${errors} + 1")
      endif()
    endforeach()
  endforeach()
endforeach()
if(errors GREATER 0)
  message(FATAL_ERROR "check_layers: ${errors} upward or sideways include(s)")
endif()
if(STAMP)
  file(TOUCH "${STAMP}")
endif()
