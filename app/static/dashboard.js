// Sluice dashboard: keeps the quota and the progress of the mass emails
// being sent up to date by reading /dashboard/live every few seconds.
// Without this file the page still works: its "Refresh" link reloads it.
// Loaded as a file (the Content-Security-Policy allows no inline script);
// the server formats every text, this only places it.
"use strict";

(() => {
  const status = document.querySelector("[data-live-url]");
  if (!status) return;
  const url = status.dataset.liveUrl;
  const seconds = Math.max(2, Number(status.dataset.liveInterval) || 5);

  const { setText, poll } = window.SluiceLive;

  const shownIds = () =>
    Array.from(document.querySelectorAll("tr[data-mass-email-id]"), (row) => row.dataset.massEmailId);

  const show = (figures) => {
    if (!figures.ready) return;
    const ids = figures.sending.map((progress) => String(progress.id));
    if (ids.join(",") !== shownIds().join(",")) {
      // A mass email started or finished: the server draws the new table.
      window.location.reload();
      return;
    }
    setText(status, "as-of", `Figures as of ${figures.as_of}, updated every ${seconds} s.`);
    setText(document, "quota-used", figures.quota.used);
    setText(document, "quota-max", figures.quota.max);
    const bar = document.querySelector('[data-live="quota-bar"]');
    if (bar) {
      bar.max = figures.quota.max;
      bar.value = Math.min(figures.quota.used, figures.quota.max);
    }
    const frees = document.querySelector('[data-live="quota-frees"]');
    if (frees) {
      frees.hidden = !figures.quota.frees_at;
      if (figures.quota.frees_at) setText(frees, "quota-frees-at", figures.quota.frees_at);
    }
    for (const progress of figures.sending) {
      const row = document.querySelector(`tr[data-mass-email-id="${progress.id}"]`);
      setText(row, "status", progress.status);
      setText(row, "done", progress.done);
      setText(row, "total", progress.total);
      setText(row, "eta", progress.eta);
      const rowBar = row.querySelector('[data-live="bar"]');
      rowBar.max = progress.total || 1;
      rowBar.value = progress.done;
    }
  };

  poll(status, url, seconds, show);
})();
