/* chat.h — chat rendering over messages held as JSON, the shape OpenAI's API and TRL's data use, for the server
 * and fine-tuning (both already hold their messages as cJSON).
 *
 * transformers passes each message dict to the template unchanged, so a template sees an assistant message's
 * tool_calls, a tool message's tool_call_id and name, reasoning_content, and any other key. lmforge does the same,
 * after lmf_chat_messages_prepare has checked the keys it knows and brought them to the shape vLLM and llama-server
 * give the template: content as one string (text parts joined), tool call arguments as an object. */
#ifndef LMF_MODEL_CHAT_H
#define LMF_MODEL_CHAT_H

#include "lmforge.h"
#include "model/jinja.h"

#include <cjson/cJSON.h>
#include <stddef.h>

/* Checks messages (a JSON array) and normalises it in place:
 *   - each an object with a string "role": system, user, assistant or tool;
 *   - "content" a string, a list of {"type": "text", "text": str} parts (joined with "\n" into one string; any other
 *     part type is refused), or null / absent only on an assistant message with tool_calls;
 *   - "tool_calls" (assistant only) a list of {"id"?, "type": "function", "function": {"name": str, "arguments":
 *     object | JSON text of an object}}, the text parsed into the object (templates write it with tojson, as vLLM
 *     and llama-server hand it over);
 *   - "tool_call_id", "name", "reasoning_content": strings (or null) when present.
 * Other keys are left as they are. On error LMF_ERR_ARG with a message that starts with the field
 * ("messages[1].content[0].type: ..."), the field also in param (cap bytes, may be NULL). */
lmf_status lmf_chat_messages_prepare(cJSON *messages, char *param, size_t cap);

/* Renders prepared messages (lmf_chat_messages_prepare) with tools (a JSON array, or NULL: none) appended to *out.
 * spans (or NULL) receives the template's {% generation %} spans, offsets from the render's first byte. Built-in
 * renderers take role and string content only and refuse tools, tool calls and role "tool". */
lmf_status lmf_chat_render_json(const lmf_chat_template *t, const cJSON *messages, const cJSON *tools,
                                int add_generation_prompt, lmf_text *out, lmf_jinja_spans *spans);

/* Whether t is run as a template that marks assistant text with {% generation %} (fine-tuning's loss masks). */
int lmf_chat_template_has_generation(const lmf_chat_template *t);

#endif
