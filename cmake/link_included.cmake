# lmp_link_included(TARGET SOURCE): link TARGET with the library of every layer SOURCE
# includes (#include "<layer>/..."), and nothing more; used by tests/, bench/ and fuzz targets.
# A test or benchmark program links the libraries of the layers it includes, nothing more (their own
# dependencies come with them): a test of the kernels cannot lean on the model or the CLI.
set(LMP_LIB_base lmp_base)
set(LMP_LIB_kernels lmp_kernels)
set(LMP_LIB_model lmp_model)
set(LMP_LIB_proto lmp_proto)
set(LMP_LIB_worker lmp_worker)
set(LMP_LIB_artifact lmp_artifact)
set(LMP_LIB_coordinator lmp_coord)
set(LMP_LIB_cli lmp_cli)
function(lmp_link_included target src)
  file(STRINGS "${src}" incs REGEX "^[ \t]*#[ \t]*include[ \t]+\"[a-z_]+/")
  set(libs lmp_base)
  foreach(inc ${incs})
    string(REGEX MATCH "\"([a-z_]+)/" _ "${inc}")
    if(DEFINED LMP_LIB_${CMAKE_MATCH_1})
      list(APPEND libs ${LMP_LIB_${CMAKE_MATCH_1}})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES libs)
  target_link_libraries(${target} PRIVATE ${libs})
endfunction()
