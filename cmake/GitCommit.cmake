# DS_GIT_COMMIT: the git commit of the source tree, for `darkstar --version`, read at configure time;
# "unknown (not a git checkout)" without git or outside a repository of its own (a tarball unpacked
# inside some other repository must not report that one's commit). HEAD and the branch's ref are
# configure dependencies, so after a commit, checkout or pull the next build re-reads the commit.
find_package(Git QUIET)
set(DS_GIT_COMMIT "unknown (not a git checkout)")
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --show-toplevel --short=12 HEAD
                  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
                  OUTPUT_VARIABLE ds_git_out RESULT_VARIABLE ds_git_rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(ds_git_rc EQUAL 0)
    string(REPLACE "\n" ";" ds_git_out "${ds_git_out}")
    list(GET ds_git_out 0 ds_git_top)
    list(GET ds_git_out 1 ds_git_commit)
    file(REAL_PATH "${ds_git_top}" ds_git_top)
    file(REAL_PATH "${CMAKE_CURRENT_SOURCE_DIR}" ds_source_dir)
    if(ds_git_top STREQUAL ds_source_dir)
      set(DS_GIT_COMMIT "${ds_git_commit}")
      execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --path-format=absolute --git-path HEAD
                              --git-path packed-refs
                      WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} OUTPUT_VARIABLE ds_git_paths
                      ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
      execute_process(COMMAND ${GIT_EXECUTABLE} symbolic-ref -q HEAD WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
                      OUTPUT_VARIABLE ds_git_ref ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(ds_git_ref)
        execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --path-format=absolute --git-path ${ds_git_ref}
                        WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} OUTPUT_VARIABLE ds_git_ref_path
                        ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
        string(APPEND ds_git_paths "\n${ds_git_ref_path}")
      endif()
      string(REPLACE "\n" ";" ds_git_paths "${ds_git_paths}")
      foreach(p ${ds_git_paths})
        if(EXISTS "${p}")
          set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${p}")
        endif()
      endforeach()
    endif()
  endif()
endif()
