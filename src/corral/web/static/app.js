// Corral's progressive enhancement. Every page works without it; with it, filters apply
// as you type, sorting and paging swap the table in place, row menus work with the
// arrow keys, Delete asks in a dialog, and the details page shows logs.
"use strict";
(function () {
  document.documentElement.classList.add("js");
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";
  const pad = (n) => String(n).padStart(2, "0");

  function localTimes(root) {
    for (const t of $$("time[datetime]", root)) {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) continue;
      t.title = t.getAttribute("datetime");
      t.textContent = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
        `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    }
  }

  // Selects that choose a view submit their form at once.
  document.addEventListener("change", (e) => {
    const el = e.target;
    if (el.matches("select[data-autosubmit]") && !el.closest("#results")) el.form.submit();
  });

  // A select that decides what a form shows (the quota form's cluster) reloads the page
  // with its choice in the URL; without script, the page's own links do it.
  document.addEventListener("change", (e) => {
    const el = e.target;
    if (!el.matches("select[data-reload]") || el.value === el.getAttribute("data-shown")) return;
    const url = new URL(location.href);
    url.searchParams.set(el.name, el.value);
    url.hash = el.getAttribute("data-reload");
    location.assign(url.toString());
  });

  // The submit form's model fields suggest the models of the project chosen.
  document.addEventListener("change", (e) => {
    if (e.target.id !== "f-project") return;
    for (const input of e.target.form.querySelectorAll("input[data-models]")) {
      input.setAttribute("list", "models-" + e.target.value);
    }
  });

  // Forms whose action is hard to undo ask first.
  document.addEventListener("submit", (e) => {
    const msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // ---------------------------------------------------------------- row menus
  function menuItems(menu) { return $$("[role=menuitem]", menu); }
  function initMenus(root) {
    for (const s of $$("details.menu > summary", root)) s.setAttribute("aria-expanded", String(s.parentElement.open));
  }
  function closeMenus(except) {
    for (const d of $$("details.menu[open]")) if (d !== except) d.open = false;
  }
  let openedByKey = false;
  document.addEventListener("toggle", (e) => {
    const d = e.target;
    if (d instanceof HTMLDetailsElement && d.classList.contains("multi") && d.open) {
      for (const other of $$("details.multi[open]")) if (other !== d) other.open = false;
    }
    if (!(d instanceof HTMLDetailsElement) || !d.classList.contains("menu")) return;
    const summary = d.querySelector("summary");
    summary.setAttribute("aria-expanded", String(d.open));
    if (d.open) {
      closeMenus(d);
      // Opened with Enter or Space: the first item takes the focus (unless an arrow key gave it one already).
      if (openedByKey && (document.activeElement === summary || !d.contains(document.activeElement))) {
        const first = menuItems(d)[0];
        if (first) first.focus();
      }
    }
    openedByKey = false;
  }, true);
  document.addEventListener("keydown", (e) => {
    const multi = e.key === "Escape" && e.target.closest && e.target.closest("details.multi[open]");
    if (multi) { multi.open = false; multi.querySelector("summary").focus(); return; }
    const summary = e.target.closest && e.target.closest("details.menu > summary");
    if (summary) {
      const d = summary.parentElement;
      if (["Enter", " ", "ArrowDown", "ArrowUp"].includes(e.key)) {
        if (e.key.startsWith("Arrow")) {
          e.preventDefault();
          d.open = true;  // the toggle event comes later: it must not move the focus again
          openedByKey = false;
          const items = menuItems(d);
          (e.key === "ArrowUp" ? items[items.length - 1] : items[0]).focus();
        } else if (!d.open) {
          openedByKey = true;
        }
      } else if (e.key === "Escape" && d.open) {
        d.open = false;
      }
      return;
    }
    const item = e.target.closest && e.target.closest("details.menu [role=menuitem]");
    if (!item) return;
    const d = item.closest("details.menu");
    const items = menuItems(d);
    const i = items.indexOf(item);
    let next = null;
    if (e.key === "ArrowDown") next = items[(i + 1) % items.length];
    else if (e.key === "ArrowUp") next = items[(i - 1 + items.length) % items.length];
    else if (e.key === "Home") next = items[0];
    else if (e.key === "End") next = items[items.length - 1];
    else if (e.key === "Escape") { e.preventDefault(); d.open = false; d.querySelector("summary").focus(); return; }
    else if (e.key === "Tab") { d.open = false; return; }
    else if (e.key === " ") { e.preventDefault(); item.click(); return; }
    if (next) { e.preventDefault(); next.focus(); }
  });
  document.addEventListener("click", (e) => {
    if (!e.target.closest("details.menu")) closeMenus(null);
    if (!e.target.closest("details.multi")) for (const d of $$("details.multi[open]")) d.open = false;
  });

  // ---------------------------------------------------------------- the Workloads page
  const filters = $("#filters");
  const results = $("#results");
  if (filters && results) {
    const defaultStatuses = $$("input[name=status]", filters).map((i) => i.value).filter((v) => v !== "Deleted");
    let inflight = null;
    let typing = null;

    const viewUrl = () => {
      const params = new URLSearchParams();
      for (const [k, v] of new FormData(filters)) {
        if (k === "name" && !v.trim()) continue;
        params.append(k, k === "name" ? v.trim() : v);
      }
      const statuses = params.getAll("status");
      if (statuses.length === defaultStatuses.length && defaultStatuses.every((s) => statuses.includes(s))) {
        params.delete("status");
      }
      return "/workloads?" + params.toString();
    };

    const syncForm = (url) => {
      // The hidden sort and page size follow the URL shown, so that the next filter keeps them.
      const params = new URL(url, location.href).searchParams;
      for (const key of ["sort", "page_size"]) {
        let input = $(`input[type=hidden][name=${key}]`, filters);
        const value = params.get(key);
        if (value && !input) {
          input = document.createElement("input");
          input.type = "hidden"; input.name = key; filters.prepend(input);
        }
        if (input) { if (value) input.value = value; else input.remove(); }
      }
      $("#refresh").href = url;
      const exportLink = $("#export-csv");  // the same view, as CSV
      if (exportLink) exportLink.href = url.replace(/^\/workloads(?=\?|$)/, "/workloads.csv");
    };

    const summarise = () => {
      const types = $$("input[name=type]:checked", filters);
      const statuses = $$("input[name=status]:checked", filters);
      $("#f-type summary span").textContent = !types.length ? "all"
        : types.length === 1 ? types[0].parentElement.textContent.trim() : `${types.length} types`;
      const isDefault = statuses.length === defaultStatuses.length &&
        statuses.every((s) => defaultStatuses.includes(s.value));
      $("#f-status summary span").textContent = (isDefault || !statuses.length) ? "all but Deleted"
        : statuses.length === 1 ? statuses[0].parentElement.textContent.trim() : `${statuses.length} statuses`;
    };

    const load = async (url, how) => {
      if (inflight) inflight.abort();
      const controller = new AbortController();
      inflight = controller;
      results.setAttribute("aria-busy", "true");
      try {
        const r = await fetch(url, { headers: { "X-Requested-With": "fetch" }, signal: controller.signal });
        if (r.status === 401) { location.href = (await r.json()).error.sign_in; return; }
        if ((r.headers.get("content-type") || "").includes("json")) {
          const body = await r.json();
          results.innerHTML = "";
          const box = document.createElement("div");
          box.className = "empty error";
          box.innerHTML = "<h2>The workloads could not be read</h2><p></p><p>Use Refresh to try again.</p>";
          box.querySelector("p").textContent = body.error.message;
          results.append(box);
        } else {
          results.innerHTML = await r.text();
          localTimes(results);
          initMenus(results);
        }
        if (how === "push") history.pushState(null, "", url);
        else if (how === "replace") history.replaceState(null, "", url);
        syncForm(url);
        const summary = $("#summary", results);
        $("#announce").textContent = summary ? summary.textContent : ($(".empty h2", results) || {}).textContent || "";
      } catch (err) {
        if (err.name === "AbortError") return;
        results.innerHTML = '<div class="empty error"><h2>The server did not answer</h2>' +
          "<p>Check your connection, then use Refresh to try again.</p></div>";
      } finally {
        if (inflight === controller) { inflight = null; results.removeAttribute("aria-busy"); }
      }
    };

    filters.addEventListener("submit", (e) => { e.preventDefault(); load(viewUrl(), "replace"); });
    filters.addEventListener("input", (e) => {
      if (e.target.name !== "name") return;
      clearTimeout(typing);
      typing = setTimeout(() => load(viewUrl(), "replace"), 250);
    });
    filters.addEventListener("change", (e) => {
      if (e.target.name === "type" || e.target.name === "status") { summarise(); load(viewUrl(), "replace"); }
    });
    $("#reset").addEventListener("click", (e) => {
      e.preventDefault();
      $("#f-name").value = "";
      for (const i of $$("input[name=type]", filters)) i.checked = false;
      for (const i of $$("input[name=status]", filters)) i.checked = i.value !== "Deleted";
      summarise();
      load(e.currentTarget.href, "replace");
    });
    $("#refresh").addEventListener("click", (e) => { e.preventDefault(); load(location.pathname + location.search, null); });
    results.addEventListener("click", (e) => {
      const a = e.target.closest("a[href^='/workloads?']");
      if (!a || e.ctrlKey || e.metaKey || e.shiftKey) return;
      e.preventDefault();
      load(a.getAttribute("href"), "push");
      if (a.closest(".pager")) filters.scrollIntoView({ block: "nearest" });
    });
    results.addEventListener("change", (e) => {
      if (e.target.name !== "page_size") return;
      const params = new URLSearchParams(location.search);
      params.set("page_size", e.target.value);
      params.delete("page");
      params.delete("cursor");  // it belongs to the old page size
      load("/workloads?" + params.toString(), "push");
    });
    window.addEventListener("popstate", () => location.pathname === "/workloads" && load(location.href, null));

    // Live mode: the statuses are read again every few seconds while the page is visible.
    const live = $("#live");
    live.parentElement.hidden = false;
    let timer = null;
    const setLive = (on) => {
      clearInterval(timer);
      timer = on ? setInterval(() => {
        if (document.visibilityState === "visible" && !$("details.menu[open]") && !$("dialog[open]")) {
          load(location.pathname + location.search, null);
        }
      }, 5000) : null;
      sessionStorage.setItem("corral-live", on ? "1" : "");
    };
    live.checked = sessionStorage.getItem("corral-live") === "1";
    setLive(live.checked);
    live.addEventListener("change", () => setLive(live.checked));

    // Delete: a dialog that names the workload; the row then shows its new status.
    const dialog = $("#confirm-delete");
    let target = null;
    results.addEventListener("click", (e) => {
      const item = e.target.closest("[data-delete]");
      if (!item || !dialog.showModal) return;
      e.preventDefault();
      target = item.closest("tr");
      item.closest("details").open = false;
      $(".name", dialog).textContent = target.dataset.name;
      $(".err", dialog).hidden = true;
      dialog.showModal();
      $("button[value=cancel]", dialog).focus();
    });
    $("button[value=delete]", dialog).addEventListener("click", async (e) => {
      e.preventDefault();
      const row = target;
      const button = e.currentTarget;
      button.disabled = true;
      try {
        const r = await fetch(`/workloads/${row.dataset.id}/delete`, {
          method: "POST",
          headers: { "X-Requested-With": "fetch", "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ csrf_token: csrf() }),
        });
        const body = await r.json();
        if (!r.ok) throw new Error(body.error ? body.error.message : `the server answered ${r.status}`);
        const cell = $("td.status", row);
        cell.innerHTML = '<span class="st"></span> <span class="why"></span>';
        $(".st", cell).className = "st st-" + body.status.toLowerCase();
        $(".st", cell).textContent = body.status_label;
        $(".why", cell).textContent = body.status_reason;
        $(".why", cell).title = body.status_reason;
        const del = $("[data-delete]", row);
        if (del) del.remove();
        dialog.close();
        $("#announce").textContent = body.message;
        $("summary", row).focus();
      } catch (err) {
        const p = $(".err", dialog);
        p.textContent = "Not deleted: " + err.message;
        p.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    $("button[value=cancel]", dialog).addEventListener("click", (e) => {
      e.preventDefault();
      dialog.close();
      if (target) $("summary", target).focus();
    });
  }

  // ---------------------------------------------------------------- logs on the details page
  const logs = $("#logs");
  if (logs) {
    const pre = $("#log-text");
    const follow = $("#follow");
    const running = logs.dataset.running === "true";
    let timer = null;
    const show = async () => {
      try {
        const r = await fetch(logs.dataset.logsUrl, { headers: { "X-Requested-With": "fetch" } });
        if (!r.ok) {
          let why = "";
          try { why = (await r.json()).error.message; } catch (err) { /* not JSON */ }
          pre.textContent = r.status === 401
            ? "Your session has ended: sign in again to see the logs."
            : r.status === 404 ? `Logs are not available: ${why || "not found"}.`
            : why ? `No logs to show: ${why}.` : `Logs could not be read (the server answered ${r.status}).`;
          clearInterval(timer);
          return;
        }
        const type = r.headers.get("content-type") || "";
        let text;
        if (type.includes("json")) {
          const body = await r.json();
          text = Array.isArray(body.lines) ? body.lines.join("\n") : (body.text || JSON.stringify(body, null, 2));
        } else {
          text = await r.text();
        }
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent = text || "(no output yet)";
        if (follow.checked && atEnd) pre.scrollTop = pre.scrollHeight;
      } catch (err) {
        pre.textContent = "Logs could not be read: the server did not answer.";
      }
    };
    const setFollow = () => {
      clearInterval(timer);
      timer = follow.checked && running ? setInterval(show, 3000) : null;
    };
    if (running) { follow.parentElement.hidden = false; follow.addEventListener("change", setFollow); }
    pre.textContent = "Loading logs…";
    show();
    setFollow();
  }

  localTimes(document);
  initMenus(document);
})();
