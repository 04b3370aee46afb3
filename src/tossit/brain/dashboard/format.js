// Number, size, rate and time formatting (one locale for the whole page).

const LOCALE = "en-US";
const INT = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });
const ONE = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 1, minimumFractionDigits: 0 });
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

export const num = (n) => (n === null || n === undefined || Number.isNaN(n) ? "—" : INT.format(n));

/** 1536 -> "1.5 KiB" (binary units, like the CLI). */
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 ? 0 : v >= 100 ? 0 : v >= 10 ? 1 : 2;
  const text = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: digits, minimumFractionDigits: i === 0 ? 0 : Math.min(digits, 1) }).format(v);
  return `${n < 0 ? "-" : ""}${text} ${UNITS[i]}`;
}

/** Bytes per second as MB/s (decimal, like the CLI's progress bars). */
export function rate(bps) {
  if (bps === null || bps === undefined || Number.isNaN(bps)) return "—";
  const mb = bps / 1e6;
  if (mb >= 100) return `${INT.format(mb)} MB/s`;
  if (mb >= 0.1) return `${ONE.format(mb)} MB/s`;
  if (bps >= 1000) return `${ONE.format(bps / 1e3)} kB/s`;
  return `${INT.format(bps)} B/s`;
}

/** 3725 -> "1 h 2 min" */
export function duration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return "—";
  if (sec > 0 && sec < 9.95) return `${ONE.format(sec)} s`;
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return `${sec} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return m >= 10 || !(sec % 60) ? `${m} min` : `${m} min ${sec % 60} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60 ? `${m % 60} min` : ""}`.trim();
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

/** Seconds since something, as "4 s ago". */
export function ago(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return "never";
  if (sec < 1) return "just now";
  return `${duration(sec)} ago`;
}

export function sinceIso(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : (Date.now() - t) / 1000;
}

const DT = new Intl.DateTimeFormat(LOCALE, { dateStyle: "medium", timeStyle: "medium" });
const TIME = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

export function dateTime(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : DT.format(t);
}

export function clock(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? "" : TIME.format(t);
}

export function pct(part, whole) {
  if (!whole) return 0;
  return Math.max(0, Math.min(100, (part / whole) * 100));
}

export function plural(n, one, many = `${one}s`) {
  return `${num(n)} ${n === 1 ? one : many}`;
}

// Names in the order people expect: "file2" before "file10", case ignored
// ("apple", "Banana", "cherry"). The API cannot page in this order (its name
// order is an index on the lowercased name, so "file10" comes before "file2"),
// so the files page applies it to the page it shows; equal names keep the
// server's order (the sort is stable).
const NAMES = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

export function byNaturalName(items, descending = false) {
  const sign = descending ? -1 : 1;
  return [...items].sort((a, b) => sign * NAMES.compare(a.name, b.name));
}
