/* SPDX-License-Identifier: MIT */
/*
 * util.c - input checking shared by every handler: UTF-8, JSON bodies, ids,
 * content types, query strings and the parse-or-fail getters.
 *
 * cJSON accepts any bytes inside strings, so bodies are checked for valid
 * UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF) before they
 * are parsed. Numbers are strict: JSON numbers must be finite and, for
 * integer fields, integral; query numbers must be plain decimal syntax.
 */
#include "api/api-impl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* UTF-8 and JSON                                                            */

bool api_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int n;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + (size_t)n >= len)
            return false;
        for (int k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += (size_t)n + 1;
    }
    return true;
}

cJSON *api_json_parse(const char *s, size_t len, char *err, size_t errlen)
{
    if (!s || len == 0) {
        snprintf(err, errlen, "the request body is empty; send a JSON object");
        return NULL;
    }
    if (memchr(s, '\0', len)) {
        snprintf(err, errlen, "the request body contains a NUL byte");
        return NULL;
    }
    if (!api_utf8_valid(s, len)) {
        snprintf(err, errlen, "the request body is not valid UTF-8");
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, false);
    if (!j) {
        size_t off = end && end >= s ? (size_t)(end - s) : 0;
        snprintf(err, errlen, "the request body is not valid JSON (near byte %zu)",
                 off);
        return NULL;
    }
    /* Only whitespace may follow the value. */
    for (const char *p = end; p && p < s + len; p++) {
        if (!isspace((unsigned char)*p)) {
            cJSON_Delete(j);
            snprintf(err, errlen,
                     "the request body has data after the JSON value (byte %zu)",
                     (size_t)(p - s));
            return NULL;
        }
    }
    return j;
}

/* ------------------------------------------------------------------------ */
/* Ids                                                                       */

const char *api_job_id_of(const char *name)
{
    if (strncmp(name, "ft:", 3) == 0)
        return strrchr(name, ':') + 1;
    return name;
}

bool api_id_valid(const char *id, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (!id || strncmp(id, prefix, pl) != 0)
        return false;
    const char *h = id + pl;
    size_t n = strlen(h);
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return true;
}

int api_id_new(const char *prefix, char *buf, size_t len)
{
    unsigned char rnd[12];
    size_t got = 0;
    while (got < sizeof(rnd)) {
        ssize_t r = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    static const char hex[] = "0123456789abcdef";
    size_t pl = strlen(prefix);
    if (len < pl + 2 * sizeof(rnd) + 1)
        return -EINVAL;
    memcpy(buf, prefix, pl);
    for (size_t i = 0; i < sizeof(rnd); i++) {
        buf[pl + 2 * i] = hex[rnd[i] >> 4];
        buf[pl + 2 * i + 1] = hex[rnd[i] & 15];
    }
    buf[pl + 2 * sizeof(rnd)] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Headers                                                                   */

bool api_content_type_is(const char *ct, const char *want)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, "; \t");
    return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

bool api_header_param(const char *hv, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = hv ? strchr(hv, ';') : NULL;
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t n;
            if (*v == '"') {
                v++;
                n = strcspn(v, "\"");
            } else {
                n = strcspn(v, "; \t");
            }
            if (n == 0 || n >= len)
                return false;
            memcpy(buf, v, n);
            buf[n] = '\0';
            return true;
        }
        p = strchr(p, ';');
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Query strings                                                             */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out; false when it does not fit or when the
 * result has a NUL byte. */
static bool pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
                   hexval(s[i + 2]) >= 0) {
            c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        if (c == 0 || o + 1 >= cap)
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return true;
}

bool api_query_next(const char *q, size_t *pos, char *name, size_t nlen,
                    char *value, size_t vlen)
{
    if (!q)
        return false;
    size_t qlen = strlen(q);
    while (*pos < qlen) {
        const char *s = q + *pos;
        size_t n = strcspn(s, "&");
        *pos += n + (s[n] == '&');
        if (n == 0)
            continue;
        const char *eq = memchr(s, '=', n);
        size_t kn = eq ? (size_t)(eq - s) : n;
        if (!pct_decode(s, kn, name, nlen))
            snprintf(name, nlen, "%s", "?");
        if (!eq) {
            value[0] = '\0';
        } else if (!pct_decode(eq + 1, n - kn - 1, value, vlen)) {
            /* Too long or NUL: hand back a marker the caller rejects. */
            snprintf(value, vlen, "%s", "\x01");
        }
        return true;
    }
    return false;
}

