-- SPDX-License-Identifier: MIT
-- wrk script for bench/load.sh: every request is a short POST /generate
-- on the embedded model (a few tokens, fixed seed), so the figures measure
-- the serving path (routing, admission, tokenizing, decoding, JSON) rather
-- than long generations.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"stories260K","prompt":"Once upon a time",' ..
           '"max_tokens":16,"temperature":0.8,"seed":7}'
