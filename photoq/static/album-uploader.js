// photoq album page, the uploader: file picker and drag and drop, a few files at a time by XMLHttpRequest (byte
// progress), large ones by resumable.js; each file's answer in the upload list. Accepted photos go to the gallery
// (album-gallery.js) through window.photoq.album.
(function () {
  'use strict';

  const root = document.getElementById('album');
  if (!root || !window.photoq || !window.photoq.album) return;
  const { csrf, announce, humanBytes, el, plural, urls } = window.photoq;
  const album = window.photoq.album;

  const albumId = album.albumId;
  const blockMode = album.blockMode;
  const maxFileBytes = Number(root.dataset.maxFileBytes) || Infinity;
  const CONCURRENCY = 3;
  const MAX_SERVER_RETRIES = 5;

  const $ = (id) => document.getElementById(id);
  const uploadPanel = $('upload-panel');
  const resultsPanel = $('upload-results');
  const uploadList = $('upload-list');
  const rowTemplate = $('upload-row-template');

  const speak = window.photoq.politeAnnouncer($('upload-live'));  // at most every few seconds, the outcome at once
  window.photoqAlbumPage = { uploadsStarted: 0, progressEvents: 0 };  // lets tests (and curious people) see the page is live

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
      skippedNotPhotos = 0;
      uploadList.replaceChildren();
      batch = newBatchId();
    }
    resultsPanel.hidden = false;
    $('upload-clear').hidden = true;
  }

  let skippedNotPhotos = 0;  // files of dropped or picked folders that are not photos (folders.js)

  function addFiles(fileList, skipped) {
    const files = Array.from(fileList || []);
    if (!files.length) {
      if (skipped) announce('No photos in that folder (' + plural(skipped, 'other file') + ' skipped).');
      return;
    }
    if (album.isBusy()) {
      announce('This album is still processing earlier uploads; try again when it is done.');
      return;
    }
    startBatch();
    skippedNotPhotos += skipped || 0;
    document.querySelectorAll('.flash').forEach((flash) => flash.remove());
    window.photoqAlbumPage.uploadsStarted += files.length;
    const fresh = files.map((file) => {
      const row = rowTemplate.content.firstElementChild.cloneNode(true);
      const name = row.querySelector('.upload-name');
      name.textContent = window.photoq.format.shortName(file.name, 28);
      name.title = file.name;
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
    // First the hashes: files the album already has are reported at once and never sent.
    checkThenSend(sendable);
    updateOverall();
  }

  // -- skipping what the album has: hash in the browser, ask the server, send the rest -------------------------------

  const hashQueue = [];
  let hashing = false;
  let toCheck = [];
  let checkTimer = null;
  const CHECK_BATCH = 200;

  function checkThenSend(fresh) {
    const hashingApi = window.photoq.hashing;
    if (!hashingApi) { queueForSending(fresh); return; }
    for (const entry of fresh) setRow(entry, 'checking', 'Checking…');
    hashQueue.push(...fresh);
    if (!hashing) hashNext();
  }

  async function hashNext() {
    hashing = true;
    while (hashQueue.length) {
      const entry = hashQueue.shift();
      try {
        entry.sha256 = await window.photoq.hashing.sha256File(entry.file, (done) => {
          if (entry.file.size > 8 * 1024 * 1024) setRow(entry, 'checking', 'Checking… ' + Math.floor((done / entry.file.size) * 100) + '%');
        });
        toCheck.push(entry);
      } catch (e) {
        queueForSending([entry]);  // unreadable here: the upload will say why
      }
      if (toCheck.length >= CHECK_BATCH) flushCheck();
      else if (!checkTimer) checkTimer = window.setTimeout(flushCheck, 250);
    }
    hashing = false;
    flushCheck();
  }

  async function flushCheck() {
    if (checkTimer) { window.clearTimeout(checkTimer); checkTimer = null; }
    const batchOfEntries = toCheck;
    toCheck = [];
    if (!batchOfEntries.length) return;
    let present = {};
    try {
      const result = await window.photoq.api('POST', urls.albumHashesApi(albumId),
        { sha256: batchOfEntries.map((e) => e.sha256) });
      if (result.status === 200 && result.data) present = result.data.photo_ids || {};
    } catch (e) {
      present = {};  // could not ask: send them all, the server still finds duplicates
    }
    const send = [];
    for (const entry of batchOfEntries) {
      const photoId = present[entry.sha256];
      if (photoId) {
        entry.skippedByHash = true;
        finish(entry, 'duplicate', 'Already in this album. Not sent again.', { href: urls.photoPage(photoId), text: 'See the photo' });
      } else {
        send.push(entry);
      }
    }
    queueForSending(send);
  }

  function queueForSending(list) {
    if (!list.length) return;
    for (const entry of list) if (!entry.done) setRow(entry, 'waiting', 'Waiting');
    // One file per request, a few at a time: real per-file progress and per-file answers. With
    // block_while_processing the batch header lets the rest of this selection in once its first file is.
    waiting.push(...list);
    pump();
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
      accepted: () => { if (blockMode) album.setBusy(true); },
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
    if (body && body.error === 'album_busy') album.setBusy(true);
  }

  function send(entry, attempt) {
    return new Promise((resolve) => {
      const form = new FormData();
      form.append('file', entry.file, entry.file.name);
      setRow(entry, 'uploading', 'Uploading…');
      const xhr = new XMLHttpRequest();
      xhr.open('POST', urls.albumPhotosApi(albumId));
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
          if (blockMode && body.accepted > 0) album.setBusy(true);
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
      const tile = album.photoUploaded(result, result.filename || entry.file.name);
      if (tile) entry.row.dataset.photoId = String(result.id);
    } else if (result.status === 'duplicate') {
      finish(entry, 'duplicate', 'Already in this album.', { href: urls.photoPage(result.duplicate_of), text: 'See the photo' });
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
    const notSent = finished.filter((e) => e.skippedByHash).length;
    const text = $('upload-text');
    if (finished.length < entries.length) {
      text.textContent = 'Uploading: ' + finished.length + ' of ' + plural(entries.length, 'file') + ' done';
      speak(text.textContent, false);
      $('upload-heading-live').textContent = 'Uploading';
    } else {
      const parts = [plural(uploaded, 'photo') + ' uploaded'];
      if (duplicates) parts.push(duplicates + ' already in the album' + (notSent ? ' (' + notSent + ' not sent)' : ''));
      if (rejected) parts.push(rejected + ' rejected');
      if (skippedNotPhotos) parts.push(plural(skippedNotPhotos, 'other file') + ' skipped (not photos)');
      text.textContent = parts.join(', ') + '.';
      speak(text.textContent, true);
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
    if (active > 0 || waiting.length || hashQueue.length || hashing) {
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

  const folderInput = $('folder-input');
  if (folderInput && 'webkitdirectory' in folderInput && window.photoq.folders) {
    folderInput.closest('.folder-pick').hidden = false;
    folderInput.addEventListener('change', () => {
      const { files, skipped } = window.photoq.folders.fromList(folderInput.files);
      addFiles(files, skipped);
      folderInput.value = '';
    });
  }

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
    if (uploadPanel.hidden) return;
    if (!window.photoq.folders) { addFiles(event.dataTransfer.files); return; }
    // Folders are walked for the photos inside them (the entries must be taken now, during the event).
    window.photoq.folders.fromDrop(event.dataTransfer).then((found) => {
      addFiles(found.files, found.skipped + found.unreadable);
    });
  });
})();
