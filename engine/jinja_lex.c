/* SPDX-License-Identifier: MIT */
/*
 * jinja_lex.c - template source to tokens, with jinja2's whitespace rules.
 *
 * Before lexing, newlines (\r\n, \r, \n) become \n and one trailing newline
 * is dropped (keep_trailing_newline=False), as jinja2's lexer does.
 *
 * Text runs until the next "{{", "{%" or "{#". Whitespace control, as in
 * jinja2 with trim_blocks and lstrip_blocks:
 *  - "{%-", "{{-", "{#-": strip all whitespace at the end of the text before.
 *  - lstrip_blocks: before "{%" or "{#" (not "{{", not "{%+"), strip spaces
 *    and tabs back to the start of the line when only whitespace is there;
 *    the "start of the line" includes the start of the text when the
 *    previous tag's end swallowed a newline (or at the template start).
 *  - "-%}", "-}}", "-#}": skip all whitespace after.
 *  - trim_blocks: "%}" and "#}" swallow one newline after ("+%}" doesn't).
 * Inside tags, "}}" and "%}" only end the tag when brackets are balanced.
 * "{% raw %}...{% endraw %}" is one text token.
 */
#include "jinja.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct lexer {
    jctx *c;
    const char *s;
    size_t n, pos;
    int line;
    jtok *toks;
    size_t ntok, cap;
    bool line_starting;
} lexer;

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' ||
           ch == '\v';
}

static int emit(lexer *L, jtok t)
{
    if (L->ntok == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *p = jarena_alloc(&L->c->arena, cap * sizeof(*p));

        if (!p)
            return jctx_nomem(L->c);
        if (L->ntok)
            memcpy(p, L->toks, L->ntok * sizeof(*p));
        L->toks = p;
        L->cap = cap;
    }
    L->toks[L->ntok++] = t;
    return 0;
}

static int count_lines(const char *p, size_t n)
{
    int k = 0;

    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n';
    return k;
}

/* Applies "-" or lstrip to the text [start, end) before a tag and emits it. */
static int emit_text(lexer *L, size_t start, size_t end, char sign,
                     bool is_var)
{
    size_t e = end;
    int line = L->line;

    L->line += count_lines(L->s + start, end - start);
    if (sign == '-') {
        while (e > start && is_ws(L->s[e - 1]))
            e--;
    } else if (sign != '+' && !is_var) {
        size_t l = e;

        while (l > start && L->s[l - 1] != '\n')
            l--;
        if (l > start || L->line_starting) {
            size_t k = l;

            while (k < e && is_ws(L->s[k]))
                k++;
            if (k == e)
                e = l;
        }
    }
    if (e == start)
        return 0;
    return emit(L, (jtok){ .t = JT_TEXT, .line = line, .p = L->s + start,
                           .n = e - start });
}

/* After a tag end at L->pos (past the delimiter): '-' skips whitespace,
 * trim skips one newline. Updates line_starting. */
static void after_end(lexer *L, char sign, bool trim)
{
    size_t p = L->pos;

    if (sign == '-') {
        while (p < L->n && is_ws(L->s[p]))
            p++;
    } else if (trim && sign != '+' && p < L->n && L->s[p] == '\n') {
        p++;
    }
    /* line_starting: did the whole end match (delimiter + skipped) end in \n? */
    L->line_starting = p > L->pos && L->s[p - 1] == '\n';
    L->line += count_lines(L->s + L->pos, p - L->pos);
    L->pos = p;
}

/* ------------------------------------------------------------------------ */
/* Expression tokens                                                         */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Python string literal escapes; unknown escapes keep the backslash. */
static int lex_string(lexer *L)
{
    char q = L->s[L->pos];
    size_t i = L->pos + 1, k = 0;
    char *out;
    int line = L->line;

    out = jarena_alloc(&L->c->arena, L->n - L->pos + 1);
    if (!out)
        return jctx_nomem(L->c);
    for (;; i++) {
        if (i >= L->n)
            return jctx_fail(L->c, "line %d: unterminated string", line);
        char ch = L->s[i];

        if (ch == q)
            break;
        if (ch == '\n')
            L->line++;
        if (ch != '\\' || i + 1 >= L->n) {
            out[k++] = ch;
            continue;
        }
        ch = L->s[++i];
        int nd = ch == 'x' ? 2 : ch == 'u' ? 4 : ch == 'U' ? 8 : 0;

        if (nd) {
            uint32_t cp = 0;

            for (int d = 0; d < nd; d++) {
                int h = i + 1 + d < L->n ? hexval(L->s[i + 1 + d]) : -1;

                if (h < 0)
                    return jctx_fail(L->c, "line %d: bad \\%c escape", line,
                                     ch);
                cp = cp << 4 | (uint32_t)h;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
                return jctx_fail(L->c, "line %d: bad code point", line);
            i += (size_t)nd;
            k += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp,
                                              (utf8proc_uint8_t *)out + k);
            continue;
        }
        switch (ch) {
        case 'n': out[k++] = '\n'; break;
        case 't': out[k++] = '\t'; break;
        case 'r': out[k++] = '\r'; break;
        case '0': out[k++] = '\0'; break;
        case 'a': out[k++] = '\a'; break;
        case 'b': out[k++] = '\b'; break;
        case 'f': out[k++] = '\f'; break;
        case 'v': out[k++] = '\v'; break;
        case '\\': case '\'': case '"': out[k++] = ch; break;
        case '\n': L->line++; break; /* line continuation */
        default:
            out[k++] = '\\';
            out[k++] = ch;
        }
    }
    L->pos = i + 1;
    return emit(L, (jtok){ .t = JT_STRING, .line = line, .p = out, .n = k });
}

