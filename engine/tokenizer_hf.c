/* SPDX-License-Identifier: MIT */
/*
 * tokenizer_hf.c - Hugging Face tokenizer.json (tokenizers library format)
 * on top of tokcore, aiming at id-for-id agreement with the library.
 *
 * Read from tokenizer.json:
 *  - model: BPE only (vocab, merges as "a b" strings or [a, b] pairs,
 *    byte_fallback, unk_token, fuse_unk, ignore_merges);
 *  - added_tokens with special/lstrip/rstrip/single_word;
 *  - normalizer: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace,
 *    Sequence (null allowed);
 *  - pre_tokenizer: Split, ByteLevel, Metaspace, Digits, Whitespace,
 *    WhitespaceSplit, Punctuation, Sequence (null allowed);
 *  - decoder: ByteLevel, Metaspace, Replace(U+2581 -> " "), ByteFallback,
 *    Fuse, Strip, Sequence; they become tokcore_decode_cfg flags;
 *  - post_processor: a TemplateProcessing that starts with a special token
 *    gives BOS and "add BOS".
 * Anything else is refused with -EINVAL and a message naming it, rather
 * than tokenized differently from the library.
 *
 * Next to tokenizer.json: tokenizer_config.json (bos_token, eos_token,
 * add_bos_token, chat_template) wins over generation_config.json
 * (bos_token_id, eos_token_id) and the post-processor.
 */
#include "tokcore.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* tokenizer.json files are a few MB; anything far larger is not one. */
#define HF_MAX_FILE (256u << 20)

static int read_json(const char *path, cJSON **ret, bool optional,
                     char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (optional && errno == ENOENT) {
            *ret = NULL;
            return 0;
        }
        eng_err(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? -ENOENT : -EIO;
    }
    struct stat st;
    char *buf = NULL;
    int rc = -EIO;
    if (fstat(fileno(f), &st) < 0 || st.st_size > (off_t)HF_MAX_FILE)
        goto out;
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        goto out;
    buf[st.st_size] = '\0';
    *ret = cJSON_ParseWithLength(buf, (size_t)st.st_size);
    rc = *ret ? 0 : -EINVAL;
out:
    if (rc)
        eng_err(err, errlen, "%s: %s", path,
                rc == -EINVAL ? "invalid JSON" : "unreadable");
    free(buf);
    fclose(f);
    return rc;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static const char *jtype(const cJSON *o)
{
    const char *t = jstr(o, "type");
    return t ? t : "";
}

/* A token given as a string or as {"content": ...} (tokenizer_config). */
static const char *token_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    return cJSON_IsObject(v) ? jstr(v, "content") : NULL;
}

/* {"String": s} or {"Regex": r} */
static const char *pattern_of(const cJSON *o, bool *is_regex)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = jstr(p, "Regex");
    *is_regex = s != NULL;
    return s ? s : jstr(p, "String");
}

/* ------------------------------------------------------------------------ */
/* model                                                                    */

static int load_merge(tokcore *c, const cJSON *m)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s + (*s ? 1 : 0), ' ');
        if (!sp)
            return -EINVAL;
        return tokcore_add_merge(c, s, (size_t)(sp - s), sp + 1, strlen(sp + 1));
    }
    const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
    if (!cJSON_IsArray(m) || !cJSON_IsString(a) || !cJSON_IsString(b))
        return -EINVAL;
    return tokcore_add_merge(c, a->valuestring, strlen(a->valuestring),
                             b->valuestring, strlen(b->valuestring));
}

