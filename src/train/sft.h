/* sft.h — supervised fine-tuning data: JSONL examples tokenized with a loss mask, served as (B, T) batches.
 *
 * Input: JSON Lines, one example per line (blank lines skipped), in one of the three shapes Hugging Face TRL takes:
 *   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}   a conversation
 *   {"prompt": "...", "completion": "..."}                                         prompt, then completion + EOS
 *   {"text": "..."}                                                                plain text + EOS
 * Other keys are ignored. A conversation is rendered with the model's chat template and tokenized exactly as
 * `lmforge chat` does (lmf_chat_encode: BOS when the model says add_bos, special tokens allowed), so fine-tuning
 * sees the ids the model later sees at inference. Prompts, completions and texts are encoded as `lmforge generate`
 * encodes a prompt (BOS when add_bos; the text of special tokens is ordinary text), and EOS is appended as TRL does.
 *
 * A conversation's messages reach the template as OpenAI and TRL shape them (model/chat.h): an assistant's
 * "tool_calls", role "tool" with "tool_call_id", "reasoning_content", content as text parts; a top-level "tools"
 * list is the template's `tools` variable, as TRL passes it.
 *
 * Loss mask (one flag per token: whether the model is trained to predict it). By default only what the model must
 * learn to say. When the chat template marks the assistant's text with {% generation %} blocks (transformers'
 * return_assistant_tokens_mask, TRL's assistant_only_loss; `--chat-template FILE` gives one), the mask is exactly
 * transformers': every token overlapping a block's text. Otherwise: each assistant turn's content and its
 * end-of-turn token (ChatML's <|im_end|>, not the "<|im_start|>assistant\n" header before it nor the "\n" after
 * it), and a completion with its EOS. Those boundaries are found by rendering incrementally (which a template that
 * renders earlier turns differently once later ones exist, as Qwen3 drops old reasoning, cannot do: such an example
 * is refused, saying to use a template with generation blocks or --train-on-prompt): the ids of the conversation up to each assistant header, and up to that turn's
 * end-of-turn token, must be a prefix of the whole conversation's ids. Byte-level BPE can merge across a boundary
 * (a completion starting with a space, say); then the longest common prefix is used, so the straddling token is
 * trained, and the example is counted in stats.n_boundary_shifts. ChatML's boundaries are special tokens, which the
 * tokenizer splits on, so SmolLM2's conversations have clean boundaries (test_sft checks it) unless an assistant
 * message begins with two whitespace characters ("\n\n", "  "), which merge with the header's "\n" (one space,
 * newline or tab stays clean). train_on_prompt puts every token in the loss.
 *
 * Batches: one example per row, right-padded with the pad id; targets[b][t] = tokens[b][t+1] where that token is in
 * the loss, else -1 (prompt tokens, padding, and the row's last position, which has no next token). Padding rather
 * than packing several examples into a row: the training attention (kernels/attention.c) is causal over the whole
 * row, so packed examples would attend across example boundaries. Packing needs block-diagonal masks (per-row
 * document ids in the attention forward and backward): future work. An example longer than max_tokens (the batch's
 * T) is truncated to its first T tokens and counted, or refused when refuse_long says so; an example left with no
 * token to learn (a prompt that fills T, an empty text) is dropped and counted.
 *
 * Errors (lmf_status + message): a line that is not JSON, not an object, of none of the three shapes, a
 * conversation with no assistant turn, an unknown role, a non-string content or role, ...: each names FILE:LINE and
 * the problem. A file with no example is refused. Nothing here prints.
 *
 * Ownership: an lmf_sft_vocab borrows its tokenizer and owns its chat template; an lmf_sft_data owns its arrays
 * (lmf_sft_free); a loader borrows its data, which must outlive it, and owns its order. */
#ifndef LMF_TRAIN_SFT_H
#define LMF_TRAIN_SFT_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

/* What tokenizing needs from the model. */
typedef struct {
    const lmf_tokenizer *tok; /* borrowed */
    lmf_chat_template tmpl;   /* owned: lmf_sft_vocab_free */
    int32_t bos;              /* prepended to every example (except Llama-3 chats, whose text has it); -1: none */
    int32_t eos;              /* appended to completions and texts; -1: none */
    int32_t pad;              /* the id at padding positions (any valid id: their targets are -1) */
} lmf_sft_vocab;

/* From a loaded model: its tokenizer, chat template (tokenizer.chat_template), BOS (when add_bos) and EOS; pad is
 * EOS (or 0). LMF_ERR_ARG when the model carries no tokenizer, LMF_ERR_FORMAT for an unrecognised template. */
lmf_status lmf_sft_vocab_from_weights(const lmf_weights *w, lmf_sft_vocab *out);
/* Replaces v's chat template with the Jinja file at path (`finetune --chat-template FILE`; the model's BOS / EOS
 * texts kept): e.g. a template whose {% generation %} blocks mark the assistant's text. On error v is unchanged. */
lmf_status lmf_sft_vocab_set_template(lmf_sft_vocab *v, const lmf_weights *w, const char *path);
void lmf_sft_vocab_free(lmf_sft_vocab *v);

typedef struct {
    int max_tokens;      /* T, >= 2: longer examples are truncated to their first T tokens */
    int refuse_long;     /* fail (naming FILE:LINE) on an example longer than T instead of truncating it */
    int train_on_prompt; /* loss on every token, prompts, headers and system/user turns included */
} lmf_sft_options;

enum { LMF_SFT_MESSAGES = 0, LMF_SFT_PROMPT_COMPLETION = 1, LMF_SFT_TEXT = 2 };

