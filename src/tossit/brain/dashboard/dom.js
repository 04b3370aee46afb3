// DOM helpers. Every piece of text goes in through text nodes (never innerHTML),
// so file names, node names and event messages can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "disabled" || k === "checked" || k === "hidden" || k === "indeterminate") el[k] = Boolean(v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h("a", {href: "#/x", class: "y"}, "text", child…) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs && (attrs instanceof Node || typeof attrs !== "object" || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  apply(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** A small inline icon (paths drawn at 24×24, stroked with currentColor). */
const ICONS = {
  overview: ["M3 13h8V3H3z", "M13 21h8V11h-8z", "M3 21h8v-6H3z", "M13 3v6h8V3z"],
  nodes: ["M4 5h16v5H4z", "M4 14h16v5H4z", "M8 7.5h.01", "M8 16.5h.01"],
  files: ["M14 3H6a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V9z", "M14 3v6h6"],
  folder: ["M3 6a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"],
  activity: ["M3 12h4l3 8 4-16 3 8h4"],
  upload: ["M12 16V4", "M7 9l5-5 5 5", "M4 20h16"],
  download: ["M12 4v12", "M7 11l5 5 5-5", "M4 20h16"],
  trash: ["M4 7h16", "M10 11v6", "M14 11v6", "M6 7l1 13h10l1-13", "M9 7V4h6v3"],
  x: ["M6 6l12 12", "M18 6L6 18"],
  retry: ["M4 4v6h6", "M20 20v-6h-6", "M5.5 15a7 7 0 0 0 12.4 2", "M18.5 9A7 7 0 0 0 6.1 7"],
  signout: ["M15 4h4v16h-4", "M10 8l-4 4 4 4", "M6 12h10"],
  info: ["M12 8h.01", "M11 12h1v5h1", "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z"],
  warning: ["M12 3L2 20h20z", "M12 10v4", "M12 17h.01"],
  check: ["M5 12l5 5 9-10"],
  back: ["M15 5l-7 7 7 7"],
};

export function icon(name, cls = "icon") {
  const svg = s("svg", { class: cls, viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" });
  for (const d of ICONS[name] || []) svg.append(s("path", { d }));
  return svg;
}

/**
 * Make parent's children look like `kids`, keeping the nodes that did not
 * change (so focus, hover and selection survive a live update). Descends
 * `depth` levels into elements of the same tag and class.
 */
export function morph(parent, kids, depth = 2) {
  kids = kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false)
    .map((k) => (k instanceof Node ? k : document.createTextNode(String(k))));
  const old = [...parent.childNodes];
  kids.forEach((kid, i) => {
    const was = old[i];
    if (!was) parent.append(kid);
    else if (was.isEqualNode(kid)) return;
    else if (depth > 0 && was.nodeType === 1 && kid.nodeType === 1 && was.tagName === kid.tagName
      && was.className === kid.className && was.childNodes.length && kid.childNodes.length) {
      for (const attr of [...was.attributes]) if (!kid.hasAttribute(attr.name)) was.removeAttribute(attr.name);
      for (const attr of [...kid.attributes]) {
        if (attr.name === "style") was.style.cssText = kid.style.cssText; // CSSOM: allowed by the CSP
        else if (was.getAttribute(attr.name) !== attr.value) was.setAttribute(attr.name, attr.value);
      }
      morph(was, [...kid.childNodes], depth - 1);
    } else parent.replaceChild(kid, was);
  });
  for (let i = kids.length; i < old.length; i++) old[i].remove();
}