static int load_model(tokcore *c, const cJSON *root, char *err, size_t errlen)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    const cJSON *it;
    int rc;
    if (strcmp(jtype(m), "BPE") != 0 && !(cJSON_IsObject(vocab) &&
                                           cJSON_IsArray(merges))) {
        eng_err(err, errlen, "unsupported tokenizer model \"%s\" (BPE only)",
                jtype(m));
        return -EINVAL;
    }
    const char *cp = jstr(m, "continuing_subword_prefix");
    const char *ew = jstr(m, "end_of_word_suffix");
    if ((cp && *cp) || (ew && *ew)) {
        eng_err(err, errlen, "BPE subword prefix/suffix is not supported");
        return -EINVAL;
    }
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 ||
            it->valuedouble >= (1 << 30))
            goto bad_vocab;
        rc = tokcore_add_token(c, it->string, strlen(it->string),
                               (int32_t)it->valuedouble, 0);
        if (rc == -ENOMEM)
            return rc;
        if (rc)
            goto bad_vocab;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = jstr(it, "content");
        if (!cJSON_IsNumber(id) || !content || id->valuedouble < 0 ||
            id->valuedouble >= (1 << 30)) {
            eng_err(err, errlen, "bad added token");
            return -EINVAL;
        }
        rc = tokcore_add_added(c, content, (int32_t)id->valuedouble,
                               jbool(it, "special", false),
                               jbool(it, "lstrip", false),
                               jbool(it, "rstrip", false),
                               jbool(it, "single_word", false));
        if (rc)
            return rc;
    }
    int i = 0;
    cJSON_ArrayForEach(it, merges) {
        if ((rc = load_merge(c, it)) < 0) {
            eng_err(err, errlen, "merge %d does not match the vocabulary", i);
            return rc;
        }
        i++;
    }
    const char *unk = jstr(m, "unk_token");
    tokcore_set_model(c, jbool(m, "byte_fallback", false),
                      unk ? tokcore_lookup(c, unk, strlen(unk)) : -1,
                      jbool(m, "fuse_unk", false),
                      jbool(m, "ignore_merges", false));
    return 0;
bad_vocab:
    eng_err(err, errlen, "bad vocabulary entry \"%.40s\"", it->string);
    return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* normalizer, pre-tokenizer, decoder                                       */

