#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch peer for bench/bench_engine: the same Llama shape, the same LoRA
configuration and the same batch, run at PyTorch's best on this machine
(OMP_WAIT_POLICY=PASSIVE is set by the caller; threads = the engine's).

Prints one line per figure as `peer <shape> <metric> <value>` so the bench
program can put them beside its own. Needs Debian's python3-torch (run with
/usr/bin/python3)."""
import argparse, math, resource, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {
    # name: dim, hidden, layers, heads, kv_heads, vocab, tied
    "stories260K": (64, 172, 5, 8, 4, 512, True),
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152, True),
}


class LoRALinear(nn.Module):
    def __init__(self, i, o, r=0, alpha=16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) * 0.02, requires_grad=False)
        self.r = r
        if r:
            self.A = nn.Parameter(torch.randn(r, i) * (1.0 / math.sqrt(i)))
            self.B = nn.Parameter(torch.zeros(o, r))
            self.scale = alpha / r

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.r:
            y = y + F.linear(F.linear(x, self.A), self.B) * self.scale
        return y


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), -1) * sin


class Block(nn.Module):
    def __init__(self, dim, hidden, heads, kv, r):
        super().__init__()
        hd = dim // heads
        self.heads, self.kv, self.hd = heads, kv, hd
        self.n1, self.n2 = RMSNorm(dim), RMSNorm(dim)
        self.q = LoRALinear(dim, heads * hd, r)
        self.k = LoRALinear(dim, kv * hd, r)
        self.v = LoRALinear(dim, kv * hd, r)
        self.o = LoRALinear(heads * hd, dim, r)
        self.g = LoRALinear(dim, hidden)
        self.u = LoRALinear(dim, hidden)
        self.d = LoRALinear(hidden, dim)

    def forward(self, x, cos, sin, cache=None, pos=0):
        B, T, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.kv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat((cache[0], k), 2)
                v = torch.cat((cache[1], v), 2)
            cache[0], cache[1] = k, v
        rep = self.heads // self.kv
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        S = k.shape[2]
        if T > 1:
            mask = torch.full((T, S), float("-inf")).triu(S - T + 1)
            att = att + mask
        y = att.softmax(-1) @ v
        x = x + self.o(y.transpose(1, 2).reshape(B, T, -1))
        h = self.n2(x)
        return x + self.d(F.silu(self.g(h)) * self.u(h))


class Model(nn.Module):
    def __init__(self, shape, r):
        super().__init__()
        dim, hidden, layers, heads, kv, vocab, tied = shape
        self.emb = nn.Parameter(torch.randn(vocab, dim) * 0.02, requires_grad=False)
        self.blocks = nn.ModuleList(Block(dim, hidden, heads, kv, r) for _ in range(layers))
        self.norm = RMSNorm(dim)
        hd = dim // heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        t = torch.arange(4096).float()
        f = torch.outer(t, inv)
        self.cos = torch.cat((f, f), -1).cos()
        self.sin = torch.cat((f, f), -1).sin()

    def forward(self, ids, caches=None, pos=0, last_only=False):
        T = ids.shape[1]
        x = F.embedding(ids, self.emb)
        cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
        for i, b in enumerate(self.blocks):
            x = b(x, cos, sin, None if caches is None else caches[i], pos)
        if last_only:  # inference needs the last row's logits only
            x = x[:, -1:]
        return F.linear(self.norm(x), self.emb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="smollm2-135m", choices=SHAPES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--prefill-only", action="store_true",
                    help="only the prefill figure (bench_serve)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shape = SHAPES[a.shape]
    vocab = shape[5]
    # prefill-only: the plain base model (bench_serve measures the base)
    m = Model(shape, r=0 if a.prefill_only else 8)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = None if a.prefill_only else torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, vocab, (a.batch, a.seq + 1))
    # LoRA training: one warm-up step, then timed steps.
    def step():
        logits = m(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    if not a.prefill_only:
        step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        dt = time.perf_counter() - t0
        print(f"peer {a.shape} train_tok_s {a.batch * a.seq * a.steps / dt:.1f}", flush=True)
        rss_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peer {a.shape} train_peak_rss_mib {rss_train:.0f}", flush=True)
    with torch.no_grad():
        # Prefill: the prompt through a fresh KV cache, logits of the last
        # row only (as an inference server does); best of 3 after a warm-up.
        p = ids[:1, :a.seq]
        best = float("inf")
        for i in range(4):
            caches = [[None, None] for _ in m.blocks]
            t0 = time.perf_counter()
            logits = m(p, caches, 0, last_only=True)
            dt = time.perf_counter() - t0
            if i:
                best = min(best, dt)
        print(f"peer {a.shape} prefill_tok_s {a.seq / best:.1f}", flush=True)
        if a.prefill_only:
            return 0
        # Batch-1 decode, greedy, continuing after the prompt.
        tok = logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for i in range(a.decode):
            logits = m(tok, caches, a.seq + i)
            tok = logits[:, -1:].argmax(-1)
        dt = time.perf_counter() - t0
        print(f"peer {a.shape} decode_tok_s {a.decode / dt:.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
