// chart.js: the console's charts, drawn by uPlot (the global uPlot, from
// /ui/vendor/uPlot.iife.min.js). Pages never call uPlot themselves.
//
// Every chart reserves its height before it has data (no layout jump),
// follows its container's width, redraws in the theme's colours when the
// system switches between light and dark, and exposes its latest data to
// tests and scripts: data-points="N" (points in view) and
// data-last="v1,v2,..." (the last point's values) on its container.

const dark = window.matchMedia('(prefers-color-scheme: dark)');

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function palette() {
  return {
    fg: cssVar('--fg', '#1f2328'),
    muted: cssVar('--muted', '#667085'),
    grid: cssVar('--grid', 'rgba(0,0,0,0.08)'),
    band: cssVar('--band', 'rgba(220,80,60,0.12)'),
    series: [1, 2, 3, 4, 5, 6].map((i) => cssVar('--chart-' + i, '#3b6fd8')),
  };
}

// cssColor resolves a colour given as a custom property ('--danger').
function cssColor(c) {
  if (!c) return c;
  return c.startsWith('--') ? cssVar(c, '') : c;
}

const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

function lastValues(ys) {
  return ys.map((s) => {
    const v = s && s.length ? s[s.length - 1] : null;
    return v === null || v === undefined || Number.isNaN(v) ? 'null' : String(v);
  });
}

function expose(el, t, ys) {
  el.dataset.points = String(t ? t.length : 0);
  el.dataset.last = t && t.length ? lastValues(ys).join(',') : '';
}

function noLibrary(el) {
  el.replaceChildren();
  const p = document.createElement('p');
  p.className = 'chart-missing';
  p.textContent = 'Charts are unavailable: the chart library did not load.';
  el.appendChild(p);
}

