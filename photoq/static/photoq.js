// photoq: shared page behaviour. Plain JavaScript, no dependencies; every page works without it.
//  - local times for <time data-local>, confirm() for form[data-confirm], dismissible flash messages
//  - live pages: <body data-live="all|album"> subscribes to /api/events and re-renders [data-live-refresh]
//    regions from a fresh copy of the page when something changes
//  - "… left" estimates that count down between stats events (album and queue pages)
//  - window.photoq: helpers for the page scripts (CSRF header, JSON posts, event stream, formatting,
//    ThumbHash placeholders)
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

  // The server's eta_seconds changes only when a job ends; in between, the time since it arrived is taken off it.
  // Never below a minute's worth: "less than a minute left" stays until the server says the work is done.
  const ETA_FLOOR_SECONDS = 59;
  const etaCountdowns = new Set();

  /** A "… left" that counts down between stats events and shows its text through show(text) ('' for nothing). */
  function etaCountdown(show) {
    let seconds = 0;  // the last server value, as of `since`
    let since = 0;
    let counting = false;
    const left = () => {
      if (!seconds) return 0;
      return counting ? Math.max(ETA_FLOOR_SECONDS, seconds - (performance.now() - since) / 1000) : seconds;
    };
    const countdown = {
      /** A stats event's eta_seconds (0 or null: nothing to say). */
      set(value) {
        seconds = value > 0 ? value : 0;
        since = performance.now();
        counting = true;
        countdown.render();
      },
      /** The live connection is lost: what is shown stays, but no longer counts down (the work may be stuck). */
      stop() {
        seconds = left();
        counting = false;
      },
      render() { show(humanEta(left())); },
    };
    etaCountdowns.add(countdown);
    return countdown;
  }

  // -- ThumbHash placeholders (album tiles, the photo page) -------------------------------------------------------

  /** thumbHashToRGBA from Evan Wallace's public-domain reference (github.com/evanw/thumbhash), as a data: URL. */
  function thumbHashToDataURL(base64) {
    const hash = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const { PI, min, max, cos, round } = Math;
    const header24 = hash[0] | (hash[1] << 8) | (hash[2] << 16);
    const header16 = hash[3] | (hash[4] << 8);
    const lDc = (header24 & 63) / 63;
    const pDc = ((header24 >> 6) & 63) / 31.5 - 1;
    const qDc = ((header24 >> 12) & 63) / 31.5 - 1;
    const lScale = ((header24 >> 18) & 31) / 31;
    const hasAlpha = header24 >> 23;
    const pScale = ((header16 >> 3) & 63) / 63;
    const qScale = ((header16 >> 9) & 63) / 63;
    const isLandscape = header16 >> 15;
    const lx = max(3, isLandscape ? (hasAlpha ? 5 : 7) : header16 & 7);
    const ly = max(3, isLandscape ? header16 & 7 : (hasAlpha ? 5 : 7));
    const aDc = hasAlpha ? (hash[5] & 15) / 15 : 1;
    const aScale = (hash[5] >> 4) / 15;
    const acStart = hasAlpha ? 6 : 5;
    let acIndex = 0;
    const decodeChannel = (nx, ny, scale) => {
      const ac = [];
      for (let cy = 0; cy < ny; cy++) {
        for (let cx = cy ? 0 : 1; cx * ny < nx * (ny - cy); cx++, acIndex++) {
          ac.push((((hash[acStart + (acIndex >> 1)] >> ((acIndex & 1) << 2)) & 15) / 7.5 - 1) * scale);
        }
      }
      return ac;
    };
    const lAc = decodeChannel(lx, ly, lScale);
    const pAc = decodeChannel(3, 3, pScale * 1.25);  // boosts saturation, compensating for quantization
    const qAc = decodeChannel(3, 3, qScale * 1.25);
    const aAc = hasAlpha && decodeChannel(5, 5, aScale);
    const ratio = (isLandscape ? (hasAlpha ? 5 : 7) : hash[3] & 7) / (isLandscape ? hash[3] & 7 : (hasAlpha ? 5 : 7));
    const w = round(ratio > 1 ? 32 : 32 * ratio);
    const h = round(ratio > 1 ? 32 / ratio : 32);
    const canvas = document.createElement('canvas');
    canvas.width = w;
    canvas.height = h;
    const context = canvas.getContext('2d');
    const image = context.createImageData(w, h);
    const rgba = image.data;
    const fx = [], fy = [];
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i += 4) {
        let l = lDc, p = pDc, q = qDc, a = aDc;
        for (let cx = 0, n = max(lx, hasAlpha ? 5 : 3); cx < n; cx++) fx[cx] = cos(PI / w * (x + 0.5) * cx);
        for (let cy = 0, n = max(ly, hasAlpha ? 5 : 3); cy < n; cy++) fy[cy] = cos(PI / h * (y + 0.5) * cy);
        for (let cy = 0, j = 0; cy < ly; cy++) {
          for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx * ly < lx * (ly - cy); cx++, j++) l += lAc[j] * fx[cx] * fy2;
        }
        for (let cy = 0, j = 0; cy < 3; cy++) {
          for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 3 - cy; cx++, j++) {
            const f = fx[cx] * fy2;
            p += pAc[j] * f;
            q += qAc[j] * f;
          }
        }
        if (hasAlpha) {
          for (let cy = 0, j = 0; cy < 5; cy++) {
            for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 5 - cy; cx++, j++) a += aAc[j] * fx[cx] * fy2;
          }
        }
        const b = l - 2 / 3 * p;
        const r = (3 * l - b + q) / 2;
        const g = r - q;
        rgba[i] = max(0, 255 * min(1, r));
        rgba[i + 1] = max(0, 255 * min(1, g));
        rgba[i + 2] = max(0, 255 * min(1, b));
        rgba[i + 3] = max(0, 255 * min(1, a));
      }
    }
    context.putImageData(image, 0, 0);
    return canvas.toDataURL();
  }

  /** Paint a ThumbHash on `box` (through CSSOM, which the CSP allows) until `img` has loaded; false if not painted. */
  function paintThumbHash(box, img, base64) {
    if (!base64 || (img.complete && img.naturalWidth)) return false;
    try {
      box.style.backgroundImage = 'url("' + thumbHashToDataURL(base64) + '")';
    } catch (e) {
      return false;  // a malformed hash: the plain background stays
    }
    box.style.backgroundSize = 'cover';
    box.style.backgroundPosition = 'center';
    img.addEventListener('load', () => { box.style.backgroundImage = ''; }, { once: true });
    return true;
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
    const url = window.photoq.urls.events(albumId);
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
    source.addEventListener('error', () => {  // the connection dropped; the browser reconnects by itself
      if (handlers.lost) handlers.lost();
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
        region.dispatchEvent(new CustomEvent('photoq:refreshed', { bubbles: true }));  // page scripts redo their part
      });
      for (const countdown of etaCountdowns) countdown.render();  // the fresh copy says what the server last said
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
    const queueEta = etaCountdown((text) => {
      const el = document.getElementById('queue-eta');
      if (el && el.textContent !== text) el.textContent = text;
    });
    liveSource = events(albumId, {
      stats(data) {
        if (!albumId) queueEta.set(data.eta_seconds);
        if (first) { first = false; return; }  // the stats sent on connect describe the page we already have
        if (!photoId) scheduleRefresh();
      },
      photo(data) {
        if (photoId === null || data.id === photoId) scheduleRefresh(photoId ? 150 : 1000);
      },
      queue() { if (!photoId) scheduleRefresh(150); },  // paused, resumed, cleared, breaker: nothing else says so
      resync() { if (!first) scheduleRefresh(); },
      lost() { queueEta.stop(); },
    });
  }

  // -- "oldest job waiting" and "… left" tick along between refreshes ---------------------------------------------

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
    for (const countdown of etaCountdowns) countdown.render();
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

  /** A DOM element with attributes (`text` sets its text; null, undefined and false are left out) and children. */
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'text') node.textContent = value;
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

  // urls.js (loaded first) has put window.photoq.urls in place.
  window.photoq = Object.assign(window.photoq || {}, { csrf, api, events, announce, fetchPage, humanBytes,
    etaCountdown, localizeTimes, thumbHashToDataURL, paintThumbHash, el, plural });

  function start() {
    localizeTimes(document);
    startAgeTickers(document);
    setUpFlash();
    startLive();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
