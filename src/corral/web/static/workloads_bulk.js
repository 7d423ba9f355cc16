// The Workloads page's multi-select: tick rows, "Delete selected", ONE confirmation that
// lists what will be deleted (the server's dry run), then what happened to each. Without
// this script the same form posts to the server, which asks on a page of its own.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const form = $("#bulk");
  const results = $("#results");
  const dialog = $("#confirm-bulk");
  if (!form || !results || !dialog || !dialog.showModal) return;
  const count = $("#bulk-count");
  const button = $("#bulk-delete");
  const confirmButton = $("button[value=delete]", dialog);
  const cancelButton = $("button[value=cancel]", dialog);
  const plural = (n) => `${n} workload${n === 1 ? "" : "s"}`;
  const HINT = "Tick workloads to delete several at once";

  // What is ticked survives the table being read again (Refresh, live mode), not a new view.
  let selected = new Set();
  let selectedView = location.search;
  const picks = () => $$("input.pick", results);
  const enabled = () => picks().filter((b) => !b.disabled);

  const update = () => {
    const n = picks().filter((b) => b.checked).length;
    const all = $("#pick-all", results);
    if (all) {
      const open = enabled();
      all.checked = n > 0 && n === open.length;
      all.indeterminate = n > 0 && n < open.length;
      all.disabled = !open.length;
    }
    count.textContent = n ? `${n} selected` : HINT;
    button.disabled = !n;
  };
  const remember = () => {
    selected = new Set(picks().filter((b) => b.checked).map((b) => b.value));
    selectedView = location.search;
  };
  const prepare = () => {
    const th = $("th[data-pick-all]", results);
    if (th && !$("#pick-all", th)) {
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = "pick-all";
      box.setAttribute("aria-label", "Select every workload on this page");
      th.prepend(box, " ");
    }
    if (location.search !== selectedView) selected = new Set();
    for (const b of enabled()) b.checked = selected.has(b.value);
    update();
  };
  new MutationObserver(prepare).observe(results, { childList: true });
  results.addEventListener("change", (e) => {
    if (e.target.id === "pick-all") for (const b of enabled()) b.checked = e.target.checked;
    if (e.target.id === "pick-all" || e.target.classList.contains("pick")) { remember(); update(); }
  });
  prepare();

  const post = async (ids, step) => {
    const body = new URLSearchParams({ csrf_token: $("input[name=csrf_token]", form).value, step });
    for (const id of ids) body.append("ids", id);
    const r = await fetch("/workloads/delete-selected", {
      method: "POST",
      headers: { "X-Requested-With": "fetch", "Content-Type": "application/x-www-form-urlencoded" },
      body,
    });
    let data = null;
    try { data = await r.json(); } catch (err) { /* not JSON */ }
    if (r.status === 401 && data && data.error.sign_in) { location.href = data.error.sign_in; }
    if (!r.ok) throw new Error(data && data.error ? data.error.message : `the server answered ${r.status}`);
    return data;
  };

  const WORDS = {
    already_deleting: "not deleted: already being deleted",
    already_deleted: "not deleted: already Deleted",
    not_found: "not deleted: not found",
  };
  const list = (result) => {
    const box = $(".bulk-list", dialog);
    box.textContent = "";
    const table = document.createElement("table");
    table.className = "workloads bulk-results";
    table.innerHTML = "<thead><tr><th scope=col>Workload</th><th scope=col>Status</th>" +
      `<th scope=col>${result.dry_run ? "Will be" : "Result"}</th></tr></thead><tbody></tbody>`;
    for (const item of result.items) {
      const tr = document.createElement("tr");
      tr.dataset.id = item.id;
      tr.dataset.result = item.result;
      const name = document.createElement("td");
      name.textContent = item.name || `#${item.id}`;
      const status = document.createElement("td");
      if (item.status) {
        const st = document.createElement("span");
        st.className = "st st-" + item.status.toLowerCase();
        st.textContent = item.status_label;
        status.append(st);
      }
      const what = document.createElement("td");
      what.textContent = item.result === "done" ? (result.dry_run ? "deleted" : "queued for deletion")
        : WORDS[item.result] || item.result;
      tr.append(name, status, what);
      $("tbody", table).append(tr);
    }
    box.append(table);
  };

  let pending = [];
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const ids = picks().filter((b) => b.checked).map((b) => b.value);
    if (!ids.length) return;
    button.disabled = true;
    try {
      const preview = await post(ids, "preview");
      pending = preview.items.filter((i) => i.result === "done").map((i) => String(i.id));
      $("#bulk-title").textContent = pending.length ? `Delete ${plural(pending.length)}?` : "Nothing to delete";
      $(".intro", dialog).textContent = pending.length
        ? "Each is queued for deletion: it shows Deleting until its cluster has removed everything, then Deleted."
        : "None of the selected workloads can be deleted now.";
      list(preview);
      confirmButton.hidden = !pending.length;
      confirmButton.textContent = `Delete ${plural(pending.length)}`;
      cancelButton.textContent = "Cancel";
      $(".err", dialog).hidden = true;
      dialog.showModal();
      cancelButton.focus();
    } catch (err) {
      count.textContent = "Nothing deleted: " + err.message;
      $("#announce").textContent = count.textContent;
      return;
    } finally {
      button.disabled = false;
    }
  });

  confirmButton.addEventListener("click", async (e) => {
    e.preventDefault();
    confirmButton.disabled = true;
    try {
      const done = await post(pending, "delete");
      $("#bulk-title").textContent = `Deleted ${plural(done.counts.done)}`;
      $(".intro", dialog).textContent = "What happened to each:";
      list(done);
      confirmButton.hidden = true;
      cancelButton.textContent = "Close";
      for (const item of done.items) {
        const row = $(`tr[data-id="${item.id}"]`, results);
        if (!row || !item.status) continue;
        const cell = $("td.status", row);
        cell.innerHTML = '<span class="st"></span>';
        $(".st", cell).className = "st st-" + item.status.toLowerCase();
        $(".st", cell).textContent = item.status_label;
        const box = $("input.pick", row);
        if (box) { box.checked = false; box.disabled = true; }
        const del = $("[data-delete]", row);
        if (del) del.remove();
      }
      remember();
      update();
      $("#announce").textContent = `Deleted ${plural(done.counts.done)}.`;
      cancelButton.focus();
    } catch (err) {
      const p = $(".err", dialog);
      p.textContent = "Nothing deleted: " + err.message;
      p.hidden = false;
    } finally {
      confirmButton.disabled = false;
    }
  });
  cancelButton.addEventListener("click", (e) => {
    e.preventDefault();
    dialog.close();
    button.focus();
  });
})();
