/* webui.h — the chat page served at GET /: src/serve/webui.html, turned into this array at build time by
 * scripts/embed.cmake (CMakeLists.txt), so the binary is self-contained. */
#ifndef LMF_SERVE_WEBUI_H
#define LMF_SERVE_WEBUI_H

#include <stddef.h>

extern const unsigned char lmf_webui_html[];
extern const size_t lmf_webui_html_len;

#endif
