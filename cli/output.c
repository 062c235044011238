/* SPDX-License-Identifier: MIT */
/* Formatting shared by the commands. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tuna.h"

void print_body(const http_resp *r)
{
    if (r->body && r->len) {
        fwrite(r->body, 1, r->len, stdout);
        if (r->body[r->len - 1] != '\n')
            putchar('\n');
    }
    fflush(stdout);
}

void print_json(const cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    if (s) {
        puts(s);
        free(s);
    }
    fflush(stdout);
}

const char *jstr(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

double jnum(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v))
        return v->valuedouble;
    return cJSON_IsNull(v) ? NAN : dflt;
}

bool jhas_num(const cJSON *o, const char *key)
{
    return cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, key));
}

void fmt_time(char *buf, size_t n, const cJSON *o, const char *key)
{
    if (!jhas_num(o, key)) {
        snprintf(buf, n, "-");
        return;
    }
    time_t t = (time_t)jnum(o, key, 0);
    struct tm tm;
    if (!localtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, n, "%lld", (long long)t);
}

void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)ceil(s);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void fmt_bytes(char *buf, size_t n, double b)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%.0f B", b);
    else
        snprintf(buf, n, "%.1f %s", b, unit[u]);
}

cJSON *json_from_arg(const char *s)
{
    if (!strcmp(s, "true"))
        return cJSON_CreateTrue();
    if (!strcmp(s, "false"))
        return cJSON_CreateFalse();
    char *end;
    double d = strtod(s, &end);
    if (*s && !*end && isfinite(d) && !strchr(s, 'x') && !strchr(s, 'X') &&
        strspn(s, " \t") == 0)
        return cJSON_CreateNumber(d);
    return cJSON_CreateString(s);
}

int query_add(char **q, const char *name, const char *value)
{
    char *ev = url_escape(value);
    if (!ev)
        return -1;
    size_t old = *q ? strlen(*q) : 0;
    size_t n = old + strlen(name) + strlen(ev) + 3;
    char *b = realloc(*q, n);
    if (!b) {
        free(ev);
        return -1;
    }
    snprintf(b + old, n - old, "%c%s=%s", old ? '&' : '?', name, ev);
    free(ev);
    *q = b;
    return 0;
}

void print_kv(int width, const char *key, const char *fmt, ...)
{
    printf("%-*s ", width, key);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}
