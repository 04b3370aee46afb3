// Trash: deleted and overwritten files, kept for trash_keep (7 days by default).
// Restore (readwrite) or delete forever and empty (admin: the trash is the
// safety net against a readwrite key deleting what it should not).

import { api, get, whyNot } from "./api.js";
import { h, replace } from "./dom.js";
import { bytes, dateTime, duration, num, plural, sinceIso } from "./format.js";
import { on, role, state } from "./store.js";
import { actionButton, confirmDialog, emptyState, openDialog, pageHeader, toast, whyIdOf } from "./ui.js";

const PAGE = 200;

/** The sentence a delete dialog shows: where the file (or `n` files) go. */
export function deleteNote(n = 1) {
  const keep = state.status && state.status.trash ? state.status.trash.keep_s : null;
  const it = n === 1 ? "It disappears" : "They disappear";
  if (!keep) return `${it} from listings at once. This cannot be undone.`;
  return `${it} from listings at once and ${n === 1 ? "goes" : "go"} to the trash, restorable for ${duration(keep)}.`;
}

/** "in trash: 1.2 GiB, freed within 7 d or by emptying the trash" (the capacity card). */
export function trashLine(st) {
  const t = st && st.trash;
  if (!t || !t.files) return null;
  const within = t.keep_s ? `within ${duration(t.keep_s)} or ` : "";
  return h("p", { class: "muted small trash-line", id: "cap-trash" },
    h("a", { href: "#/trash" }, `In trash: ${bytes(t.bytes)}`),
    ` (${plural(t.files, "file")}), freed ${within}by emptying the trash`);
}

function untilText(iso) {
  const left = -sinceIso(iso);
  return left > 0 ? `in ${duration(left)}` : "soon";
}

