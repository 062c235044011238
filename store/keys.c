/* SPDX-License-Identifier: MIT */
/*
 * keys.c - API keys and per-key usage counters (migration 0002).
 *
 * The store never sees a secret: callers hash it (sha256, lower-case hex)
 * and look keys up by that hash. Keys are revoked, never deleted, so the
 * owner ids on datasets and jobs keep naming a key. Usage counters are one
 * row per key, created on first use by an upsert that adds to them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-impl.h"

#define KEY_COLS "id, name, role, hash, prefix, created_at, revoked_at"

static const char SQL_INSERT[] =
    "INSERT INTO api_keys (" KEY_COLS ") VALUES (?,?,?,?,?,?,NULL)";
static const char SQL_GET[] = "SELECT " KEY_COLS " FROM api_keys WHERE id = ?";
static const char SQL_BY_HASH[] =
    "SELECT " KEY_COLS " FROM api_keys WHERE hash = ?";
static const char SQL_BY_NAME[] =
    "SELECT " KEY_COLS " FROM api_keys WHERE name = ? AND revoked_at IS NULL";
static const char SQL_LIST_ACTIVE[] =
    "SELECT " KEY_COLS " FROM api_keys WHERE revoked_at IS NULL ORDER BY seq";
static const char SQL_LIST_ALL[] =
    "SELECT " KEY_COLS " FROM api_keys ORDER BY seq";
static const char SQL_COUNT_ACTIVE[] =
    "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL";
static const char SQL_REVOKE[] =
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1";
static const char SQL_USAGE_ADD[] =
    "INSERT INTO key_usage (key_id, tokens_trained, tokens_generated,"
    " cpu_seconds, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (key_id) DO UPDATE SET"
    "  tokens_trained = tokens_trained + excluded.tokens_trained,"
    "  tokens_generated = tokens_generated + excluded.tokens_generated,"
    "  cpu_seconds = cpu_seconds + excluded.cpu_seconds,"
    "  updated_at = excluded.updated_at";
#define USAGE_SELECT \
    "SELECT k.id, coalesce(u.tokens_trained, 0)," \
    " coalesce(u.tokens_generated, 0), coalesce(u.cpu_seconds, 0)," \
    " coalesce(u.updated_at, 0)" \
    " FROM api_keys k LEFT JOIN key_usage u ON u.key_id = k.id"
static const char SQL_USAGE_GET[] = USAGE_SELECT " WHERE k.id = ?";
static const char SQL_USAGE_LIST[] = USAGE_SELECT " ORDER BY k.seq";

static bool is_hex64(const char *h)
{
    size_t n = 0;
    for (; h[n]; n++)
        if (!((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'f')))
            return false;
    return n == 64;
}

static int read_key(sqlite3_stmt *st, void *row)
{
    store_key *k = row;
    memset(k, 0, sizeof(*k));
    store_col_text(st, 0, k->id, sizeof(k->id));
    store_col_text(st, 1, k->name, sizeof(k->name));
    store_col_text(st, 2, k->role, sizeof(k->role));
    store_col_text(st, 3, k->hash, sizeof(k->hash));
    store_col_text(st, 4, k->prefix, sizeof(k->prefix));
    k->created_at = store_col_int64(st, 5);
    k->revoked_at = store_col_int64(st, 6);
    return 0;
}

static int read_usage(sqlite3_stmt *st, void *row)
{
    store_key_usage *u = row;
    memset(u, 0, sizeof(*u));
    store_col_text(st, 0, u->key_id, sizeof(u->key_id));
    u->tokens_trained = store_col_int64(st, 1);
    u->tokens_generated = store_col_int64(st, 2);
    u->cpu_seconds = sqlite3_column_double(st, 3);
    u->updated_at = store_col_int64(st, 4);
    return 0;
}

static const store_rowtype key_row = { sizeof(store_key), read_key, NULL };
static const store_rowtype usage_row = { sizeof(store_key_usage), read_usage,
                                         NULL };

/* Runs sql with one text argument and reads one key row. */
static int get_one(store *s, const char *sql, const char *arg, store_key *ret)
{
    if (!arg || !ret)
        return -EINVAL;
    store_lock(s);
    int r = store_query_row(s, sql, &key_row, ret, "t", arg);
    store_unlock(s);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                      */

int store_key_insert(store *s, const store_key *k)
{
    if (!k || !k->id[0] || !k->name[0] || !is_hex64(k->hash))
        return -EINVAL;
    store_lock(s);
    int r = store_exec(s, SQL_INSERT, NULL, "tttttI", k->id, k->name, k->role,
                       k->hash, k->prefix,
                       k->created_at > 0 ? k->created_at : store_now());
    store_unlock(s);
    return r;
}

int store_key_get(store *s, const char *id, store_key *ret)
{
    return get_one(s, SQL_GET, id, ret);
}

int store_key_find_hash(store *s, const char *hash, store_key *ret)
{
    return get_one(s, SQL_BY_HASH, hash, ret);
}

int store_key_find_name(store *s, const char *name, store_key *ret)
{
    return get_one(s, SQL_BY_NAME, name, ret);
}

int store_key_list(store *s, bool include_revoked, store_key **ret,
                   int *ret_n)
{
    if (!ret || !ret_n)
        return -EINVAL;
    store_lock(s);
    int r = store_query_rows(s, include_revoked ? SQL_LIST_ALL
                                                : SQL_LIST_ACTIVE,
                             &key_row, (void **)ret, ret_n, "");
    store_unlock(s);
    return r;
}

int store_key_count_active(store *s, int *ret_n)
{
    if (!ret_n)
        return -EINVAL;
    int64_t n;
    store_lock(s);
    int r = store_query_int64(s, SQL_COUNT_ACTIVE, &n, "");
    store_unlock(s);
    if (r == 0)
        *ret_n = (int)n;
    return r;
}

int store_key_revoke(store *s, const char *id)
{
    if (!id)
        return -EINVAL;
    int changed = 0;
    store_lock(s);
    int r = store_exec(s, SQL_REVOKE, &changed, "tI", id, store_now());
    store_unlock(s);
    return r == 0 && changed == 0 ? -ENOENT : r;
}

/* ------------------------------------------------------------------------ */
/* Usage                                                                     */

int store_key_usage_add(store *s, const char *key_id, int64_t tokens_trained,
                        int64_t tokens_generated, double cpu_seconds)
{
    if (!key_id || tokens_trained < 0 || tokens_generated < 0 ||
        !(cpu_seconds >= 0))
        return -EINVAL;
    store_lock(s);
    /* unknown key: FK -> -ENOENT */
    int r = store_exec(s, SQL_USAGE_ADD, NULL, "tIIdI", key_id,
                       tokens_trained, tokens_generated, cpu_seconds,
                       store_now());
    store_unlock(s);
    return r;
}

int store_key_usage_get(store *s, const char *key_id, store_key_usage *ret)
{
    if (!key_id || !ret)
        return -EINVAL;
    store_lock(s);
    int r = store_query_row(s, SQL_USAGE_GET, &usage_row, ret, "t", key_id);
    store_unlock(s);
    return r;
}

int store_key_usage_list(store *s, store_key_usage **ret, int *ret_n)
{
    if (!ret || !ret_n)
        return -EINVAL;
    store_lock(s);
    int r = store_query_rows(s, SQL_USAGE_LIST, &usage_row, (void **)ret,
                             ret_n, "");
    store_unlock(s);
    return r;
}