static int load_normalizer(tokcore *c, const cJSON *n, char *err,
                           size_t errlen)
{
    static const struct { const char *name; tokcore_norm_kind k; } simple[] = {
        { "NFC", TOKCORE_NORM_NFC }, { "NFD", TOKCORE_NORM_NFD },
        { "NFKC", TOKCORE_NORM_NFKC }, { "NFKD", TOKCORE_NORM_NFKD },
        { "Lowercase", TOKCORE_NORM_LOWERCASE },
    };
    const char *t = jtype(n);
    if (cJSON_IsNull(n) || !n)
        return 0;
    if (!strcmp(t, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) {
            int rc = load_normalizer(c, it, err, errlen);
            if (rc)
                return rc;
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof(simple) / sizeof(*simple); i++)
        if (!strcmp(t, simple[i].name))
            return tokcore_add_normalizer(c, simple[i].k, NULL, NULL, false,
                                          err, errlen);
    if (!strcmp(t, "Prepend"))
        return tokcore_add_normalizer(c, TOKCORE_NORM_PREPEND,
                                      jstr(n, "prepend"), NULL, false, err,
                                      errlen);
    if (!strcmp(t, "Replace")) {
        bool re;
        const char *p = pattern_of(n, &re);
        return tokcore_add_normalizer(c, TOKCORE_NORM_REPLACE, p,
                                      jstr(n, "content"), re, err, errlen);
    }
    eng_err(err, errlen, "unsupported normalizer \"%s\"", t);
    return -EINVAL;
}

static int split_behavior(const char *b, tokcore_split_behavior *ret)
{
    static const char *const names[] = {
        "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
        "Contiguous",
    };
    for (int i = 0; i < 5; i++)
        if (b && !strcmp(b, names[i])) {
            *ret = (tokcore_split_behavior)i;
            return 0;
        }
    return -EINVAL;
}

static int load_pre(tokcore *c, const cJSON *p, char *err, size_t errlen)
{
    const char *t = jtype(p);
    if (cJSON_IsNull(p) || !p)
        return 0;
    if (!strcmp(t, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) {
            int rc = load_pre(c, it, err, errlen);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!strcmp(t, "Split")) {
        bool re;
        const char *pat = pattern_of(p, &re);
        tokcore_split_behavior b;
        if (!pat || split_behavior(jstr(p, "behavior"), &b) < 0) {
            eng_err(err, errlen, "bad Split pre-tokenizer");
            return -EINVAL;
        }
        return tokcore_add_split(c, pat, re, b, jbool(p, "invert", false),
                                 err, errlen);
    }
    if (!strcmp(t, "ByteLevel"))
        return tokcore_add_bytelevel(c, jbool(p, "add_prefix_space", true),
                                     jbool(p, "use_regex", true), err, errlen);
    if (!strcmp(t, "Metaspace")) {
        const char *ps = jstr(p, "prepend_scheme");
        tokcore_prepend_scheme s =
            jbool(p, "add_prefix_space", true) ? TOKCORE_PREPEND_ALWAYS
                                               : TOKCORE_PREPEND_NEVER;
        if (ps)
            s = !strcmp(ps, "first") ? TOKCORE_PREPEND_FIRST
              : !strcmp(ps, "never") ? TOKCORE_PREPEND_NEVER
                                     : TOKCORE_PREPEND_ALWAYS;
        const char *r = jstr(p, "replacement");
        return tokcore_add_metaspace(c, r ? r : "\xe2\x96\x81", s,
                                     jbool(p, "split", true));
    }
    if (!strcmp(t, "Digits"))
        return tokcore_add_split(c, jbool(p, "individual_digits", false)
                                        ? "\\p{N}" : "\\p{N}+",
                                 true, TOKCORE_SPLIT_ISOLATED, false, err,
                                 errlen);
    if (!strcmp(t, "Whitespace"))
        return tokcore_add_split(c, "\\w+|[^\\w\\s]+", true,
                                 TOKCORE_SPLIT_REMOVED, true, err, errlen);
    if (!strcmp(t, "WhitespaceSplit"))
        return tokcore_add_split(c, "\\s+", true, TOKCORE_SPLIT_REMOVED, false,
                                 err, errlen);
    if (!strcmp(t, "Punctuation")) {
        tokcore_split_behavior b = TOKCORE_SPLIT_ISOLATED;
        if (jstr(p, "behavior") && split_behavior(jstr(p, "behavior"), &b) < 0)
            return -EINVAL;
        return tokcore_add_split(c, "\\p{P}", true, b, false, err, errlen);
    }
    eng_err(err, errlen, "unsupported pre-tokenizer \"%s\"", t);
    return -EINVAL;
}

static int load_decoder(const cJSON *d, tokcore_decode_cfg *dc, char *err,
                        size_t errlen)
{
    const char *t = jtype(d);
    if (cJSON_IsNull(d) || !d)
        return 0;
    if (!strcmp(t, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders")) {
            int rc = load_decoder(it, dc, err, errlen);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) {
        dc->byte_level = true;
    } else if (!strcmp(t, "ByteFallback")) {
        dc->byte_fallback = true;
    } else if (!strcmp(t, "Fuse")) {
        /* pieces are concatenated anyway */
    } else if (!strcmp(t, "Metaspace")) {
        const char *ps = jstr(d, "prepend_scheme");
        dc->metaspace = true;
        dc->strip_leading = ps ? strcmp(ps, "never") != 0
                               : jbool(d, "add_prefix_space", true);
    } else if (!strcmp(t, "Replace")) {
        bool re;
        const char *p = pattern_of(d, &re), *to = jstr(d, "content");
        if (re || !p || !to || strcmp(p, "\xe2\x96\x81") || strcmp(to, " ")) {
            eng_err(err, errlen, "unsupported Replace decoder");
            return -EINVAL;
        }
        dc->metaspace = true;
    } else if (!strcmp(t, "Strip")) {
        const char *ct = jstr(d, "content");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(d, "start");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (!ct || strcmp(ct, " ") || !cJSON_IsNumber(st) ||
            st->valuedouble > 1 || (cJSON_IsNumber(sp) && sp->valuedouble)) {
            eng_err(err, errlen, "unsupported Strip decoder");
            return -EINVAL;
        }
        dc->strip_leading = st->valuedouble == 1;
    } else {
        eng_err(err, errlen, "unsupported decoder \"%s\"", t);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* configs                                                                  */

typedef struct hf_special {
    int32_t bos, eos;
    bool add_bos;
    char *chat_template;
} hf_special;

static int32_t id_of(const tokcore *c, const char *text)
{
    return text ? tokcore_lookup(c, text, strlen(text)) : -1;
}

static int32_t first_id(const cJSON *v)
{
    if (cJSON_IsArray(v))
        v = cJSON_GetArrayItem(v, 0);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (int32_t)v->valuedouble
                                                    : -1;
}

/* Post-processor: BOS is the leading special token of the single template. */
static void from_post(const tokcore *c, const cJSON *root, hf_special *sp)
{
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (strcmp(jtype(pp), "TemplateProcessing") != 0)
        return;
    const cJSON *first = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(pp, "single"), 0);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    const char *name = jstr(st, "id");
    if (!name)
        return;
    sp->bos = id_of(c, name);
    sp->add_bos = sp->bos >= 0;
}

static int from_configs(const tokcore *c, const char *dir, hf_special *sp,
                        char *err, size_t errlen)
{
    char path[4096];
    cJSON *tc = NULL, *gc = NULL;
    int rc;
    snprintf(path, sizeof(path), "%s/generation_config.json", dir);
    if ((rc = read_json(path, &gc, true, err, errlen)) < 0)
        return rc;
    if (gc) {
        int32_t b = first_id(cJSON_GetObjectItemCaseSensitive(gc, "bos_token_id"));
        int32_t e = first_id(cJSON_GetObjectItemCaseSensitive(gc, "eos_token_id"));
        if (b >= 0)
            sp->bos = b;
        if (e >= 0)
            sp->eos = e;
    }
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    if ((rc = read_json(path, &tc, true, err, errlen)) < 0)
        goto out;
    if (tc) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(tc, "bos_token");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(tc, "eos_token");
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
        if (cJSON_IsNull(b))
            sp->bos = -1;
        else if (id_of(c, token_text(b)) >= 0)
            sp->bos = id_of(c, token_text(b));
        if (id_of(c, token_text(e)) >= 0)
            sp->eos = id_of(c, token_text(e));
        if (cJSON_IsBool(ab))
            sp->add_bos = cJSON_IsTrue(ab);
        if (cJSON_IsArray(ct)) { /* [{name, template}]: take "default" */
            const cJSON *it, *pick = cJSON_GetArrayItem(ct, 0);
            cJSON_ArrayForEach(it, ct) {
                const char *nm = jstr(it, "name");
                if (nm && !strcmp(nm, "default"))
                    pick = it;
            }
            ct = cJSON_GetObjectItemCaseSensitive(pick, "template");
        }
        if (cJSON_IsString(ct) && !(sp->chat_template = strdup(ct->valuestring)))
            rc = -ENOMEM;
    }
out:
    cJSON_Delete(tc);
    cJSON_Delete(gc);
    return rc;
}

/* ------------------------------------------------------------------------ */

static int split_path(const char *p, char **ret_json, char **ret_dir)
{
    struct stat st;
    size_t n = strlen(p);
    char *json, *dir;
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
        dir = strdup(p);
        json = malloc(n + 32);
        if (json)
            snprintf(json, n + 32, "%s/tokenizer.json", p);
    } else {
        json = strdup(p);
        dir = strdup(p);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = '\0';
        else if (dir)
            strcpy(dir, ".");
    }
    if (!json || !dir) {
        free(json);
        free(dir);
        return -ENOMEM;
    }
    *ret_json = json;
    *ret_dir = dir;
    return 0;
}

int eng_tokenizer_load_hf(const char *path, eng_tokenizer **ret_tok,
                          char *err, size_t errlen)
{
    char *json = NULL, *dir = NULL;
    cJSON *root = NULL;
    tokcore *c = NULL;
    eng_tokenizer *t = NULL;
    tokcore_decode_cfg dc = { 0 };
    hf_special sp = { -1, -1, false, NULL };
    int rc;

    if (!path)
        return -EINVAL;
    if ((rc = split_path(path, &json, &dir)) < 0 ||
        (rc = read_json(json, &root, false, err, errlen)) < 0 ||
        (rc = tokcore_new(TOKCORE_MERGE_RANK, &c)) < 0 ||
        (rc = load_model(c, root, err, errlen)) < 0 ||
        (rc = load_normalizer(c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"),
                              err, errlen)) < 0 ||
        (rc = load_pre(c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"),
                       err, errlen)) < 0 ||
        (rc = load_decoder(cJSON_GetObjectItemCaseSensitive(root, "decoder"), &dc,
                           err, errlen)) < 0)
        goto out;
    from_post(c, root, &sp);
    if ((rc = from_configs(c, dir, &sp, err, errlen)) < 0 ||
        (rc = tokcore_finish(c, 0, sp.bos, &dc, err, errlen)) < 0)
        goto out;
    int vocab = tokcore_vocab_size(c);
    t = eng_tokenizer_wrap(&tokcore_ops, c, vocab, sp.bos, sp.eos);
    if (!t) {
        rc = -ENOMEM;
        goto out;
    }
    c = NULL;
    t->add_bos_default = sp.add_bos && sp.bos >= 0;
    t->chat_template = sp.chat_template;
    sp.chat_template = NULL;
    *ret_tok = t;
    rc = 0;
out:
    if (rc && rc != -ENOMEM && rc != -ENOENT && rc != -EIO)
        rc = -EINVAL;
    free(sp.chat_template);
    tokcore_free(c);
    cJSON_Delete(root);
    free(json);
    free(dir);
    return rc;
}
