// photoq: shared page behaviour. Plain JavaScript, no dependencies; every page works without it.
//  - local times for <time data-local>, confirm() for form[data-confirm], dismissible flash messages
//  - live pages: <body data-live="all|album"> subscribes to /api/events and re-renders [data-live-refresh]
//    regions from a fresh copy of the page when something changes
//  - window.photoq: helpers for album.js (CSRF header, JSON posts, event stream, formatting)
(function () {
  'use strict';

  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : '';

  function humanBytes(size) {
    if (size < 1024) return size + ' B';
    const units = ['KB', 'MB', 'GB', 'TB'];
    let value = size;
    for (const unit of units) {
      value /= 1024;
      if (value < 1024 || unit === 'TB') return (value < 100 ? value.toFixed(1) : value.toFixed(0)) + ' ' + unit;
    }
    return size + ' B';
  }

  /** A stats event's eta_seconds for people ("about 3 min left"); '' when there is nothing to say. Matches ui.human_eta. */
  function humanEta(seconds) {
    if (!seconds) return '';
    if (seconds < 60) return 'less than a minute left';
    const minutes = Math.round(seconds / 60);
    if (minutes < 90) return 'about ' + minutes + ' min left';
    return 'about ' + Math.floor(minutes / 60) + ' h ' + (minutes % 60) + ' min left';
  }

  function localizeTimes(root) {
    root.querySelectorAll('time[data-local][datetime]').forEach((el) => {
      const moment = new Date(el.getAttribute('datetime'));
      if (!isNaN(moment)) {
        el.textContent = moment.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
        el.title = moment.toISOString();
      }
    });
  }

  /** POST (or another method) to the JSON API with the session cookie and the CSRF header. */
  async function api(method, url, body) {
    const headers = { 'X-CSRF-Token': csrf, Accept: 'application/json' };
    const options = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }

  /** An EventSource on /api/events that tells `onResync` each time it (re)connects. */
  function events(albumId, handlers) {
    const url = '/api/events' + (albumId ? '?album_id=' + encodeURIComponent(albumId) : '');
    const source = new EventSource(url, { withCredentials: true });
    let freshConnection = true;
    source.addEventListener('open', () => { freshConnection = true; });
    source.addEventListener('stats', (event) => {
      const data = JSON.parse(event.data);
      if (handlers.stats) handlers.stats(data);
      if (freshConnection) {
        freshConnection = false;
        if (handlers.resync) handlers.resync();  // catch up on anything missed while not connected
      }
    });
    source.addEventListener('photo', (event) => {
      if (handlers.photo) handlers.photo(JSON.parse(event.data));
    });
    source.addEventListener('queue', (event) => {
      if (handlers.queue) handlers.queue(JSON.parse(event.data));
    });
    window.addEventListener('pagehide', () => source.close());
    return source;
  }

  function announce(message) {
    let region = document.getElementById('live-announcer');
    if (!region) {
      region = document.createElement('div');
      region.id = 'live-announcer';
      region.className = 'visually-hidden';
      region.setAttribute('role', 'status');
      document.body.append(region);
    }
    region.textContent = '';
    window.setTimeout(() => { region.textContent = message; }, 50);
  }

  /** Fetch this page again and return it parsed, or null (e.g. when the session ended). */
  async function fetchPage(url) {
    try {
      const response = await fetch(url || window.location.href, {
        credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'text/html' },
      });
      if (!response.ok || response.redirected) return null;
      return new DOMParser().parseFromString(await response.text(), 'text/html');
    } catch (e) {
      return null;
    }
  }

  // -- live regions ---------------------------------------------------------------------------------------------

  function busyWith(region) {
    // Never pull the rug from under someone: skip regions with an open menu or a focused control.
    if (region.querySelector('details[open]')) return true;
    const active = document.activeElement;
    return !!(active && active !== document.body && region.contains(active) && active.matches('input, textarea, select'));
  }

  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;

  async function refreshRegions() {
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    try {
      const fresh = await fetchPage();
      if (!fresh) return;
      document.querySelectorAll('[data-live-refresh]').forEach((region) => {
        const replacement = fresh.getElementById(region.id);
        if (!replacement || replacement.innerHTML === region.innerHTML || busyWith(region)) return;
        const focusedId = document.activeElement && region.contains(document.activeElement) ? document.activeElement.id : '';
        region.innerHTML = replacement.innerHTML;
        localizeTimes(region);
        startAgeTickers(region);
        if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
      });
      const freshBody = fresh.body;
      if (freshBody && !freshBody.dataset.live) stopLive();  // e.g. a photo that finished processing
    } finally {
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
    }
  }

  function scheduleRefresh(delay) {
    if (refreshTimer) return;
    refreshTimer = window.setTimeout(() => { refreshTimer = null; refreshRegions(); }, delay === undefined ? 1000 : delay);
  }

  let liveSource = null;
  function stopLive() {
    if (liveSource) { liveSource.close(); liveSource = null; }
  }

  function startLive() {
    const mode = document.body.dataset.live;
    if (!mode || !window.EventSource) return;
    const albumId = mode === 'album' ? document.body.dataset.liveAlbum : null;
    const photoId = document.body.dataset.livePhoto ? Number(document.body.dataset.livePhoto) : null;
    let first = true;
    liveSource = events(albumId, {
      stats() {
        if (first) { first = false; return; }  // the stats sent on connect describe the page we already have
        if (!photoId) scheduleRefresh();
      },
      photo(data) {
        if (photoId === null || data.id === photoId) scheduleRefresh(photoId ? 150 : 1000);
      },
      queue() { if (!photoId) scheduleRefresh(150); },  // paused, resumed, cleared, breaker: nothing else says so
      resync() { if (!first) scheduleRefresh(); },
    });
  }

  // -- "oldest job waiting" ticks along between refreshes ----------------------------------------------------------

  const ageTickers = new Set();
  function formatAge(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }
  function startAgeTickers(root) {
    root.querySelectorAll('[data-age-seconds]').forEach((el) => {
      el.dataset.ageStart = String(performance.now() / 1000 - Number(el.dataset.ageSeconds));
      ageTickers.add(el);
    });
  }
  window.setInterval(() => {
    for (const el of ageTickers) {
      if (!el.isConnected) { ageTickers.delete(el); continue; }
      el.textContent = formatAge(performance.now() / 1000 - Number(el.dataset.ageStart));
    }
  }, 1000);

  // -- small behaviours -----------------------------------------------------------------------------------------

  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // Escape closes an open menu and puts focus back on its button.
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      const open = document.activeElement && document.activeElement.closest('details[open]');
      if (open) { open.open = false; open.querySelector('summary').focus(); }
      return;
    }
    // Left/right arrows move between photos on a photo page.
    if ((event.key === 'ArrowLeft' || event.key === 'ArrowRight') && !event.altKey && !event.ctrlKey &&
        !event.metaKey && !event.shiftKey) {
      const target = event.target;
      if (target && target.closest && target.closest('input, textarea, select, [contenteditable]')) return;
      const link = document.querySelector('a[data-key="' + event.key + '"]');
      if (link) link.click();
    }
  });

  function setUpFlash() {
    document.querySelectorAll('.flash').forEach((flash) => {
      const close = flash.querySelector('.flash-close');
      if (!close) return;
      close.hidden = false;
      close.addEventListener('click', () => flash.remove());
    });
  }

  window.photoq = { csrf, api, events, announce, fetchPage, humanBytes, humanEta, localizeTimes };

  function start() {
    localizeTimes(document);
    startAgeTickers(document);
    setUpFlash();
    startLive();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
