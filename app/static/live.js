// Shared by the pages whose figures keep themselves up to date
// (dashboard.js, import.js): read the page's JSON endpoint every few seconds
// and hand it to the page's own `show`; when the server refuses or is gone,
// stop and say so in the status line (the page's "Refresh" link still works).
// The server formats every text, these scripts only place it.
"use strict";

window.SluiceLive = (() => {
  const setText = (root, name, text) => {
    const element = root.querySelector(`[data-live="${name}"]`);
    if (element && element.textContent !== String(text)) element.textContent = String(text);
  };

  const poll = (status, url, seconds, show) => {
    let timer = null;
    const stop = (message) => {
      window.clearInterval(timer);
      setText(status, "as-of", message);
    };
    const refresh = async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(url, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          redirect: "error",
        });
        if (!response.ok) {
          stop("Live updates stopped (the server answered " + response.status + "): use Refresh.");
          return;
        }
        show(await response.json());
      } catch (error) {
        // Logged out (a redirect to the log-in page) or the server is down.
        stop("Live updates stopped: use Refresh.");
      }
    };
    timer = window.setInterval(refresh, seconds * 1000);
  };

  return { setText, poll };
})();