// fillColor makes a translucent fill from a colour in hex (#rrggbb).
function fillColor(c, alpha) {
  const m = /^#([0-9a-f]{6})$/i.exec(c);
  if (!m) return c;
  const n = parseInt(m[1], 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

function pathsFor(kind) {
  if (typeof uPlot === 'undefined' || !uPlot.paths) return undefined;
  if (kind === 'bars') return uPlot.paths.bars({ size: [0.7, 40], align: 1 });
  if (kind === 'step') return uPlot.paths.stepped({ align: 1 });
  return undefined;
}

// managed runs a uPlot chart in el: it builds it from makeOpts() and the
// current data, rebuilds it when the theme changes, and resizes it with el.
// Once built, marker (el unless given) carries data-theme="dark|light":
// the theme it was drawn in.
function managed(el, makeOpts, initial, marker = el) {
  let data = initial;
  let u = null;
  let width = 0;
  const build = () => {
    if (u) u.destroy();
    u = null;
    el.replaceChildren();
    if (typeof uPlot === 'undefined') {
      noLibrary(el);
      return;
    }
    const opts = makeOpts();
    width = Math.max(60, Math.floor(el.clientWidth || opts.width || 300));
    opts.width = width;
    u = new uPlot(opts, data, el);
    marker.dataset.theme = dark.matches ? 'dark' : 'light';
  };
  build();
  const onTheme = () => build();
  dark.addEventListener('change', onTheme);
  let ro = null;
  if (typeof ResizeObserver !== 'undefined') {
    ro = new ResizeObserver(() => {
      if (!u) return;
      const w = Math.max(60, Math.floor(el.clientWidth));
      if (w !== width) {
        width = w;
        u.setSize({ width: w, height: u.height });
      }
    });
    ro.observe(el);
  }
  return {
    set(d) {
      data = d;
      if (u) u.setData(d);
    },
    rebuild: build,
    destroy() {
      dark.removeEventListener('change', onTheme);
      if (ro) ro.disconnect();
      if (u) u.destroy();
      u = null;
    },
  };
}

// timeChart draws series over time (t in unix seconds). update(t, ys,
// {bands, end}) sets the data; bands are [fromSec, toSec] spans to shade
// (for example the autoscaler's panic windows); end, when after the last
// t, draws the last bucket to it (a line or a step holds its last value
// there, a bar ends). The legend, the text summary and data-last show
// the last point of t, never that drawn end.
export function timeChart(el, { title, unit, series, bands, height } = {}) {
  const h = height || 180;
  el.classList.add('chart');
  el.style.minHeight = h + 40 + 'px';
  el.setAttribute('role', 'figure');
  if (title) el.setAttribute('aria-label', title + (unit ? ' (' + unit + ')' : ''));
  let shade = bands || [];
  const inner = document.createElement('div');
  inner.className = 'chart-plot';
  const summary = document.createElement('p');
  summary.className = 'visually-hidden';
  summary.setAttribute('aria-live', 'off');
  el.replaceChildren(inner, summary);
  const empty = [[], ...series.map(() => [])];
  const unitFmt = (v) => (v === null || v === undefined ? '—' : formatValue(v) + (unit ? ' ' + unit : ''));
  // The data as given (t and ys), without the drawn end.
  let real = [[], ...series.map(() => [])];
  // at answers the value of series si (0: time) to show for cursor index
  // idx: the latest given point when the cursor is away or on the end.
  const at = (si, idx, v) => (idx === null || idx === undefined || idx >= real[0].length ? lastOf(real[si]) : v);

  const makeOpts = () => {
    const p = palette();
    return {
      height: h,
      title: undefined,
      legend: { show: true, live: true },
      // Room on the right for the last time label (half a label wide).
      padding: [null, 28, null, null],
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: {
        x: { time: true },
        y: {
          range: (u, min, max) => [Math.min(0, min ?? 0), max === null || max === undefined || max <= 0 ? 1 : max * 1.1],
        },
      },
      axes: [
        { stroke: p.muted, grid: { stroke: p.grid, width: 1 }, ticks: { stroke: p.grid, width: 1 }, font: FONT, space: 64, values: timeTicks },
        {
          stroke: p.muted,
          grid: { stroke: p.grid, width: 1 },
          ticks: { show: false },
          font: FONT,
          size: 56,
          values: (u, vals) => vals.map((v) => formatValue(v)),
        },
      ],
      series: [
        { label: 'Time', value: (u, v, si, idx) => timeLabel(at(0, idx, v)) },
        ...series.map((s, i) => {
          const color = cssColor(s.color) || p.series[i % p.series.length];
          return {
            label: s.label,
            stroke: color,
            width: s.kind === 'bars' ? 0 : 1.75,
            fill: s.kind === 'bars' ? fillColor(color, 0.75) : s.fill ? fillColor(color, 0.12) : undefined,
            dash: s.dash,
            paths: pathsFor(s.kind),
            // A point with no neighbour (one bucket with data between
            // empty ones) draws no line: it shows as a dot.
            points: s.kind === 'bars' ? { show: false } : { show: true, size: 5, width: 0, fill: color, filter: lonely },
            spanGaps: false,
            // Without the cursor over the chart, the legend shows the
            // latest point.
            value: (u, v, si, idx) => unitFmt(at(si, idx, v)),
          };
        }),
      ],
      hooks: {
        drawClear: [
          (u) => {
            if (!shade.length) return;
            const ctx = u.ctx;
            ctx.save();
            ctx.fillStyle = p.band;
            for (const [from, to] of shade) {
              const x0 = Math.max(u.bbox.left, u.valToPos(from, 'x', true));
              const x1 = Math.min(u.bbox.left + u.bbox.width, u.valToPos(to, 'x', true));
              if (x1 > x0) ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
            }
            ctx.restore();
          },
        ],
      },
    };
  };
  const m = managed(inner, makeOpts, empty, el);
  expose(el, [], []);
  return {
    update(t, ys, opts = {}) {
      if (opts.bands) shade = opts.bands;
      real = [t, ...ys];
      const n = t.length;
      if (n && opts.end > t[n - 1]) {
        m.set([[...t, opts.end], ...ys.map((y, i) => [...y, series[i].kind === 'bars' ? null : y[n - 1]])]);
      } else m.set(real);
      expose(el, t, ys);
      const last = lastValues(ys);
      summary.textContent =
        (title || 'Chart') + ': ' + series.map((s, i) => s.label + ' ' + (last[i] === 'null' ? 'no data' : formatValue(Number(last[i])))).join(', ') + ' at the latest point.';
    },
    destroy() {
      m.destroy();
    },
  };
}

// lonely answers the indexes of series si's points that have a value and
// no neighbour with one.
function lonely(u, si) {
  const d = u.data[si] || [];
  const out = [];
  for (let i = 0; i < d.length; i++) {
    if (d[i] == null) continue;
    if ((i === 0 || d[i - 1] == null) && (i === d.length - 1 || d[i + 1] == null)) out.push(i);
  }
  return out;
}

function lastOf(a) {
  return a && a.length ? a[a.length - 1] : null;
}

function timeLabel(sec) {
  if (sec === null || sec === undefined) return '—';
  return new Date(sec * 1000).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// timeTicks labels the time axis: hours and minutes within two days,
// else the day.
function timeTicks(u, splits) {
  const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
  return splits.map((s) => {
    const d = new Date(s * 1000);
    if (span > 2 * 86400) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
    return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  });
}

function formatValue(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1e9) return +(v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return +(v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return +(v / 1e3).toFixed(1) + 'k';
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  if (a >= 1) return String(+v.toFixed(1));
  return String(+v.toPrecision(2));
}

// sparkline draws a small line of values (one per step, oldest first) in
// el; it answers {update(values), destroy()}.
export function sparkline(el, values, { label, color } = {}) {
  el.classList.add('spark');
  el.setAttribute('role', 'img');
  let vals = values || [];
  const aria = () => {
    const last = vals.length ? vals[vals.length - 1] : null;
    const total = vals.reduce((a, b) => a + (b || 0), 0);
    el.setAttribute('aria-label', `${label || 'Trend'}: ${formatValue(total)} in the window, ${formatValue(last ?? 0)} in the latest step`);
  };
  const xs = (n) => Array.from({ length: n }, (_, i) => i);
  const height = 28;
  // color may be a function of the values (for example grey while a
  // count of errors is all zeros, red once it is not).
  const pick = () => (typeof color === 'function' ? color(vals) : color);
  let picked = pick();
  const makeOpts = () => {
    const p = palette();
    const c = cssColor(pick()) || p.series[0];
    return {
      height,
      width: 120,
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(1, max ?? 0) * 1.1] } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: c, width: 1.5, fill: fillColor(c, 0.15), points: { show: false } }],
      padding: [2, 1, 2, 1],
    };
  };
  const m = managed(el, makeOpts, [xs(vals.length), vals]);
  expose(el, vals, [vals]);
  aria();
  return {
    update(v) {
      vals = v || [];
      const now = pick();
      if (now !== picked) {
        picked = now;
        m.set([xs(vals.length), vals]);
        m.rebuild();
      } else m.set([xs(vals.length), vals]);
      expose(el, vals, [vals]);
      aria();
    },
    destroy() {
      m.destroy();
    },
  };
}