static int lex_number(lexer *L)
{
    size_t i = L->pos;
    char buf[64];
    size_t k = 0;
    bool is_float = false;

    while (i < L->n && (isdigit((unsigned char)L->s[i]) || L->s[i] == '_')) {
        if (L->s[i] != '_' && k < sizeof(buf) - 1)
            buf[k++] = L->s[i];
        i++;
    }
    if (i + 1 < L->n && L->s[i] == '.' && isdigit((unsigned char)L->s[i + 1])) {
        is_float = true;
        if (k < sizeof(buf) - 1)
            buf[k++] = '.';
        i++;
        while (i < L->n && (isdigit((unsigned char)L->s[i]) || L->s[i] == '_')) {
            if (L->s[i] != '_' && k < sizeof(buf) - 1)
                buf[k++] = L->s[i];
            i++;
        }
    }
    if (i < L->n && (L->s[i] == 'e' || L->s[i] == 'E')) {
        size_t j = i + 1;

        if (j < L->n && (L->s[j] == '+' || L->s[j] == '-'))
            j++;
        if (j < L->n && isdigit((unsigned char)L->s[j])) {
            is_float = true;
            while (i < j && k < sizeof(buf) - 1)
                buf[k++] = L->s[i++];
            while (i < L->n && isdigit((unsigned char)L->s[i])) {
                if (k < sizeof(buf) - 1)
                    buf[k++] = L->s[i];
                i++;
            }
        }
    }
    buf[k] = '\0';
    jtok t = { .line = L->line, .p = L->s + L->pos, .n = i - L->pos };

    if (is_float) {
        t.t = JT_FLOAT;
        t.f = strtod(buf, NULL);
    } else {
        t.t = JT_INT;
        t.i = strtoll(buf, NULL, 10);
        if (k > 18)
            return jctx_fail(L->c, "line %d: integer too large", L->line);
    }
    L->pos = i;
    return emit(L, t);
}

static const char *const ops[] = { "//", "**", "==", "!=", "<=", ">=", "+", "-",
                                   "*", "/", "%", "~", "<", ">", "=", ".",
                                   ",", ":", "|", "(", ")", "[", "]", "{",
                                   "}", NULL };

/* Lexes the inside of a tag up to its end delimiter ('}' for "}}", '%' for
 * "%}"). Emits the end token and applies its whitespace rule. */
