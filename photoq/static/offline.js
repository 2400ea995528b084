// The offline page: it tries again by itself once the server answers (the browser's `online` event alone is not
// enough: the network can be up while the server is not).
(function () {
  'use strict';
  const reload = () => window.location.reload();
  const retry = document.getElementById('offline-retry');
  if (retry) retry.addEventListener('click', reload);
  window.addEventListener('online', reload);
  window.setInterval(() => {
    fetch('/healthz', { cache: 'no-store' }).then((r) => { if (r.ok) reload(); }, () => {});
  }, 5000);
})();