// xyChart draws y series against a numeric x (for example monthly cost
// against requests per second); it answers {update(xs, ys), destroy()}.
export function xyChart(el, { title, xLabel, yLabel, series, height }, xs, ys) {
  const h = height || 220;
  el.classList.add('chart');
  el.style.minHeight = h + 40 + 'px';
  el.setAttribute('role', 'figure');
  if (title) el.setAttribute('aria-label', title);
  const inner = document.createElement('div');
  inner.className = 'chart-plot';
  el.replaceChildren(inner);
  const makeOpts = () => {
    const p = palette();
    return {
      height: h,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false }, y: { range: (u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.1 : 1] } },
      axes: [
        { label: xLabel, stroke: p.muted, grid: { stroke: p.grid }, ticks: { stroke: p.grid }, font: FONT, labelFont: FONT, values: (u, v) => v.map(formatValue) },
        { label: yLabel, stroke: p.muted, grid: { stroke: p.grid }, ticks: { show: false }, font: FONT, labelFont: FONT, size: 60, values: (u, v) => v.map(formatValue) },
      ],
      series: [
        { label: xLabel || 'x', value: (u, v) => formatValue(v) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: cssColor(s.color) || p.series[i % p.series.length],
          width: 2,
          dash: s.dash,
          points: { show: false },
          value: (u, v) => formatValue(v),
        })),
      ],
    };
  };
  const m = managed(inner, makeOpts, [xs || [], ...(ys || series.map(() => []))], el);
  expose(el, xs || [], ys || []);
  return {
    update(nx, ny) {
      m.set([nx, ...ny]);
      expose(el, nx, ny);
    },
    destroy() {
      m.destroy();
    },
  };
}
