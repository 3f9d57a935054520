// Sluice contacts import: keeps the progress of the background imports up
// to date by reading /contacts/imports/live every few seconds, and reloads
// the page when one starts or ends (the server then draws the report).
// Without this file the page still works: its "Refresh" link reloads it.
// The server formats every text, this only places it.
"use strict";

(() => {
  const status = document.querySelector("[data-imports-live-url]");
  if (!status) return;
  const url = status.dataset.importsLiveUrl;
  const seconds = Math.max(2, Number(status.dataset.liveInterval) || 3);
  // The import page lists every active import; a report page shows one.
  const listsAll = status.hasAttribute("data-live-all");

  const { setText, poll } = window.SluiceLive;

  const shownIds = () =>
    Array.from(document.querySelectorAll("[data-import-id]"), (element) => element.dataset.importId);

  const show = (live) => {
    const liveIds = live.imports.map((progress) => String(progress.id));
    const shown = shownIds();
    const ended = shown.some((id) => !liveIds.includes(id));
    const started = listsAll && liveIds.some((id) => !shown.includes(id));
    if (ended || started) {
      window.location.reload();
      return;
    }
    setText(status, "as-of", `Updated every ${seconds} s.`);
    for (const progress of live.imports) {
      const element = document.querySelector(`[data-import-id="${progress.id}"]`);
      if (!element) continue;
      setText(element, "progress", progress.progress);
      const bar = element.querySelector('[data-live="bar"]');
      if (bar) {
        bar.max = progress.total || 1;
        bar.value = progress.done;
      }
    }
  };

  poll(status, url, seconds, show);
})();
