// The ML models page's only script. Airflow shows plugin pages in a frame sandboxed without `allow-popups`, so a
// link with target="_blank" does nothing there (Chromium: "Blocked opening ... in a sandboxed frame"). The frame
// has `allow-same-origin` and the page is served by Airflow's own api-server, so the page may reach the Airflow
// window: it opens such links from there, in a new tab, as a click on them would outside a frame.
document.addEventListener("click", (event) => {
  const link = event.target.closest('a[target="_blank"]');
  if (!link || window.top === window || event.defaultPrevented) return;
  event.preventDefault();
  const opener = window.top.document.createElement("a");
  opener.href = link.href;
  opener.target = "_blank";
  opener.rel = "noopener noreferrer";
  window.top.document.body.appendChild(opener);
  opener.click();
  opener.remove();
});
