/* chat_fixture.h — reading tests/reference/fixtures/chat/chat_fixtures.json's clock (test_chat_jinja,
 * test_chat_messages). */
#ifndef LMF_TESTS_CHAT_FIXTURE_H
#define LMF_TESTS_CHAT_FIXTURE_H

#include <cjson/cJSON.h>
#include <time.h>

/* The local time jinja2 rendered the fixtures at (make_chat_fixtures.py's NOW): what strftime_now must format for
 * templates that date their output (llama 3.2's system turn) to give the fixtures' text on any day. */
static inline time_t chat_fixture_now(const cJSON *root) {
    const cJSON *now = cJSON_GetObjectItem(root, "now");
    struct tm tm = {.tm_year = cJSON_GetArrayItem(now, 0)->valueint - 1900,
                    .tm_mon = cJSON_GetArrayItem(now, 1)->valueint - 1,
                    .tm_mday = cJSON_GetArrayItem(now, 2)->valueint,
                    .tm_hour = cJSON_GetArrayItem(now, 3)->valueint,
                    .tm_min = cJSON_GetArrayItem(now, 4)->valueint,
                    .tm_isdst = -1};
    return mktime(&tm);
}

#endif
