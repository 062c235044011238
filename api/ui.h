/* SPDX-License-Identifier: MIT */
/*
 * ui.h - the dashboard's files, built into the binary (web/embed.py writes
 * ui_assets.c from web/ at build time), and the handler that serves them.
 */
#ifndef TUNA_API_UI_H
#define TUNA_API_UI_H

#include <stddef.h>

typedef struct api_ui_asset {
    const char *name;          /* base name, e.g. "app.js" */
    const char *content_type;
    const unsigned char *data; /* NUL-terminated copy, len bytes */
    size_t len;
    const char *etag;          /* quoted, strong: "\"0123abcd...\"" */
} api_ui_asset;

extern const api_ui_asset api_ui_assets[];
extern const size_t api_ui_n_assets;

/* The asset of that name, or NULL. */
const api_ui_asset *api_ui_find(const char *name);
/* Whether an If-None-Match header value matches etag ("*", a list, weak
 * forms W/"..." included). NULL matches nothing. */
int api_ui_etag_matches(const char *if_none_match, const char *etag);

struct api_call;
/* GET / and /ui: index.html; GET /ui/{name}: that file. No API key needed:
 * the page asks for one when the API answers 401. */
void api_h_ui(struct api_call *c);

#endif