bool api_query_get(const char *q, const char *want, char *value, size_t vlen)
{
    char name[64], v[1024];
    size_t pos = 0;
    bool found = false;
    while (api_query_next(q, &pos, name, sizeof(name), v, sizeof(v))) {
        if (strcmp(name, want) == 0) {
            snprintf(value, vlen, "%s", v);
            found = true;
        }
    }
    return found;
}

/* Strict decimal number: optional sign, digits, optional fraction and
 * exponent; no hex, inf or nan. */
static bool parse_number(const char *s, double *ret)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p) &&
        !(*p == '.' && isdigit((unsigned char)p[1])))
        return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q) && !strchr(".eE+-", *q))
            return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || !isfinite(d))
        return false;
    *ret = d;
    return true;
}

static bool name_in(const char *const *names, const char *name)
{
    for (int i = 0; names && names[i]; i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

cJSON *api_query_to_json(api_call *c, const char *const *strings)
{
    cJSON *o = cJSON_CreateObject();
    char name[64], v[1024];
    size_t pos = 0;
    while (o && api_query_next(c->req->query, &pos, name, sizeof(name), v,
                               sizeof(v))) {
        if (!api_utf8_valid(v, strlen(v)) || v[0] == '\x01') {
            api_error(c->res, 400, "invalid_parameter",
                      "query parameter is too long or not valid UTF-8", -1,
                      name);
            cJSON_Delete(o);
            return NULL;
        }
        double d;
        cJSON *item;
        if (name_in(strings, name))
            item = cJSON_CreateString(v);
        else if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
            item = cJSON_CreateBool(v[0] == 't');
        else if (parse_number(v, &d))
            item = cJSON_CreateNumber(d);
        else
            item = cJSON_CreateString(v);
        cJSON_DeleteItemFromObjectCaseSensitive(o, name);
        cJSON_AddItemToObject(o, name, item);
    }
    if (!o)
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
    return o;
}

/* ------------------------------------------------------------------------ */
/* Parse-or-fail getters                                                     */

static void bad_field(api_call *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad_field(api_call *c, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_error(c->res, 400, "invalid_parameter", msg, -1, field);
}

/* An integer field's value d (is_num: a finite number was given) into
 * *ret when it is whole and in [min, max]; -1 after a 400 naming field. */
static int int_in_range(api_call *c, const char *field, bool is_num, double d,
                        int64_t min, int64_t max, int64_t *ret)
{
    if (!is_num || d != floor(d)) {
        bad_field(c, field, "%s must be an integer", field);
        return -1;
    }
    if (d < (double)min || d > (double)max) {
        bad_field(c, field, "%s must be between %lld and %lld", field,
                  (long long)min, (long long)max);
        return -1;
    }
    *ret = (int64_t)d;
    return 0;
}

int api_get_int(api_call *c, const cJSON *obj, const char *field,
                int64_t min, int64_t max, int64_t def, int64_t *ret)
{
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, field) : NULL;
    if (!it || cJSON_IsNull(it)) {
        *ret = def;
        return 0;
    }
    double d = it->valuedouble;
    return int_in_range(c, field, cJSON_IsNumber(it) && isfinite(d), d, min,
                        max, ret);
}

int api_get_num(api_call *c, const cJSON *obj, const char *field,
                double min, double max, double def, double *ret)
{
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, field) : NULL;
    if (!it || cJSON_IsNull(it)) {
        *ret = def;
        return 0;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
        bad_field(c, field, "%s must be a number", field);
        return -1;
    }
    if (it->valuedouble < min || it->valuedouble > max) {
        bad_field(c, field, "%s must be between %g and %g", field, min, max);
        return -1;
    }
    *ret = it->valuedouble;
    return 0;
}

int api_get_bool(api_call *c, const cJSON *obj, const char *field, bool def,
                 bool *ret)
{
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, field) : NULL;
    if (!it || cJSON_IsNull(it)) {
        *ret = def;
        return 0;
    }
    if (!cJSON_IsBool(it)) {
        bad_field(c, field, "%s must be true or false", field);
        return -1;
    }
    *ret = cJSON_IsTrue(it);
    return 0;
}

