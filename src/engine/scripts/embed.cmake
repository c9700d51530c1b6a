# embed.cmake — writes the redis engine's Lua scripts into a C header as string constants.
#
#   cmake -DSCRIPTS_DIR=<src/engine/scripts> -DOUT=<build/generated/redis_scripts.h> -P embed.cmake
#
# The .lua files are the source; the header is made from them at build time (CMakeLists.txt).
# Each <name>.lua becomes `static const char sb_lua_<name>[]`, holding the helpers of every
# _*.lua file (in name order) followed by the script: that whole text is what the engine
# hands to SCRIPT LOAD, and its SHA1 is what EVALSHA names. SB_LUA_SCRIPTS(X) lists every
# script as X(name), for tables and loops over them.
#
# Escaping: backslash and double quote are escaped, '?' too (no trigraphs in strict C11),
# carriage returns are dropped, and every line becomes its own literal ending in "\n", so the
# text reaches Redis byte for byte as it is in the files.
cmake_minimum_required(VERSION 3.18)

if(NOT SCRIPTS_DIR OR NOT OUT)
  message(FATAL_ERROR "embed.cmake: pass -DSCRIPTS_DIR=<dir> -DOUT=<header>")
endif()

function(sb_lua_literal text out)
  string(REPLACE "\r" "" text "${text}")
  string(REPLACE "\\" "\\\\" text "${text}")
  string(REPLACE "\"" "\\\"" text "${text}")
  string(REPLACE "?" "\\?" text "${text}")
  string(REPLACE "\n" "\\n\"\n  \"" text "${text}")
  set(${out} "  \"${text}\"" PARENT_SCOPE)
endfunction()

file(GLOB helpers LIST_DIRECTORIES false "${SCRIPTS_DIR}/_*.lua")
file(GLOB all LIST_DIRECTORIES false "${SCRIPTS_DIR}/*.lua")
list(SORT helpers)
list(SORT all)

set(prelude "")
foreach(f IN LISTS helpers)
  file(READ "${f}" text)
  string(APPEND prelude "${text}")
endforeach()

set(body "/* Generated from src/engine/scripts/<name>.lua by src/engine/scripts/embed.cmake\n")
string(APPEND body " * at build time. Do not edit: change the .lua files. */\n")
string(APPEND body "#ifndef SB_ENGINE_REDIS_SCRIPTS_H\n#define SB_ENGINE_REDIS_SCRIPTS_H\n\n")
set(names "")
foreach(f IN LISTS all)
  get_filename_component(name "${f}" NAME_WE)
  if(name MATCHES "^_")
    continue()
  endif()
  if(NOT name MATCHES "^[a-z][a-z0-9_]*$")
    message(FATAL_ERROR "embed.cmake: ${f}: a script's name must be a C identifier in lower case")
  endif()
  file(READ "${f}" text)
  sb_lua_literal("${prelude}${text}" literal)
  string(APPEND body "static const char sb_lua_${name}[] =\n${literal};\n\n")
  string(APPEND names " \\\n  X(${name})")
endforeach()
if(names STREQUAL "")
  message(FATAL_ERROR "embed.cmake: no scripts in ${SCRIPTS_DIR}")
endif()
string(APPEND body "/* Every script, as X(name) (its text is sb_lua_<name>). */\n")
string(APPEND body "#define SB_LUA_SCRIPTS(X)${names}\n\n#endif\n")

file(WRITE "${OUT}" "${body}")
