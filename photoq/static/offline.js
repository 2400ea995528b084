// The offline page: try again by itself once the browser says the network is back.
(function () {
  'use strict';
  const retry = document.getElementById('offline-retry');
  if (retry) retry.addEventListener('click', () => window.location.reload());
  window.addEventListener('online', () => window.location.reload());
})();