int api_get_str(api_call *c, const cJSON *obj, const char *field,
                size_t maxlen, const char *def, const char **ret)
{
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, field) : NULL;
    if (!it || cJSON_IsNull(it)) {
        *ret = def;
        return 0;
    }
    if (!cJSON_IsString(it)) {
        bad_field(c, field, "%s must be a string", field);
        return -1;
    }
    if (strlen(it->valuestring) > maxlen) {
        bad_field(c, field, "%s must be at most %zu bytes", field, maxlen);
        return -1;
    }
    *ret = it->valuestring;
    return 0;
}

int api_query_int(api_call *c, const char *field, int64_t min, int64_t max,
                  int64_t def, int64_t *ret)
{
    char v[64];
    if (!api_query_get(c->req->query, field, v, sizeof(v))) {
        *ret = def;
        return 0;
    }
    double d = 0;
    bool is_num = parse_number(v, &d);
    return int_in_range(c, field, is_num, d, min, max, ret);
}

int api_query_bool(api_call *c, const char *field, bool def, bool *ret)
{
    char v[16];
    if (!api_query_get(c->req->query, field, v, sizeof(v))) {
        *ret = def;
        return 0;
    }
    if (strcmp(v, "true") && strcmp(v, "false")) {
        bad_field(c, field, "%s must be true or false", field);
        return -1;
    }
    *ret = v[0] == 't';
    return 0;
}

int api_query_str(api_call *c, const char *field, size_t maxlen, char *buf,
                  size_t len)
{
    char v[1024]; /* longer than any valid value: too long is an error, not
                     silently cut */
    buf[0] = '\0';
    if (!api_query_get(c->req->query, field, v, sizeof(v)))
        return 0;
    size_t n = strlen(v);
    if (n > maxlen || n >= len || v[0] == '\x01' || !api_utf8_valid(v, n)) {
        bad_field(c, field, "%s must be valid UTF-8, at most %zu bytes", field,
                  maxlen);
        return -1;
    }
    memcpy(buf, v, n + 1);
    return 0;
}

/* Whether name is one of the space-separated words of names. */
static bool word_in(const char *names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names; p && *p;) {
        size_t w = strcspn(p, " ");
        if (w == n && !strncmp(p, name, n))
            return true;
        p += w;
        p += strspn(p, " ");
    }
    return false;
}

int api_query_check(api_call *c, const char *names)
{
    char name[64], v[1024];
    size_t pos = 0;
    while (api_query_next(c->req->query, &pos, name, sizeof(name), v,
                          sizeof(v))) {
        if (!word_in(names, name)) {
            char msg[256];
            snprintf(msg, sizeof(msg),
                     "unknown query parameter '%.64s' (this route takes %s)",
                     name, names ? names : "none");
            api_error(c->res, 400, "invalid_parameter", msg, -1, name);
            return -1;
        }
    }
    return 0;
}

int api_check_keys(api_call *c, const cJSON *obj, const char *const *keys,
                   const char *const *more)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (name_in(keys, it->string) || name_in(more, it->string))
            continue;
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown field \"%.64s\"", it->string);
        api_error(c->res, 400, "invalid_parameter", msg, -1, it->string);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Files and time                                                            */

int api_mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    struct stat st;
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    if (stat(tmp, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int api_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int64_t api_now(void)
{
    return (int64_t)time(NULL);
}

int api_body_load(api_call *c, char **ret_owned, const char **ret_body,
                  size_t *ret_len)
{
    const api_request *req = c->req;
    *ret_owned = NULL;
    if (req->body || !req->body_file) {
        *ret_body = req->body;
        *ret_len = req->body ? req->body_len : 0;
        return 0;
    }
    FILE *f = fopen(req->body_file, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0) {
        if (f)
            fclose(f);
        api_error(c->res, 400, "missing_body", "the request body is unreadable",
                  -1, NULL);
        return -1;
    }
    size_t max = c->ctx->limits.max_body_bytes;
    if (max && (size_t)st.st_size > max) {
        fclose(f);
        api_error(c->res, 413, "body_too_large", "the request body is too large",
                  -1, NULL);
        return -1;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf) {
        api_error(c->res, 503, "out_of_memory", "out of memory", -1, NULL);
        return -1;
    }
    buf[n] = '\0';
    *ret_owned = buf;
    *ret_body = buf;
    *ret_len = n;
    return 0;
}
