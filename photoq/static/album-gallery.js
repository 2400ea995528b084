// photoq album page, the live gallery: SSE `photo` events turn placeholders into thumbnails, `stats` events drive
// "Processing n of m", failures are listed with their retry buttons. album-uploader.js hands it the photos it
// uploaded through window.photoq.album.
(function () {
  'use strict';

  const root = document.getElementById('album');
  if (!root || !window.photoq) return;
  const { csrf, api, events, announce, fetchPage, el, plural, urls } = window.photoq;

  const albumId = root.dataset.albumId;
  const blockMode = root.dataset.block === '1';
  const livePage = root.dataset.live === '1';  // the newest page: new photos appear here
  const thumbs = JSON.parse(root.dataset.thumbs || '[]');

  const $ = (id) => document.getElementById(id);
  const gallery = $('gallery');
  const uploadPanel = $('upload-panel');
  const processingPanel = $('processing-panel');

  function icon(name, cls) {
    const template = $('icon-' + name);
    const svg = template ? template.content.firstElementChild.cloneNode(true) : null;
    if (svg && cls) svg.setAttribute('class', cls);
    return svg;
  }

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
    return el('form', { class: 'tile-retry js-retry', method: 'post', action: urls.photoRetryForm(id) }, [
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

    const link = el('a', { class: 'tile-link', href: urls.photoPage(id) });
    if (state === 'done') {
      const middle = thumbs.length ? thumbs[Math.floor(thumbs.length / 2)][0] : 'original';
      // Made just now (the event says so): a fresh token, so a re-rendered thumbnail is never a cached old one.
      const version = photo.thumbnail_status === 'complete' ? Date.now().toString(16) : null;
      link.append(el('img', {
        class: 'tile-img', src: urls.photoFile(id, middle, version), alt: filename, decoding: 'async',
        srcset: thumbs.map(([name, width]) => urls.photoFile(id, name, version) + ' ' + width + 'w').join(', '),
        sizes: '(min-width: 40rem) 12rem, 34vw',
      }));
    } else {
      const marker = state === 'failed' ? icon('alert', 'state-icon')
        : el('span', { class: 'spinner' + (state === 'queued' ? ' idle' : ''), 'aria-hidden': 'true' });
      link.append(el('span', { class: 'placeholder' }, [
        el('span', { class: 'placeholder-state' }, [marker, el('span', { class: 'state-label', text: STATE_LABELS[state] })]),
        el('span', { class: 'placeholder-name', title: filename, text: window.photoq.format.shortName(filename, 20) }),
      ]));
    }
    const children = [link];
    if (failed) children.push(retryForm(id, filename));
    const hadFocus = tile.contains(document.activeElement);
    tile.replaceChildren(...children);
    if (state === 'done') paintPlaceholder(tile);
    if (hadFocus) link.focus();
  }

  const failedEvents = new Map();  // photo id -> its failure event, to list it again once its name is known

  function addTile(photo, filename) {
    let tile = tileFor(photo.id);
    if (!tile) {
      if (!livePage) return null;
      tile = el('li', { class: 'tile', id: 'photo-' + photo.id, 'data-photo-id': String(photo.id), 'data-filename': filename });
      // Newest first: before the first tile with a smaller id.
      const after = Array.from(gallery.querySelectorAll(".tile")).find((t) => Number(t.dataset.photoId) < photo.id);
      gallery.insertBefore(tile, after || null);
      $('gallery-empty').hidden = true;
      uploadPanel.classList.add('compact');  // the album has photos: the drop zone makes room for them
    } else if (filename && !tile.dataset.filename) {
      tile.dataset.filename = filename;
    }
    renderTile(tile, photo);
    // A failure reported before this tile knew its file's name is listed again under that name.
    const failed = failedEvents.get(photo.id);
    if (failed && filename) updateErrorReport(failed);
    return tile;
  }

  // -- error report ----------------------------------------------------------------------------------------------

  const errorReport = $('error-report');
  const errorList = $('error-list');

  function updateErrorReport(photo) {
    const existing = document.getElementById('error-' + photo.id);
    if (photo.processing_status !== 'failed') {
      failedEvents.delete(photo.id);
      if (existing) existing.remove();
      if (!errorList.children.length) errorReport.hidden = true;
      return;
    }
    failedEvents.set(photo.id, photo);
    const tile = tileFor(photo.id);
    const filename = (tile && tile.dataset.filename) || ('Photo ' + photo.id);
    const retry = retryForm(photo.id, filename);
    retry.className = 'js-retry';
    retry.querySelector('button').className = 'button small ghost';
    const item = el('li', { id: 'error-' + photo.id, 'data-photo-id': String(photo.id) }, [
      el('div', { class: 'error-main' }, [
        el('a', { href: urls.photoPage(photo.id), title: filename, text: window.photoq.format.shortName(filename, 48) }),
        el('p', { class: 'error-text', text: photo.error || 'Processing failed.' }),
      ]),
      el('div', { class: 'error-actions' }, [
        el('form', { method: 'post', action: urls.photoDeleteForm(photo.id) }, [
          el('input', { type: 'hidden', name: 'csrf_token', value: csrf }),
          el('button', { class: 'button small', type: 'submit', 'aria-label': 'Delete ' + filename }, [icon('trash', 'icon'), 'Delete']),
        ]),
        el('a', { class: 'button small ghost', href: urls.photoFile(photo.id, 'original'), download: filename,
          'aria-label': 'Download original of ' + filename }, [icon('download', 'icon'), 'Download original']),
        retry,
      ]),
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
        const response = await fetch(urls.albumPhotosApi(albumId, { limit: 500, after }), { credentials: 'same-origin' });
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
      const result = await api('POST', urls.photoRetryApi(id));
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
  let lastUnfinished = Number(root.dataset.unfinished);
  let lastSettled = Number(root.dataset.settled);
  // The album's batch (its work since its last idle moment) is counted by the server, so every page load, tab and
  // device shows the same "n of m". A finished batch is reported when this page saw it run, or when it is newer
  // than the one the page was rendered with (it ran between two stats events).
  let shownBatch = root.dataset.batchStarted || '';
  let sawRunning = root.dataset.batchRunning === '1';
  const processingText = $('processing-text');
  const processingBar = $('processing-progress');
  const eta = window.photoq.etaCountdown((text) => {
    const line = $('processing-eta');
    if (line.textContent !== text) line.textContent = text;
    line.hidden = !text;
  });
  const speak = window.photoq.politeAnnouncer($('processing-live'));

  /** What the progress line says of a batch. */
  function batchText(batch) {
    if (!batch.finished) return 'Processing ' + batch.done + ' of ' + batch.total;
    if (!batch.failed) return batch.total === 1 ? 'The photo is processed.' : 'All ' + batch.total + ' photos are processed.';
    if (!batch.complete) return 'Done: ' + plural(batch.failed, 'photo') + ' could not be processed.';
    return 'Done: ' + batch.complete + ' processed, ' + batch.failed + ' failed.';
  }

  function showBatch(batch) {
    const text = batchText(batch);
    processingPanel.hidden = false;
    processingPanel.dataset.state = !batch.finished ? 'running' : (batch.failed ? 'failed' : 'done');
    processingText.textContent = text;
    processingBar.max = Math.max(batch.total, 1);
    processingBar.value = batch.done;
    speak(text, batch.finished);
  }

  function onStats(stats) {
    const unfinished = stats.pending + stats.processing;
    const settled = stats.complete + stats.failed;
    if (settled > lastSettled) queueIsRunning();
    lastUnfinished = unfinished;
    lastSettled = settled;
    $('photo-total').textContent = String(stats.total);
    $('photo-total-s').textContent = stats.total === 1 ? '' : 's';
    setFailedCount(stats.failed);
    if (stats.failed > 0 && errorList.children.length) errorReport.hidden = false;

    eta.set(unfinished > 0 ? stats.eta_seconds : 0);
    const batch = stats.batch;
    if (batch && !batch.finished) {
      sawRunning = true;
      showBatch(batch);
    } else if (batch && (sawRunning || batch.started_at !== shownBatch)) {
      sawRunning = false;
      showBatch(batch);
    }
    if (batch) shownBatch = batch.started_at;
    if (!unfinished && busy) scheduleBusyCheck();
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

  // -- photos the uploader sent --------------------------------------------------------------------------------------

  /** An upload was accepted: its tile (with what events already said of it), or null when not on this page. */
  function photoUploaded(result, filename) {
    const known = unclaimed.get(result.id);
    unclaimed.delete(result.id);
    return addTile(known || { id: result.id, album_id: Number(albumId), processing_status: 'pending',
      thumbnail_status: 'pending', variant_status: 'pending', error: null }, filename);
  }

  window.photoq.album = { albumId, blockMode, isBusy: () => busy, setBusy, photoUploaded };

  // -- live updates ------------------------------------------------------------------------------------------------

  for (const tile of gallery.querySelectorAll('.tile[data-thumbhash]')) paintPlaceholder(tile);
  if (window.EventSource) {
    events(albumId, { stats: onStats, photo: onPhoto, resync: sync, lost: eta.stop });
  }
})();
