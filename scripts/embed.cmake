# embed.cmake — writes a file's bytes as a C array, at build time, so the binary carries it (no xxd needed).
# Usage: cmake -DIN=src/serve/webui.html -DOUT=build/generated/webui_html.c -DNAME=lmf_webui_html \
#              -DHEADER=serve/webui.h -P scripts/embed.cmake
# Defines `const unsigned char NAME[]` (NUL-terminated, for convenience) and `const size_t NAME_len` (without it),
# including HEADER (which declares them) first.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR len "${digits} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUT}"
  "/* Generated from ${IN} by scripts/embed.cmake at build time: do not edit. */\n"
  "#include \"${HEADER}\"\n\n"
  "const unsigned char ${NAME}[] = {\n    ${bytes}0x00};\n"
  "const size_t ${NAME}_len = ${len};\n")
