// photoq as an installable app: registers the service worker (sw.js), which keeps the offline shell only.
(function () {
  'use strict';
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {
      // No offline page then; everything else works as before.
    });
  });
})();