static int lex_tag(lexer *L, char endch, bool trim)
{
    int depth = 0, rc = 0;

    while (!rc) {
        while (L->pos < L->n && is_ws(L->s[L->pos])) {
            L->line += L->s[L->pos] == '\n';
            L->pos++;
        }
        if (L->pos >= L->n)
            return jctx_fail(L->c, "line %d: unexpected end of template, "
                             "expected '%c}'", L->line, endch);
        const char *p = L->s + L->pos;
        size_t rest = L->n - L->pos;
        char sign = 0;

        if (depth == 0) {
            if (rest >= 3 && (p[0] == '-' || p[0] == '+') && p[1] == endch &&
                p[2] == '}')
                sign = p[0];
            if (sign || (rest >= 2 && p[0] == endch && p[1] == '}')) {
                L->pos += sign ? 3 : 2;
                rc = emit(L, (jtok){ .t = endch == '}' ? JT_VAR_END
                                                       : JT_BLOCK_END,
                                     .line = L->line });
                if (!rc)
                    after_end(L, sign, trim);
                return rc;
            }
        }
        if (*p == '\'' || *p == '"') {
            rc = lex_string(L);
        } else if (isdigit((unsigned char)*p)) {
            rc = lex_number(L);
        } else if (isalpha((unsigned char)*p) || *p == '_') {
            size_t k = 1;

            while (k < rest && (isalnum((unsigned char)p[k]) || p[k] == '_'))
                k++;
            L->pos += k;
            rc = emit(L, (jtok){ .t = JT_NAME, .line = L->line, .p = p, .n = k });
        } else {
            size_t k = 0;

            for (int i = 0; ops[i]; i++) {
                size_t m = strlen(ops[i]);

                if (rest >= m && !memcmp(p, ops[i], m)) {
                    k = m;
                    break;
                }
            }
            if (!k)
                return jctx_fail(L->c, "line %d: unexpected character '%c'",
                                 L->line, *p);
            if (*p == '(' || *p == '[' || *p == '{')
                depth++;
            else if ((*p == ')' || *p == ']' || *p == '}') && depth > 0)
                depth--;
            L->pos += k;
            rc = emit(L, (jtok){ .t = JT_OP, .line = L->line, .p = p, .n = k });
        }
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Raw blocks and comments                                                   */

/* At "{%": if the tag is "raw", matches [sign]raw[sign]%} and returns its
 * length and the sign after; 0 otherwise. Also used for "endraw". */
static size_t match_word_tag(const char *p, size_t n, const char *word,
                             char *ret_sign_in, char *ret_sign_out)
{
    size_t i = 2, wl = strlen(word);

    *ret_sign_in = *ret_sign_out = 0;
    if (n < 2 || p[0] != '{' || p[1] != '%')
        return 0;
    if (i < n && (p[i] == '-' || p[i] == '+'))
        *ret_sign_in = p[i++];
    while (i < n && is_ws(p[i]))
        i++;
    if (n - i < wl || memcmp(p + i, word, wl))
        return 0;
    i += wl;
    while (i < n && is_ws(p[i]))
        i++;
    if (i < n && (p[i] == '-' || p[i] == '+'))
        *ret_sign_out = p[i++];
    if (n - i < 2 || p[i] != '%' || p[i + 1] != '}')
        return 0;
    return i + 2;
}

static int lex_raw(lexer *L, size_t len, char sign_out)
{
    size_t start, i;
    char si, so;

    L->pos += len;
    after_end(L, sign_out, false);   /* jinja2: no trim_blocks after raw */
    start = L->pos;
    for (i = start; i + 1 < L->n; i++) {
        size_t m = match_word_tag(L->s + i, L->n - i, "endraw", &si, &so);

        if (!m)
            continue;
        int rc = emit_text(L, start, i, si, false);

        if (rc)
            return rc;
        L->pos = i + m;
        after_end(L, so, true);
        return 0;
    }
    return jctx_fail(L->c, "line %d: missing endraw", L->line);
}

static int lex_comment(lexer *L)
{
    size_t i = L->pos + 2;

    if (i < L->n && (L->s[i] == '-' || L->s[i] == '+'))
        i++;
    for (; i + 1 < L->n; i++) {
        if (L->s[i] != '#' || L->s[i + 1] != '}')
            continue;
        char sign = 0;

        if (i > L->pos + 2 && (L->s[i - 1] == '-' || L->s[i - 1] == '+'))
            sign = L->s[i - 1];
        L->line += count_lines(L->s + L->pos, i - L->pos);
        L->pos = i + 2;
        after_end(L, sign, true);
        return 0;
    }
    return jctx_fail(L->c, "line %d: unterminated comment", L->line);
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                    */

/* Newlines to \n, one trailing newline dropped. */
static int normalize(jctx *c, const char *src, size_t len, char **ret,
                     size_t *ret_n)
{
    char *o = jarena_alloc(&c->arena, len + 1);
    size_t k = 0;

    if (!o)
        return jctx_nomem(c);
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            o[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            o[k++] = src[i];
        }
    }
    if (k && o[k - 1] == '\n')
        k--;
    o[k] = '\0';
    *ret = o;
    *ret_n = k;
    return 0;
}

int jinja_lex(jctx *c, const char *src, size_t len, jtok **ret_toks,
              size_t *ret_n)
{
    lexer L = { .c = c, .line = 1, .line_starting = true };
    char *s = NULL;
    int rc = normalize(c, src, len, &s, &L.n);

    L.s = s;
    while (!rc && L.pos < L.n) {
        const char *p = L.s + L.pos;
        const char *a = NULL;

        /* Next "{{", "{%" or "{#". */
        for (const char *q = memchr(p, '{', L.n - L.pos); q;
             q = memchr(q + 1, '{', (size_t)(L.s + L.n - q - 1))) {
            if (q + 1 < L.s + L.n && (q[1] == '{' || q[1] == '%' || q[1] == '#')) {
                a = q;
                break;
            }
            if (q + 1 >= L.s + L.n)
                break;
        }
        if (!a) {
            rc = emit_text(&L, L.pos, L.n, 0, true);
            L.pos = L.n;
            break;
        }
        size_t at = (size_t)(a - L.s), rest = L.n - at;
        char kind = a[1], sign = rest > 2 && (a[2] == '-' || a[2] == '+')
                                     ? a[2] : 0;
        char si, so;
        size_t rawlen = kind == '%' ? match_word_tag(a, rest, "raw", &si, &so)
                                    : 0;

        rc = emit_text(&L, L.pos, at, sign, kind == '{');
        if (rc)
            break;
        L.pos = at;
        if (rawlen) {
            rc = lex_raw(&L, rawlen, so);
        } else if (kind == '#') {
            rc = lex_comment(&L);
        } else {
            rc = emit(&L, (jtok){ .t = kind == '{' ? JT_VAR_BEGIN
                                                   : JT_BLOCK_BEGIN,
                                  .line = L.line });
            L.pos += sign ? 3 : 2;
            if (!rc)
                rc = lex_tag(&L, kind == '{' ? '}' : '%', kind == '%');
        }
    }
    if (!rc)
        rc = emit(&L, (jtok){ .t = JT_EOF, .line = L.line });
    if (rc)
        return rc;
    *ret_toks = L.toks;
    *ret_n = L.ntok;
    return 0;
}
