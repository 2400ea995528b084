// photoq service worker: an offline shell, nothing more.
//
// It caches the public files of the shell (stylesheet, scripts, icons, the /offline page), whose URLs carry their
// version, so a cached copy is never stale. Pages, API answers, events and photo files are never cached here:
// they always come from the server, so nothing private stays behind after logging out, and nothing shown is old.
// A page asked for while the server cannot be reached gets the /offline page instead.
'use strict';

const SHELL = __SHELL__;
const CACHE = 'photoq-shell-__VERSION__';
const OFFLINE_URL = '/offline';

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith('photoq-') && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;  // uploads, shares and forms go to the server as they are
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === 'navigate') {
    event.respondWith(fetch(request).catch(async () => (await caches.match(OFFLINE_URL)) || Response.error()));
    return;
  }
  if (url.pathname.startsWith('/static/') && url.search) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
  }
  // Everything else (/api/..., photo files, /api/events) is left to the network.
});
