// photoq album page: the uploader (file picker and drag and drop, XMLHttpRequest for byte progress) and the
// live gallery (SSE `photo` events turn placeholders into thumbnails, `stats` events drive "Processing n of m").
(function () {
  'use strict';

  const root = document.getElementById('album');
  if (!root || !window.photoq) return;
  const { csrf, api, events, announce, fetchPage, humanBytes } = window.photoq;

  const albumId = root.dataset.albumId;
  const blockMode = root.dataset.block === '1';
  const livePage = root.dataset.live === '1';  // the newest page: new photos appear here
  const thumbs = JSON.parse(root.dataset.thumbs || '[]');
  const maxFileBytes = Number(root.dataset.maxFileBytes) || Infinity;
  const CONCURRENCY = 3;
  const MAX_SERVER_RETRIES = 5;

  const $ = (id) => document.getElementById(id);
  const gallery = $('gallery');
  const uploadPanel = $('upload-panel');
  const processingPanel = $('processing-panel');
  const resultsPanel = $('upload-results');
  const uploadList = $('upload-list');
  const rowTemplate = $('upload-row-template');

  window.photoqAlbumPage = { uploadsStarted: 0, progressEvents: 0 };  // lets tests (and curious people) see the page is live

  // -- helpers ---------------------------------------------------------------------------------------------------

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

  /** With a version, a URL the browser may keep for good: a tile made when its photo (re)completes gets a new one. */
  function fileUrl(id, variant, version) {
    return '/api/photos/' + id + '/file?variant=' + encodeURIComponent(variant) + (version ? '&v=' + version : '');
  }

  function icon(name, cls) {
    const template = $('icon-' + name);
    const svg = template ? template.content.firstElementChild.cloneNode(true) : null;
    if (svg && cls) svg.setAttribute('class', cls);
    return svg;
  }

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

  // -- ThumbHash placeholders -------------------------------------------------------------------------------------

  /** Paint a tile's ThumbHash behind its thumbnail until the thumbnail has loaded. */
  function paintPlaceholder(tile) {
    const link = tile.querySelector('.tile-link');
    const img = tile.querySelector('.tile-img');
    if (link && img) window.photoq.paintThumbHash(link, img, tile.dataset.thumbhash);
  }

  // -- gallery tiles ---------------------------------------------------------------------------------------------

  const STATE_LABELS = { queued: 'Queued', generating: 'Generating…', failed: 'Failed' };

  function tileState(photo) {
    if (photo.thumbnail_status === 'complete') return 'done';
    if (photo.processing_status === 'failed') return 'failed';
    if (photo.thumbhash) return 'done';  // made before (reprocess is making them again): they stay on show meanwhile
    if (photo.thumbnail_status === 'processing') return 'generating';
    return 'queued';
  }

  function tileFor(id) { return document.getElementById('photo-' + id); }

  function retryForm(id, filename) {
    return el('form', { class: 'tile-retry js-retry', method: 'post', action: '/photos/' + id + '/retry' }, [
      el('input', { type: 'hidden', name: 'csrf_token', value: csrf }),
      el('input', { type: 'hidden', name: 'next', value: window.location.pathname }),
      el('button', { class: 'button small', type: 'submit', 'aria-label': 'Retry ' + filename }, [icon('retry', 'icon'), 'Retry']),
    ]);
  }

  /** Bring a tile up to date with a photo's statuses; builds the same markup as templates/_tile.html. */
  function renderTile(tile, photo) {
    const id = Number(tile.dataset.photoId);
    const filename = tile.dataset.filename || ('Photo ' + id);
    const state = tileState(photo);
    const failed = photo.processing_status === 'failed';
    // Rendered again (`photoq reprocess`): the tile stayed "done" meanwhile, but its images are new.
    const rerendered = photo.processing_status === 'complete' && tile.dataset.status !== 'complete';
    tile.dataset.status = photo.processing_status;
    if (photo.thumbhash) tile.dataset.thumbhash = photo.thumbhash;
    if (tile.dataset.state === state && (tile.dataset.failed === '1') === failed && tile.firstElementChild
        && !rerendered) return;
    tile.dataset.state = state;
    if (failed) tile.dataset.failed = '1'; else delete tile.dataset.failed;

    const link = el('a', { class: 'tile-link', href: '/photos/' + id });
    if (state === 'done') {
      const middle = thumbs.length ? thumbs[Math.floor(thumbs.length / 2)][0] : 'original';
      const version = photo.thumbnail_status === 'complete' ? Date.now().toString(16) : '';
      link.append(el('img', {
        class: 'tile-img', src: fileUrl(id, middle, version), alt: filename, decoding: 'async',
        srcset: thumbs.map(([name, width]) => fileUrl(id, name, version) + ' ' + width + 'w').join(', '),
        sizes: '(min-width: 40rem) 12rem, 34vw',
      }));
    } else {
      const marker = state === 'failed' ? icon('alert', 'state-icon')
        : el('span', { class: 'spinner' + (state === 'queued' ? ' idle' : ''), 'aria-hidden': 'true' });
      link.append(el('span', { class: 'placeholder' }, [
        el('span', { class: 'placeholder-state' }, [marker, el('span', { class: 'state-label', text: STATE_LABELS[state] })]),
        el('span', { class: 'placeholder-name', text: filename }),
      ]));
    }
    const children = [link];
    if (failed) children.push(retryForm(id, filename));
    const hadFocus = tile.contains(document.activeElement);
    tile.replaceChildren(...children);
    if (state === 'done') paintPlaceholder(tile);
    if (hadFocus) link.focus();
  }

  function addTile(photo, filename) {
    let tile = tileFor(photo.id);
    if (!tile) {
      if (!livePage) return null;
      tile = el('li', { class: 'tile', id: 'photo-' + photo.id, 'data-photo-id': String(photo.id), 'data-filename': filename });
      // Newest first: before the first tile with a smaller id.
      const after = Array.from(gallery.querySelectorAll(".tile")).find((t) => Number(t.dataset.photoId) < photo.id);
      gallery.insertBefore(tile, after || null);
      $('gallery-empty').hidden = true;
    } else if (filename && !tile.dataset.filename) {
      tile.dataset.filename = filename;
    }
    renderTile(tile, photo);
    return tile;
  }

  // -- error report ----------------------------------------------------------------------------------------------

  const errorReport = $('error-report');
  const errorList = $('error-list');

  function updateErrorReport(photo) {
    const existing = document.getElementById('error-' + photo.id);
    if (photo.processing_status !== 'failed') {
      if (existing) existing.remove();
      if (!errorList.children.length) errorReport.hidden = true;
      return;
    }
    const tile = tileFor(photo.id);
    const filename = (tile && tile.dataset.filename) || ('Photo ' + photo.id);
    const item = el('li', { id: 'error-' + photo.id, 'data-photo-id': String(photo.id) }, [
      el('div', { class: 'error-main' }, [
        el('a', { href: '/photos/' + photo.id, text: filename }),
        el('p', { class: 'error-text', text: photo.error || 'Processing failed.' }),
      ]),
      (() => { const form = retryForm(photo.id, filename); form.className = 'js-retry'; return form; })(),
    ]);
    if (existing) existing.replaceWith(item); else errorList.prepend(item);
    errorReport.hidden = false;
    // The coalesced stats event follows within a moment; until then, count what is listed.
    if (errorList.children.length > Number($('errors-count').textContent)) setFailedCount(errorList.children.length);
  }

  function setFailedCount(n) {
    $('errors-count').textContent = String(n);
    $('errors-count-s').textContent = n === 1 ? '' : 's';
    if (n === 0) { errorReport.hidden = true; }
  }

  // -- photo events ----------------------------------------------------------------------------------------------

  const unclaimed = new Map();  // photo id -> latest event, for photos not on the page yet
  let discoverTimer = null;

  function onPhoto(photo) {
    if (String(photo.album_id) !== String(albumId)) return;
    const tile = tileFor(photo.id);
    if (tile) renderTile(tile, photo);
    else if (livePage) {
      unclaimed.set(photo.id, photo);
      // Our own uploads claim their tiles when their response arrives; others are looked up in a moment.
      if (!discoverTimer) discoverTimer = window.setTimeout(() => { discoverTimer = null; if (unclaimed.size) sync(); }, 1500);
    }
    updateErrorReport(photo);
    if (busy) scheduleBusyCheck();
  }

  /** Catch up with the server: statuses of unfinished tiles, and photos added elsewhere (another tab, curl). */
  let syncing = false;
  async function sync() {
    if (syncing) return;
    syncing = true;
    try {
      const tiles = Array.from(gallery.querySelectorAll(".tile"));
      const unfinished = tiles.filter((t) => t.dataset.status === 'pending' || t.dataset.status === 'processing');
      const ids = tiles.map((t) => Number(t.dataset.photoId));
      const newest = ids.length ? Math.max(...ids) : 0;
      let after = newest;
      if (unfinished.length) after = Math.min(after, ...unfinished.map((t) => Number(t.dataset.photoId) - 1));
      if (!livePage && !unfinished.length) return;
      for (let page = 0; page < 20; page += 1) {
        const response = await fetch('/api/albums/' + albumId + '/photos?limit=500&after=' + after, { credentials: 'same-origin' });
        if (!response.ok) return;
        const body = await response.json();
        for (const photo of body.photos) {
          unclaimed.delete(photo.id);
          if (tileFor(photo.id)) renderTile(tileFor(photo.id), photo);
          else if (photo.id > newest) addTile(photo, photo.filename);
          updateErrorReport(photo);
        }
        if (!body.next) break;
        after = Number(body.next);
      }
    } catch (e) {
      // offline for a moment: the next (re)connection syncs again
    } finally {
      syncing = false;
    }
  }

  // -- retry buttons (tiles and error report) ---------------------------------------------------------------------

  document.addEventListener('submit', async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains('js-retry')) return;
    event.preventDefault();
    const id = Number(form.action.match(/\/photos\/(\d+)\/retry/)[1]);
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const result = await api('POST', '/api/photos/' + id + '/retry');
      if (result.status === 202 && result.data) {
        onPhoto(result.data);
        announce('Queued again.');
      } else if (result.status === 409) {
        // Already retried elsewhere, or still running: show what the server says and refresh the tile.
        announce((result.data && result.data.message) || 'Nothing to retry.');
        sync();
      } else {
        form.submit();  // fall back to the plain form post
      }
    } catch (e) {
      form.submit();
    } finally {
      if (button.isConnected) button.disabled = false;
    }
  });

  // -- processing progress ("Processing 12 of 50") ----------------------------------------------------------------

  let busy = root.dataset.busy === '1';
  let runActive = Number(root.dataset.unfinished) > 0;
  let idleSettled = Number(root.dataset.settled);  // complete + failed when the current run began
  let idleFailed = Number(root.dataset.failed);
  let lastUnfinished = Number(root.dataset.unfinished);
  let lastSettled = Number(root.dataset.settled);
  const processingText = $('processing-text');
  const processingBar = $('processing-progress');
  const eta = window.photoq.etaCountdown((text) => {
    const line = $('processing-eta');
    if (line.textContent !== text) line.textContent = text;
    line.hidden = !text;
  });

  function onStats(stats) {
    const unfinished = stats.pending + stats.processing;
    const settled = stats.complete + stats.failed;
    if (settled > lastSettled) queueIsRunning();
    lastUnfinished = unfinished;
    $('photo-total').textContent = String(stats.total);
    $('photo-total-s').textContent = stats.total === 1 ? '' : 's';
    setFailedCount(stats.failed);
    if (stats.failed > 0 && errorList.children.length) errorReport.hidden = false;

    lastSettled = settled;
    eta.set(unfinished > 0 ? stats.eta_seconds : 0);
    if (unfinished > 0) {
      if (!runActive) { runActive = true; }
      const done = Math.max(0, settled - idleSettled);
      const total = done + unfinished;
      processingPanel.hidden = false;
      processingText.textContent = 'Processing ' + done + ' of ' + total;
      processingBar.max = total;
      processingBar.value = done;
    } else {
      // A run can start and end between two stats events (a fast photo, or one that fails at once): it still ran.
      if (runActive || settled > idleSettled) {
        const done = Math.max(0, settled - idleSettled);
        const failed = Math.max(0, stats.failed - idleFailed);
        const ok = done - failed;
        if (!done) processingText.textContent = 'Processing is done.';
        else if (!failed) processingText.textContent = done === 1 ? 'The photo is processed.' : 'All ' + done + ' photos are processed.';
        else if (!ok) processingText.textContent = 'Done: ' + plural(failed, 'photo') + ' could not be processed.';
        else processingText.textContent = 'Done: ' + ok + ' processed, ' + failed + ' failed.';
        processingBar.max = 1;
        processingBar.value = 1;
        runActive = false;
      }
      idleSettled = settled;
      idleFailed = stats.failed;
      if (busy) scheduleBusyCheck();
    }
  }

  /** Photos are being finished, so the queue is not paused (any more): drop the stale "paused" notices. */
  function queueIsRunning() {
    const note = $('paused-note');
    if (note) note.remove();
    document.querySelectorAll('.mainnav .pill-warn').forEach((pill) => pill.remove());
  }

  // -- block_while_processing: the upload form comes back by itself --------------------------------------------------

  let busyTimer = null;
  function scheduleBusyCheck() {
    if (busyTimer || lastUnfinished > 0) return;
    busyTimer = window.setTimeout(checkBusy, 300);
  }

  async function checkBusy() {
    busyTimer = null;
    const fresh = await fetchPage(window.location.pathname);
    const freshRoot = fresh && fresh.getElementById('album');
    if (freshRoot && freshRoot.dataset.busy === '0') {
      setBusy(false);
      announce('Processing is done. You can upload more photos.');
    } else if (lastUnfinished === 0) {
      busyTimer = window.setTimeout(checkBusy, 2000);  // a last job of a failed photo may still be running
    }
  }

  function setBusy(value) {
    busy = value;
    root.dataset.busy = value ? '1' : '0';
    uploadPanel.hidden = value;
    $('busy-note').hidden = !value;
    if (value) processingPanel.hidden = false;
  }

  // -- uploads ---------------------------------------------------------------------------------------------------

  let entries = [];  // {file, row, bar, status, loaded, done}
  const waiting = [];
  let active = 0;
  let batch = null;  // X-Photoq-Batch: the requests of one selection belong together

  function newBatchId() {
    const bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function startBatch() {
    // A new selection after the last one finished starts a fresh list.
    if (active === 0 && !waiting.length) {
      entries = [];
      uploadList.replaceChildren();
      batch = newBatchId();
    }
    resultsPanel.hidden = false;
    $('upload-clear').hidden = true;
  }

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    if (busy) {
      announce('This album is still processing earlier uploads; try again when it is done.');
      return;
    }
    startBatch();
    document.querySelectorAll('.flash').forEach((flash) => flash.remove());
    window.photoqAlbumPage.uploadsStarted += files.length;
    const fresh = files.map((file) => {
      const row = rowTemplate.content.firstElementChild.cloneNode(true);
      row.querySelector('.upload-name').textContent = file.name;
      row.querySelector('.upload-size').textContent = humanBytes(file.size);
      const bar = row.querySelector('.upload-bar');
      bar.max = Math.max(file.size, 1);
      bar.setAttribute('aria-label', 'Upload of ' + file.name);
      uploadList.append(row);
      const entry = { file, row, bar, status: row.querySelector('.upload-status'), loaded: 0, done: false };
      entries.push(entry);
      return entry;
    });
    const sendable = [];
    for (const entry of fresh) {
      if (entry.file.size > maxFileBytes) {
        finish(entry, 'rejected', 'The file is larger than the ' + humanBytes(maxFileBytes) + ' allowed.');
      } else {
        sendable.push(entry);
      }
    }
    // One file per request, a few at a time: real per-file progress and per-file answers. With
    // block_while_processing the batch header lets the rest of this selection in once its first file is.
    waiting.push(...sendable);
    pump();
    updateOverall();
  }

  function pump() {
    while (active < CONCURRENCY && waiting.length) {
      const entry = waiting.shift();
      active += 1;
      sendFile(entry).finally(() => {
        active -= 1;
        pump();
        updateOverall();
      });
    }
  }

  /** Files above data-resumable-threshold go as resumable uploads (resumable.js), the rest as multipart. */
  function sendFile(entry) {
    const resumable = window.photoq.resumable;
    if (!resumable || !resumable.wanted(entry.file)) return send(entry, 0);
    return resumable.upload(entry, {
      batch, setRow, finish, handleResult, showProgress, refused,
      accepted: () => { if (blockMode) setBusy(true); },
    });
  }

  function setRow(entry, state, text) {
    entry.row.dataset.state = state;
    entry.status.textContent = text;
  }

  function finish(entry, state, text, link) {
    entry.done = true;
    entry.outcome = state;
    setRow(entry, state, '');
    if (link) {
      entry.status.append(text + ' ', el('a', { href: link.href, text: link.text }));
    } else {
      entry.status.textContent = text;
    }
    if (state === 'uploaded' || state === 'duplicate') entry.loaded = entry.file.size;
    entry.bar.value = entry.bar.max;
    updateOverall();
  }

  /** `sent` bytes of an upload are through: its row and the overall bar say so. */
  function showProgress(entry, sent) {
    const size = entry.file.size;
    entry.loaded = sent;
    entry.bar.value = sent;
    if (sent > 0 && !entry.done) {
      entry.row.dataset.state = 'uploading';
      entry.status.textContent = sent >= size ? 'Sent, waiting for the server…' : Math.floor((sent / Math.max(size, 1)) * 100) + '%';
    }
    updateOverall();
  }

  /** The server refused an upload: its message (or the HTTP status) next to the file. */
  function refused(entry, status, body) {
    if (status === 401) {
      finish(entry, 'rejected', 'Your session has ended.', { href: '/login?next=' + encodeURIComponent(window.location.pathname), text: 'Log in again' });
    } else {
      finish(entry, 'rejected', (body && body.message) || ('The upload failed (HTTP ' + status + ').'));
    }
    if (body && body.error === 'album_busy') setBusy(true);
  }

  function send(entry, attempt) {
    return new Promise((resolve) => {
      const form = new FormData();
      form.append('file', entry.file, entry.file.name);
      setRow(entry, 'uploading', 'Uploading…');
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/albums/' + albumId + '/photos');
      xhr.setRequestHeader('X-CSRF-Token', csrf);
      xhr.setRequestHeader('X-Photoq-Batch', batch);
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.onprogress = (event) => {
        if (!event.lengthComputable) return;
        window.photoqAlbumPage.progressEvents += 1;
        // The share of the request sent, as bytes of the file (multipart overhead is a few hundred bytes).
        showProgress(entry, (event.loaded / event.total) * entry.file.size);
      };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        const status = xhr.status;
        if ((status === 503 || status === 429) && attempt < MAX_SERVER_RETRIES) {
          const wait = Math.min(Number(xhr.getResponseHeader('Retry-After')) || 5, 120);
          setRow(entry, 'waiting', 'Server busy; trying again in ' + wait + ' s');
          window.setTimeout(() => send(entry, attempt + 1).then(resolve), wait * 1000);
          return;
        }
        if (body && Array.isArray(body.photos) && body.photos.length === 1) {
          handleResult(entry, body.photos[0]);
          if (blockMode && body.accepted > 0) setBusy(true);
        } else {
          refused(entry, status, body);
        }
        resolve();
      };
      xhr.onerror = () => {
        finish(entry, 'rejected', 'The upload did not reach the server (network error).');
        resolve();
      };
      xhr.send(form);
    });
  }

  function handleResult(entry, result) {
    if (result.status === 'pending') {
      finish(entry, 'uploaded', 'Uploaded');
      const known = unclaimed.get(result.id);
      unclaimed.delete(result.id);
      const tile = addTile(known || { id: result.id, album_id: Number(albumId), processing_status: 'pending',
        thumbnail_status: 'pending', variant_status: 'pending', error: null }, result.filename || entry.file.name);
      if (tile) entry.row.dataset.photoId = String(result.id);
    } else if (result.status === 'duplicate') {
      finish(entry, 'duplicate', 'Already in this album.', { href: '/photos/' + result.duplicate_of, text: 'See the photo' });
    } else {
      finish(entry, 'rejected', result.message || 'The server refused this file.');
    }
  }

  function updateOverall() {
    if (!entries.length) return;
    const counted = entries.filter((e) => e.outcome !== 'rejected' || e.loaded > 0 || !e.done);
    const total = counted.reduce((sum, e) => sum + e.file.size, 0);
    const sent = counted.reduce((sum, e) => sum + Math.min(e.loaded, e.file.size), 0);
    const progress = $('upload-progress');
    progress.max = Math.max(total, 1);
    progress.value = Math.min(sent, progress.max);
    progress.dataset.sentBytes = String(sent);
    progress.dataset.totalBytes = String(total);
    $('upload-bytes').textContent = humanBytes(sent) + ' of ' + humanBytes(total) + ' sent';
    const finished = entries.filter((e) => e.done);
    const uploaded = finished.filter((e) => e.outcome === 'uploaded').length;
    const duplicates = finished.filter((e) => e.outcome === 'duplicate').length;
    const rejected = finished.filter((e) => e.outcome === 'rejected').length;
    const text = $('upload-text');
    if (finished.length < entries.length) {
      text.textContent = 'Uploading: ' + finished.length + ' of ' + plural(entries.length, 'file') + ' done';
      $('upload-heading-live').textContent = 'Uploading';
    } else {
      const parts = [plural(uploaded, 'photo') + ' uploaded'];
      if (duplicates) parts.push(duplicates + ' already in the album');
      if (rejected) parts.push(rejected + ' rejected');
      text.textContent = parts.join(', ') + '.';
      $('upload-heading-live').textContent = 'Upload finished';
      $('upload-clear').hidden = false;
      progress.value = progress.max;
    }
  }

  $('upload-clear').addEventListener('click', () => {
    entries = [];
    uploadList.replaceChildren();
    resultsPanel.hidden = true;
    $('file-input').focus();
  });

  window.addEventListener('beforeunload', (event) => {
    if (active > 0 || waiting.length) {
      event.preventDefault();
      event.returnValue = '';
    }
  });

  // -- picking and dropping files ----------------------------------------------------------------------------------

  const input = $('file-input');
  input.addEventListener('change', () => {
    addFiles(input.files);
    input.value = '';
  });

  const dropzone = $('dropzone');
  let dragDepth = 0;
  function hasFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types || []).includes('Files');
  }
  document.addEventListener('dragenter', (event) => {
    if (!hasFiles(event) || uploadPanel.hidden) return;
    dragDepth += 1;
    dropzone.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropzone.classList.remove('dragging');
  });
  document.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();  // anywhere on the page: never let the browser open the file instead
    event.dataTransfer.dropEffect = uploadPanel.hidden ? 'none' : 'copy';
  });
  document.addEventListener('drop', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove('dragging');
    if (!uploadPanel.hidden) addFiles(event.dataTransfer.files);
  });

  // -- live updates ------------------------------------------------------------------------------------------------

  for (const tile of gallery.querySelectorAll('.tile[data-thumbhash]')) paintPlaceholder(tile);
  if (window.EventSource) {
    events(albumId, { stats: onStats, photo: onPhoto, resync: sync, lost: eta.stop });
  }
})();