typedef struct {
    size_t n_lines;           /* examples read (non-blank lines) */
    size_t n_shape[3];        /* of them, by shape (LMF_SFT_MESSAGES, ...) */
    size_t n_truncated;       /* examples cut to max_tokens */
    size_t n_dropped;         /* examples not kept: no token to learn (after truncation) */
    size_t n_boundary_shifts; /* prompt/turn boundaries that fell inside a token */
    size_t n_tokens;          /* tokens kept */
    size_t n_loss_tokens;     /* of them, learned (in the loss and not an example's first token) */
} lmf_sft_stats;

/* The examples, tokenized: example i is ids/loss[start[i] .. start[i+1]). */
typedef struct {
    int32_t *ids;
    uint8_t *loss;  /* 1: the token is in the loss */
    size_t *start;  /* [n + 1] */
    size_t n;       /* examples */
    size_t cap_tokens, cap_n;
    int32_t pad;
    lmf_sft_stats stats;
} lmf_sft_data;

/* Appends the examples of a JSONL text (len bytes; `origin`, e.g. the path, names it in errors) to *d (start
 * zeroed). On error *d keeps the examples of earlier calls only. LMF_ERR_FORMAT for bad input (FILE:LINE: ...),
 * including a text with no example; LMF_ERR_ARG for bad options. */
lmf_status lmf_sft_parse(lmf_sft_data *d, const char *text, size_t len, const char *origin, const lmf_sft_vocab *v,
                         const lmf_sft_options *o);
/* lmf_sft_parse over the file at path (LMF_ERR_IO when it cannot be read). */
lmf_status lmf_sft_load(lmf_sft_data *d, const char *path, const lmf_sft_vocab *v, const lmf_sft_options *o);
void lmf_sft_free(lmf_sft_data *d);

/* Moves round(val_fraction x n) examples, chosen by a shuffle seeded with seed, from *d into *val (start zeroed),
 * both keeping their file order. d keeps its load counters; val's stats count its tokens only. LMF_ERR_ARG unless
 * 0 < val_fraction < 1 and both sides get an example. (A separate validation file is simply a second lmf_sft_load.) */
lmf_status lmf_sft_split(lmf_sft_data *d, double val_fraction, uint64_t seed, lmf_sft_data *val);

/* Fills one (B, T) batch: row b holds example rows[b] (SIZE_MAX: an all-padding row), truncated to T and right-padded
 * with d->pad; targets as the header says. tokens and targets are (B, T) row-major. Returns the number of targets
 * that are not -1 (the loss's denominator). */
size_t lmf_sft_batch(const lmf_sft_data *d, const size_t *rows, int B, int T, int32_t *tokens, int32_t *targets);
/* The shortest row length that holds every one of these examples (truncated to T) and leaves no target out: the
 * longest of them, rounded up to a multiple of 16 (AMX tiles take 16 rows), at most T and at least 2. A batch filled
 * at this length computes every target a (B, T) one does, as TRL pads to the longest of a batch: the padding past
 * it only costs time (right padding is never attended to). */
int lmf_sft_batch_len(const lmf_sft_data *d, const size_t *rows, int B, int T);

/* Examples in a deterministic order, epoch after epoch: a permutation seeded by (seed, epoch) when shuffle, else
 * file order. A batch that runs past the end of an epoch continues with the next one.
 * Packed (lmf_sft_loader_pack): a row takes examples in that order while the next one fits whole (the first always
 * does: examples are at most T), the rest padding; `positions` (B, T) then gives each token's position in its own
 * example (the padding tail counts as one more), for lmf_model_set_positions, and no target crosses an example.
 * Padded, with trim set, a batch's rows are lmf_sft_batch_len long, not T: last_T says how long (the tokens and
 * targets then (B, last_T)). Grouped by length (lmf_sft_loader_group), each epoch's order is cut into megabatches
 * of several batches, each sorted longest first, as Hugging Face's group_by_length does. */
typedef struct {
    const lmf_sft_data *d;
    int B, T, shuffle, pack;
    int trim, last_T, group;
    int32_t *positions; /* [B * T] when packed */
    uint64_t seed;
    size_t *order; /* [d->n], this epoch's */
    size_t pos;    /* next index into order */
    long epoch;    /* epochs started, from 0 */
    size_t *rows;  /* [B] scratch */
} lmf_sft_loader;

/* LMF_ERR_ARG for B < 1, T < 2 or empty data. */
lmf_status lmf_sft_loader_init(lmf_sft_loader *l, const lmf_sft_data *d, int B, int T, uint64_t seed, int shuffle);
/* Switches the loader to packed rows (before the first batch). */
void lmf_sft_loader_pack(lmf_sft_loader *l);
/* Groups each epoch's examples by length (before the first batch), transformers' get_length_grouped_indices on the
 * loader's order: megabatches of min(n / 4B, 50) batches (at least one), each sorted by length, longest first (ties
 * in order), and the longest example of all moved to the front (a run that runs out of memory does so at once). A
 * padded batch then holds examples of similar lengths, so it runs at less padding (trim). */
void lmf_sft_loader_group(lmf_sft_loader *l);
/* Rows one pass over the examples fills, in the current epoch's order: n, or fewer when packed. */
size_t lmf_sft_loader_epoch_rows(const lmf_sft_loader *l);
/* The next batch; its signature is lmf_batch_source's next (train/step.h), with the loader as ctx. */
lmf_status lmf_sft_loader_next(void *loader, int32_t *tokens, int32_t *targets);
void lmf_sft_loader_free(lmf_sft_loader *l);

#endif
