// photoq full-screen viewer: one photo at a time over the page, from the gallery or the photo page.
//
// It shows the smallest display version that is still sharp on this screen (chooseVersion, a pure function), zooms
// with the wheel, a pinch, a double click or +/- up to the original's own pixels (loading the original when the
// zoom needs more than the display version has), steps with the arrow keys, swipes and buttons through the album
// in the gallery's order ("12 of 45"), and loads the next photo while this one is looked at. It is a modal <dialog>:
// focus stays inside while it is open and goes back where it was when it closes (Esc, the close button).
(function () {
  'use strict';

  // -- the pure part --------------------------------------------------------------------------------------------

  /**
   * The version to show: the smallest whose pixels cover the photo as drawn on this screen (fitted into the box,
   * never enlarged, in device pixels), else the largest there is. `versions` are {width, height, url}, in any order.
   */
  function chooseVersion(versions, photoWidth, photoHeight, boxWidth, boxHeight, dpr) {
    if (!versions || !versions.length) return null;
    const sorted = versions.slice().sort((a, b) => a.width * a.height - b.width * b.height);
    const scale = Math.min(1, (boxWidth * dpr) / photoWidth, (boxHeight * dpr) / photoHeight);
    const neededWidth = Math.floor(photoWidth * scale);
    const neededHeight = Math.floor(photoHeight * scale);
    // A pixel short is still sharp: sizes are rounded when versions are made.
    return sorted.find((v) => v.width >= neededWidth - 1 && v.height >= neededHeight - 1) || sorted[sorted.length - 1];
  }

  /** How far the zoom may go: until one pixel of the original is one device pixel (at least 1: the fitted view). */
  function maxZoom(photoWidth, drawnCssWidth, dpr) {
    if (!drawnCssWidth) return 1;
    return Math.max(1, photoWidth / (drawnCssWidth * dpr));
  }

  window.photoq = window.photoq || {};
  window.photoq.viewerMath = { chooseVersion, maxZoom };

  if (!window.HTMLDialogElement || !window.photoq.urls) return;
  const urls = window.photoq.urls;

  // -- state ----------------------------------------------------------------------------------------------------

  const SWIPE_PX = 50;
  const ZOOM_STEP = 1.5;
  const info = new Map();  // photo id -> its /display answer (a promise)
  let dialog = null;
  let ui = {};
  let ids = [];
  let index = 0;
  let current = null;  // the /display answer on show
  let opener = null;
  let zoom = 1;
  let panX = 0;
  let panY = 0;
  let showing = null;  // the URL on show
  let onClose = null;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === 'text') node.textContent = value; else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function svgIcon(path) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'icon');
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', path);
    p.setAttribute('fill', 'none');
    p.setAttribute('stroke', 'currentColor');
    p.setAttribute('stroke-width', '2');
    p.setAttribute('stroke-linecap', 'round');
    p.setAttribute('stroke-linejoin', 'round');
    svg.append(p);
    return svg;
  }

  function build() {
    ui.count = el('p', { class: 'viewer-count', id: 'viewer-count', 'aria-live': 'polite' });
    ui.name = el('p', { class: 'viewer-name', id: 'viewer-name' });
    ui.details = el('a', { class: 'button ghost small viewer-details', href: '#', text: 'Details' });
    ui.close = el('button', { class: 'viewer-button viewer-close', type: 'button', 'aria-label': 'Close (Esc)' },
      [svgIcon('M6 6l12 12M18 6 6 18')]);
    ui.img = el('img', { class: 'viewer-img', alt: '', draggable: 'false', decoding: 'async' });
    ui.stage = el('div', { class: 'viewer-stage' }, [ui.img]);
    ui.prev = el('button', { class: 'viewer-button viewer-prev', type: 'button', 'aria-label': 'Previous photo' },
      [svgIcon('M14.5 6 8.5 12l6 6')]);
    ui.next = el('button', { class: 'viewer-button viewer-next', type: 'button', 'aria-label': 'Next photo' },
      [svgIcon('m9.5 6 6 6-6 6')]);
    ui.zoomOut = el('button', { class: 'viewer-button', type: 'button', 'aria-label': 'Zoom out' }, [svgIcon('M6 12h12')]);
    ui.zoomIn = el('button', { class: 'viewer-button', type: 'button', 'aria-label': 'Zoom in' }, [svgIcon('M6 12h12M12 6v12')]);
    ui.zoomText = el('span', { class: 'viewer-zoom-text', 'aria-live': 'off' });
    dialog = el('dialog', { class: 'viewer', 'aria-labelledby': 'viewer-name', 'aria-describedby': 'viewer-count' }, [
      el('div', { class: 'viewer-top' }, [ui.count, ui.name, ui.details, ui.close]),
      ui.stage, ui.prev, ui.next,
      el('div', { class: 'viewer-zoom' }, [ui.zoomOut, ui.zoomText, ui.zoomIn]),
    ]);
    document.body.append(dialog);

    ui.close.addEventListener('click', close);
    ui.prev.addEventListener('click', () => step(-1));
    ui.next.addEventListener('click', () => step(1));
    ui.zoomIn.addEventListener('click', () => setZoom(zoom * ZOOM_STEP));
    ui.zoomOut.addEventListener('click', () => setZoom(zoom / ZOOM_STEP));
    dialog.addEventListener('close', finishClose);
    dialog.addEventListener('keydown', onKey);
    ui.stage.addEventListener('wheel', onWheel, { passive: false });
    ui.stage.addEventListener('dblclick', (event) => toggleZoom(event.clientX, event.clientY));
    ui.stage.addEventListener('pointerdown', onPointerDown);
    ui.stage.addEventListener('pointermove', onPointerMove);
    ui.stage.addEventListener('pointerup', onPointerUp);
    ui.stage.addEventListener('pointercancel', onPointerUp);
    ui.img.addEventListener('load', () => { ui.img.classList.remove('loading'); applyTransform(); });
    window.addEventListener('resize', () => { if (dialog.open) { pickSource(); applyTransform(); } });
  }

  // -- data -----------------------------------------------------------------------------------------------------

  function display(id) {
    if (!info.has(id)) {
      const request = fetch(urls.photoDisplayApi(id), { credentials: 'same-origin' })
        .then((r) => (r.ok ? r.json() : null)).catch(() => null);
      info.set(id, request);
      request.then((answer) => { if (!answer) info.delete(id); });
    }
    return info.get(id);
  }

  function sourceFor(photo, wantZoom) {
    const box = ui.stage.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const width = (box.width || window.innerWidth) * wantZoom;
    const height = (box.height || window.innerHeight) * wantZoom;
    const choices = photo.versions.slice();
    // Zoomed in past what the display versions hold: the original, when a browser can show it.
    const best = chooseVersion(choices, photo.width, photo.height, width, height, dpr);
    if (photo.original && (!best || (wantZoom > 1 && best.width < Math.min(photo.width, width * dpr) - 1))) {
      return photo.original.url;
    }
    return best ? best.url : (photo.original ? photo.original.url : null);
  }

  function preload(id) {
    display(id).then((photo) => {
      if (!photo || !dialog.open) return;
      const url = sourceFor(photo, 1);
      if (url) { const image = new Image(); image.decoding = 'async'; image.src = url; }
    });
  }

  // -- showing --------------------------------------------------------------------------------------------------

  async function show(newIndex) {
    index = Math.max(0, Math.min(ids.length - 1, newIndex));
    const id = ids[index];
    ui.count.textContent = (index + 1) + ' of ' + ids.length;
    ui.prev.disabled = index === 0;
    ui.next.disabled = index === ids.length - 1;
    ui.details.href = urls.photoPage(id);
    dialog.dataset.photoId = String(id);
    const photo = await display(id);
    if (ids[index] !== id) return;  // stepped on meanwhile
    current = photo;
    zoom = 1; panX = 0; panY = 0;
    if (!photo) {
      ui.name.textContent = 'This photo is gone.';
      ui.img.removeAttribute('src');
      showing = null;
      return;
    }
    ui.name.textContent = photo.filename;
    ui.img.alt = photo.filename;
    showing = null;
    pickSource();
    applyTransform();
    if (index + 1 < ids.length) preload(ids[index + 1]);
    if (index > 0) preload(ids[index - 1]);
  }

  function pickSource() {
    if (!current) return;
    const url = sourceFor(current, zoom);
    if (url && url !== showing) {
      // A bigger file for the same photo: keep the smaller one on show until it has loaded.
      const samePhoto = showing && ui.img.dataset.photoId === String(current.id);
      showing = url;
      if (samePhoto) {
        const bigger = new Image();
        bigger.onload = () => { if (showing === url) ui.img.src = url; };
        bigger.src = url;
      } else {
        ui.img.classList.add('loading');
        ui.img.dataset.photoId = String(current.id);
        ui.img.src = url;
      }
      dialog.dataset.showing = url;
    }
  }

  function step(delta) {
    const target = index + delta;
    if (target < 0 || target >= ids.length) return;
    show(target);
  }

  // -- zoom and pan ---------------------------------------------------------------------------------------------

  /** The photo's size on screen at zoom 1, in CSS pixels: fitted into the stage, never larger than its pixels. */
  function baseSize() {
    const box = ui.stage.getBoundingClientRect();
    if (!current || !box.width || !box.height) return { width: box.width, height: box.height };
    const scale = Math.min(1, box.width / current.width, box.height / current.height);
    return { width: current.width * scale, height: current.height * scale };
  }

  function limit() {
    if (!current) return 1;
    return maxZoom(current.width, baseSize().width, window.devicePixelRatio || 1);
  }

  function setZoom(value, clientX, clientY) {
    const top = limit();
    const next = Math.min(top, Math.max(1, value));
    if (clientX !== undefined) {
      // Keep the point under the pointer where it is.
      const box = ui.stage.getBoundingClientRect();
      const cx = clientX - box.left - box.width / 2;
      const cy = clientY - box.top - box.height / 2;
      panX = cx - ((cx - panX) * next) / zoom;
      panY = cy - ((cy - panY) * next) / zoom;
    }
    zoom = next;
    if (zoom === 1) { panX = 0; panY = 0; }
    pickSource();
    applyTransform();
  }

  function toggleZoom(clientX, clientY) {
    setZoom(zoom > 1 ? 1 : limit(), clientX, clientY);
  }

  function applyTransform() {
    if (!dialog) return;
    const box = ui.stage.getBoundingClientRect();
    const base = baseSize();
    const baseWidth = base.width;
    const baseHeight = base.height;
    ui.img.style.width = baseWidth + 'px';
    ui.img.style.height = baseHeight + 'px';
    const spareX = Math.max(0, (baseWidth * zoom - box.width) / 2);
    const spareY = Math.max(0, (baseHeight * zoom - box.height) / 2);
    panX = Math.max(-spareX, Math.min(spareX, panX));
    panY = Math.max(-spareY, Math.min(spareY, panY));
    ui.img.style.transform = 'translate(' + panX + 'px, ' + panY + 'px) scale(' + zoom + ')';
    ui.zoomText.textContent = Math.round(zoom * 100) + '%';
    ui.zoomIn.disabled = zoom >= limit() - 0.001;
    ui.zoomOut.disabled = zoom <= 1;
    dialog.dataset.zoom = zoom.toFixed(3);
    dialog.classList.toggle('zoomed', zoom > 1);
  }

  function onWheel(event) {
    event.preventDefault();
    const factor = Math.exp(-event.deltaY * (event.ctrlKey ? 0.01 : 0.002));
    setZoom(zoom * factor, event.clientX, event.clientY);
  }

  const pointers = new Map();
  let gesture = null;

  function onPointerDown(event) {
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    try {
      ui.stage.setPointerCapture(event.pointerId);  // moves outside the stage still belong to the gesture
    } catch (e) {
      // a pointer the browser no longer tracks (or a synthetic one): the gesture works without capture
    }
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    const points = Array.from(pointers.values());
    if (points.length === 2) {
      gesture = { kind: 'pinch', distance: distance(points), zoom };
    } else if (points.length === 1) {
      gesture = { kind: 'drag', x: event.clientX, y: event.clientY, panX, panY, moved: false };
    }
  }

  function distance(points) {
    return Math.hypot(points[0].x - points[1].x, points[0].y - points[1].y) || 1;
  }

  function onPointerMove(event) {
    if (!pointers.has(event.pointerId) || !gesture) return;
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    const points = Array.from(pointers.values());
    if (gesture.kind === 'pinch' && points.length === 2) {
      const midX = (points[0].x + points[1].x) / 2;
      const midY = (points[0].y + points[1].y) / 2;
      setZoom(gesture.zoom * (distance(points) / gesture.distance), midX, midY);
    } else if (gesture.kind === 'drag') {
      const dx = event.clientX - gesture.x;
      const dy = event.clientY - gesture.y;
      if (Math.abs(dx) > 3 || Math.abs(dy) > 3) gesture.moved = true;
      if (zoom > 1) {
        panX = gesture.panX + dx;
        panY = gesture.panY + dy;
        applyTransform();
      } else {
        ui.img.style.transform = 'translate(' + dx + 'px, 0)';  // follows the finger until it lets go
      }
    }
  }

  function onPointerUp(event) {
    if (!pointers.has(event.pointerId)) return;
    pointers.delete(event.pointerId);
    const finished = gesture;
    if (pointers.size === 0) gesture = null;
    else if (finished && finished.kind === 'pinch') {
      const [rest] = pointers.values();
      gesture = { kind: 'drag', x: rest.x, y: rest.y, panX, panY, moved: true };
      return;
    }
    if (finished && finished.kind === 'drag' && zoom === 1) {
      const dx = event.clientX - finished.x;
      const dy = event.clientY - finished.y;
      applyTransform();
      if (Math.abs(dx) > SWIPE_PX && Math.abs(dx) > Math.abs(dy)) step(dx < 0 ? 1 : -1);
    }
  }

  // -- keys -----------------------------------------------------------------------------------------------------

  /** Tab and Shift+Tab go round the viewer's controls: a modal dialog alone lets focus leave for the browser. */
  function trapTab(event) {
    const focusable = Array.from(dialog.querySelectorAll('button:not(:disabled), a[href]'))
      .filter((node) => node.offsetParent !== null || node === document.activeElement);
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  }

  function onKey(event) {
    if (event.key === 'Tab') { trapTab(event); return; }
    if (event.altKey || event.metaKey) return;
    const keys = {
      ArrowLeft: () => step(-1), ArrowRight: () => step(1), Home: () => show(0), End: () => show(ids.length - 1),
      '+': () => setZoom(zoom * ZOOM_STEP), '=': () => setZoom(zoom * ZOOM_STEP), '-': () => setZoom(zoom / ZOOM_STEP),
      0: () => setZoom(1),
    };
    const action = keys[event.key];
    if (!action || event.ctrlKey) return;
    event.preventDefault();
    action();
  }

  // -- open and close -------------------------------------------------------------------------------------------

  /**
   * Open on `photoId` of the album, stepping through it in `order`. `options.ids`: the sequence, when the page has
   * it already; `options.onClose(lastId)`: called once closed.
   */
  async function open(albumId, photoId, options) {
    options = options || {};
    if (!dialog) build();
    opener = document.activeElement;
    onClose = options.onClose || null;
    ids = [Number(photoId)];
    index = 0;
    dialog.showModal();
    ui.close.focus();
    document.documentElement.classList.add('viewer-open');
    show(0);
    let sequence = options.ids;
    if (!sequence) {
      try {
        const response = await fetch(urls.albumPhotoIdsApi(albumId, options.order), { credentials: 'same-origin' });
        sequence = response.ok ? (await response.json()).ids : null;
      } catch (e) {
        sequence = null;
      }
    }
    if (sequence && dialog.open && ids.length === 1 && ids[0] === Number(photoId)) {
      const at = sequence.indexOf(Number(photoId));
      if (at >= 0) {
        ids = sequence;
        show(at);
      }
    }
  }

  function close() {
    if (dialog && dialog.open) dialog.close();
  }

  function finishClose() {
    document.documentElement.classList.remove('viewer-open');
    ui.img.removeAttribute('src');
    showing = null;
    const last = ids[index];
    const callback = onClose;
    onClose = null;
    const target = callback ? callback(last) : null;
    const focusable = target || opener;
    if (focusable && focusable.isConnected && typeof focusable.focus === 'function') focusable.focus();
  }

  window.photoq.viewer = { open, close, isOpen: () => !!(dialog && dialog.open), current: () => ids[index] };

  // -- wiring: the gallery's tiles and the photo page's picture --------------------------------------------------

  for (const button of document.querySelectorAll('.js-only[data-viewer-open]')) button.hidden = false;

  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    const trigger = event.target.closest('[data-viewer-open]');
    if (trigger) {
      event.preventDefault();
      open(trigger.dataset.albumId, trigger.dataset.photoId, { order: trigger.dataset.order });
      return;
    }
    const link = event.target.closest('#gallery .tile-link');
    if (!link || document.documentElement.dataset.selecting === '1') return;
    const tile = link.closest('.tile');
    const gallery = document.getElementById('gallery');
    const root = document.getElementById('album');
    if (!tile || tile.dataset.state !== 'done' || !root) return;  // a placeholder opens the photo page
    event.preventDefault();
    open(root.dataset.albumId, tile.dataset.photoId, {
      order: gallery.dataset.order || undefined,
      onClose: (lastId) => {
        const last = document.getElementById('photo-' + lastId);
        const lastLink = last && last.querySelector('.tile-link');
        if (lastLink) lastLink.scrollIntoView({ block: 'nearest' });
        return lastLink;
      },
    });
  });
})();
