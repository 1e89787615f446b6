/* sse_events.h — a server-sent event stream as the OpenAI layer writes it ("data: {json}\n\n" ... "data: [DONE]"),
 * split back into parsed events for the tests of the OpenAI layer (test_serve_openai, test_serve_tools). */
#ifndef LMF_TESTS_SSE_EVENTS_H
#define LMF_TESTS_SSE_EVENTS_H

#include <cjson/cJSON.h>
#include <string.h>

/* The events of s as parsed JSON objects (NULL for "[DONE]"), at most max; returns the count. Include after
 * <cmocka.h>: a malformed stream fails the test. */
static int sse_events(const char *s, cJSON **out, int max) {
    int n = 0;
    while (s && *s && n < max) {
        assert_memory_equal(s, "data: ", 6);
        const char *end = strstr(s, "\n\n");
        assert_non_null(end);
        size_t len = (size_t)(end - s - 6);
        out[n++] = len == 6 && !memcmp(s + 6, "[DONE]", 6) ? NULL : cJSON_ParseWithLength(s + 6, len);
        s = end + 2;
    }
    return n;
}

#endif
