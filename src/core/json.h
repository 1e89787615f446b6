/* json.h — writing JSON strings by hand, for the writers that stream JSON Lines (pipeline outputs) or emit
 * JSON-compatible quoted strings (config dumps) without building a cJSON tree per record. */
#ifndef LMF_CORE_JSON_H
#define LMF_CORE_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Escapes the n bytes of s as the body of a JSON string (no surrounding quotes) into dst and returns the bytes
 * written; dst NULL returns the length only. " \ \n \t \r get their short escapes, other controls (< 0x20, 0x7f)
 * \u00xx; every other byte (UTF-8 included) is copied, so valid UTF-8 in gives valid JSON out. dst needs room
 * for 6 * n bytes in the worst case. No NUL is written. */
size_t lmf_json_escape(char *dst, const char *s, size_t n);
/* Writes s (NUL-terminated; NULL as "") to f as a quoted JSON string, escaped as lmf_json_escape does. */
void lmf_json_write_string(FILE *f, const char *s);

#endif
