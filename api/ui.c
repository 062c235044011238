/* SPDX-License-Identifier: MIT */
/*
 * ui.c - serves the dashboard (web/) from the arrays compiled into the
 * binary: GET / and GET /ui answer index.html, GET /ui/{name} one file.
 *
 * Every answer carries a strong ETag (a hash of the file made at build
 * time) and "Cache-Control: no-cache": browsers keep the files but ask
 * each time, and a matching If-None-Match is a 304 without a body, so a
 * new binary's files are picked up at once and an unchanged one costs a
 * few bytes. The files need no API key (they hold no data); the page
 * itself asks for a key when the API answers 401. A Content-Security-
 * Policy keeps the page to its own origin: nothing is loaded from the
 * network at runtime.
 */
#include "api/api-impl.h"
#include "api/ui.h"

#include <stdlib.h>
#include <string.h>

static const char csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const api_ui_asset *api_ui_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < api_ui_n_assets; i++)
        if (strcmp(api_ui_assets[i].name, name) == 0)
            return &api_ui_assets[i];
    return NULL;
}

int api_ui_etag_matches(const char *inm, const char *etag)
{
    if (!inm || !etag)
        return 0;
    size_t el = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == el && strncmp(p, etag, el) == 0)
            return 1;
        p += n;
    }
    return 0;
}

void api_h_ui(api_call *c)
{
    const char *name = c->id[0] ? c->id : "index.html";
    const api_ui_asset *a = api_ui_find(name);
    if (!a) {
        char msg[128];
        snprintf(msg, sizeof(msg), "no dashboard file named '%.64s'", name);
        api_error(c->res, 404, "not_found", msg, -1, NULL);
        return;
    }
    api_response *r = c->res;
    api_response_header(r, "ETag", a->etag);
    api_response_header(r, "Cache-Control", "no-cache");
    api_response_header(r, "X-Content-Type-Options", "nosniff");
    if (api_ui_etag_matches(c->req->if_none_match, a->etag)) {
        r->status = 304;
        r->content_type = NULL;
        return;
    }
    api_response_header(r, "Content-Security-Policy", csp);
    char *body = malloc(a->len + 1);
    if (!body) {
        api_error(r, 503, "out_of_memory", "out of memory", -1, NULL);
        return;
    }
    memcpy(body, a->data, a->len + 1);
    r->status = 200;
    r->content_type = a->content_type;
    r->body = body;
    r->body_len = a->len;
}
