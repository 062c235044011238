// SPDX-License-Identifier: MIT
// Loss curves drawn as SVG by the page itself: training loss as a line,
// validation loss as a line with markers, shared step axis, "nice" ticks.
// Redraws at most once a frame however fast points arrive, and on resize.

import { h } from './util.js';

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo;
  const step0 = span / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(step0));
  const norm = step0 / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const t0 = Math.floor(lo / step) * step;
  const ticks = [];
  for (let t = t0; t <= hi + step * 0.5; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

export class LossChart {
  constructor(title) {
    this.train = [];   // [step, loss]
    this.val = [];
    this.total = 0;    // total steps, for the x axis while running
    this.svg = s('svg', { class: 'chart', role: 'img' });
    this.titleEl = s('title', {}, title || 'Loss');
    this.descEl = s('desc', {}, 'No points yet.');
    this.summary = h('p', { class: 'chart-summary muted' }, 'Waiting for the first step…');
    this.legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
      h('li', { class: 'lg-train' }, 'training loss'),
      h('li', { class: 'lg-val' }, 'validation loss'));
    this.el = h('figure', { class: 'chart-wrap' }, this.svg, this.legend, this.summary);
    this.pending = false;
    this.ro = new ResizeObserver(() => this.schedule());
    this.ro.observe(this.el);
  }

  destroy() { this.ro.disconnect(); }

  addTrain(step, loss) {
    if (!Number.isFinite(loss)) return;
    const last = this.train[this.train.length - 1];
    if (last && last[0] === step) last[1] = loss; else this.train.push([step, loss]);
    this.schedule();
  }

  addVal(step, loss) {
    if (!Number.isFinite(loss)) return;
    const last = this.val[this.val.length - 1];
    if (last && last[0] === step) last[1] = loss; else this.val.push([step, loss]);
    this.schedule();
  }

  setTotal(n) { if (n > 0 && n !== this.total) { this.total = n; this.schedule(); } }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const W = Math.max(280, Math.round(this.el.clientWidth || 600));
    const H = W < 500 ? 220 : 280;
    const m = { l: 52, r: 14, t: 12, b: 34 };
    const svg = this.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.dataset.trainPoints = this.train.length;
    svg.dataset.valPoints = this.val.length;
    svg.append(this.titleEl, this.descEl);
    const all = this.train.concat(this.val);
    const xmax = Math.max(this.total, ...all.map((p) => p[0]), 1);
    let ylo = Math.min(...all.map((p) => p[1]));
    let yhi = Math.max(...all.map((p) => p[1]));
    if (!all.length) { ylo = 0; yhi = 3; }
    ylo = Math.max(0, ylo - (yhi - ylo) * 0.08);
    yhi += (yhi - ylo) * 0.05 || 0.5;
    const yt = niceTicks(ylo, yhi, 5);
    ylo = Math.min(ylo, yt[0]);
    yhi = Math.max(yhi, yt[yt.length - 1]);
    const xt = niceTicks(0, xmax, W < 500 ? 4 : 8).filter((t) => t <= xmax);
    const X = (x) => m.l + (x / xmax) * (W - m.l - m.r);
    const Y = (y) => m.t + (1 - (y - ylo) / (yhi - ylo)) * (H - m.t - m.b);
    const grid = s('g', { class: 'grid' });
    for (const t of yt) {
      grid.append(s('line', { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t) }));
      grid.append(s('text', { x: m.l - 6, y: Y(t) + 4, 'text-anchor': 'end' }, Number(t.toPrecision(3))));
    }
    for (const t of xt) {
      grid.append(s('line', { class: 'xgrid', x1: X(t), x2: X(t), y1: m.t, y2: H - m.b }));
      grid.append(s('text', { x: X(t), y: H - m.b + 16, 'text-anchor': 'middle' }, t));
    }
    grid.append(s('text', { class: 'axis-label', x: (m.l + W - m.r) / 2, y: H - 3, 'text-anchor': 'middle' }, 'step'));
    grid.append(s('text', { class: 'axis-label', x: 12, y: m.t + (H - m.t - m.b) / 2, 'text-anchor': 'middle',
      transform: `rotate(-90 12 ${m.t + (H - m.t - m.b) / 2})` }, 'loss'));
    svg.append(grid);
    const path = (pts) => pts.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
    if (this.train.length) svg.append(s('path', { class: 'line-train', d: path(this.train) }));
    if (this.val.length) {
      svg.append(s('path', { class: 'line-val', d: path(this.val) }));
      const g = s('g', { class: 'pts-val' });
      for (const p of this.val) g.append(s('circle', { cx: X(p[0]), cy: Y(p[1]), r: 3.5 }));
      svg.append(g);
    }
    const lt = this.train[this.train.length - 1];
    const lv = this.val[this.val.length - 1];
    let txt = 'No points yet.';
    if (lt) {
      txt = `Training loss ${this.train[0][1].toFixed(3)} at step ${this.train[0][0]} → ` +
        `${lt[1].toFixed(3)} at step ${lt[0]}` + (this.total ? ` of ${this.total}` : '') + '.';
      if (lv) txt += ` Validation loss ${lv[1].toFixed(3)} at step ${lv[0]} (${this.val.length} evaluations).`;
    }
    this.descEl.textContent = txt;
    this.summary.textContent = lt ? txt : 'Waiting for the first step…';
  }
}