export function mount(root) {
  const restoreNote = whyNot(role(), "readwrite");
  const adminNote = whyNot(role(), "admin");
  const summary = h("span", { class: "muted", id: "trash-total", role: "status" });
  const emptyBtn = actionButton("Empty trash", {
    kind: "danger", iconName: "trash", small: false, attrs: { id: "trash-empty" },
    why: adminNote ? `${adminNote} to delete files for good` : null,
  });
  // The rows' "Delete forever" point at the Empty button's reason (the same one).
  const purgeWhyId = whyIdOf(emptyBtn);
  const head = pageHeader("Trash", null, emptyBtn);
  head.firstChild.append(summary);
  const body = h("tbody");
  const table = h("table", { class: "table trash-table responsive", id: "trash-table" },
    h("thead", h("tr",
      h("th", { scope: "col" }, "Name"), h("th", { scope: "col", class: "num" }, "Size"),
      h("th", { scope: "col" }, "Why"), h("th", { scope: "col" }, "Deleted"),
      h("th", { scope: "col" }, "Purged"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
    body);
  const card = h("section", { class: "card flush table-wrap" }, table);
  const note = h("p", { class: "muted small trash-note" });
  root.append(head, note, card);

  let files = [];
  let total = 0;
  let inflight = false;

  const load = async () => {
    if (restoreNote) {
      replace(body, h("tr", h("td", { colspan: "6" }, emptyState(`${restoreNote} to see the trash`,
        "Deleted files stay restorable here; ask someone with a readwrite or admin key."))));
      return;
    }
    if (inflight) return;
    inflight = true;
    try {
      const data = await get(`/api/trash?limit=${PAGE}`);
      files = data.files;
      total = data.total;
      summary.textContent = `${plural(total, "file")} · ${bytes(data.bytes)}`;
      note.textContent = data.keep_s
        ? `Deleted and overwritten files stay here ${duration(data.keep_s)}, then they are deleted for good. Their bytes still count in the capacity figures.`
        : "The trash is off (trash_keep = 0): deletes free their space at once. Files trashed before stay until their time is up.";
      render();
    } catch (exc) {
      replace(body, h("tr", h("td", { colspan: "6" }, emptyState("Could not load the trash", exc.message))));
    } finally {
      inflight = false;
    }
  };

  const restore = async (f) => {
    const nameInput = h("input", { id: "restore-name", type: "text", value: f.name, autocomplete: "off", spellcheck: "false" });
    const conflict = h("select", { id: "restore-conflict" },
      h("option", { value: "fail" }, "Fail (keep the file there)"),
      h("option", { value: "rename" }, "Keep both (restore as \"name (2)\")"),
      h("option", { value: "replace" }, "Replace it (that file goes to the trash)"));
    const done = await openDialog({
      title: "Restore this file?",
      body: [
        h("p", h("strong", { class: "break" }, f.name), ` (${bytes(f.size)}), deleted ${dateTime(f.deleted)}`),
        h("label", { for: "restore-name" }, "Restore as"), nameInput,
        h("label", { for: "restore-conflict" }, "If a file has that name now"), conflict],
      actions: [{ label: "Cancel", value: "cancel", kind: "ghost" }, { label: "Restore", value: "ok", kind: "primary" }],
      onAction: async () => {
        const p = new URLSearchParams({ on_conflict: conflict.value });
        const name = nameInput.value.trim();
        if (name && name !== f.name) p.set("name", name);
        let data;
        try {
          ({ data } = await api(`/api/trash/${f.id}/restore?${p}`, { method: "POST" }));
        } catch (exc) {
          // The API's words name its parameters; this dialog's choices are below.
          if (exc.code === "name_taken") {
            throw new Error(`A file named ${name || f.name} exists now: choose "Keep both" or "Replace it" below, or restore it as another name.`);
          }
          throw exc;
        }
        toast(`Restored ${data.name}.`, "ok");
      },
    });
    if (done) load();
  };

  const purge = async (f) => {
    const ok = await confirmDialog({
      title: "Delete this file forever?",
      body: [h("p", h("strong", { class: "break" }, f.name), ` (${bytes(f.size)})`),
        h("p", { class: "muted" }, "It leaves the trash and its chunks are freed on the nodes unless another file uses them. This cannot be undone.")],
      confirm: "Delete forever",
      onConfirm: () => api(`/api/trash/${f.id}`, { method: "DELETE" }),
    });
    if (ok) {
      toast(`Deleted ${f.name} for good.`, "ok");
      load();
    }
  };

  if (!adminNote) emptyBtn.addEventListener("click", async () => {
    if (!total) {
      toast("The trash is empty.", "info");
      return;
    }
    const ok = await confirmDialog({
      title: `Empty the trash?`,
      body: [h("p", `${plural(total, "file")} will be deleted for good and their space freed.`),
        h("p", { class: "muted" }, "This cannot be undone.")],
      confirm: "Empty trash",
      onConfirm: async () => {
        const { data } = await api("/api/trash", { method: "DELETE" });
        toast(`Emptied the trash: ${plural(data.purged, "file")} (${bytes(data.bytes)}) deleted for good.`, "ok");
      },
    });
    if (ok) load();
  });

  const render = () => {
    if (!files.length) {
      replace(body, h("tr", h("td", { colspan: "6" }, emptyState("The trash is empty", "Deleted and overwritten files appear here."))));
      return;
    }
    replace(body, files.map((f) => h("tr", { dataset: { id: f.id } },
      h("td", { class: "break", "data-label": "Name" }, h("span", { class: "trash-name" }, f.name),
        f.bucket && f.bucket !== "default" ? h("span", { class: "small muted trash-bucket" }, ` in bucket ${f.bucket}`) : null),
      h("td", { class: "num", "data-label": "Size" }, bytes(f.size)),
      h("td", { "data-label": "Why" }, f.why === "overwritten" ? "Overwritten" : "Deleted"),
      h("td", { "data-label": "Deleted", title: dateTime(f.deleted) }, dateTime(f.deleted)),
      h("td", { "data-label": "Purged", title: dateTime(f.purge_at) }, untilText(f.purge_at)),
      h("td", { class: "actions" }, h("div", { class: "trash-actions" },
        actionButton("Restore", { kind: "ghost", why: restoreNote, onClick: () => restore(f), attrs: { class: "btn ghost small restore" } }),
        actionButton("Delete forever", { kind: "danger-ghost", why: adminNote ? `${adminNote} to delete files for good` : null, whyId: purgeWhyId, onClick: () => purge(f), attrs: { class: "btn danger-ghost small purge" } }))))));
    if (total > files.length) body.append(h("tr", h("td", { colspan: "6", class: "muted small" }, `Showing the newest ${num(files.length)} of ${num(total)}.`)));
  };

  load();
  // A delete elsewhere (another tab, the CLI) changes the trash's size: reload then.
  let lastTrash = state.status && state.status.trash ? state.status.trash.files : null;
  const off = on("status", (st) => {
    const n = st && st.trash ? st.trash.files : null;
    if (n !== lastTrash) {
      lastTrash = n;
      load();
    }
  });
  return off;
}
