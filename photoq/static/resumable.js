// photoq album page: large files go up as resumable uploads (the tus protocol, /api/uploads, through the vendored
// tus-js-client in vendor/tus/), so a dropped connection resumes from the last byte the server has instead of
// starting over. album-uploader.js asks `wanted(file)` and hands such files to `upload(entry, page)`.
(function () {
  'use strict';

  const root = document.getElementById('album');
  if (!root || !window.photoq || !window.tus || !window.tus.isSupported) return;
  const { csrf } = window.photoq;

  const threshold = Number(root.dataset.resumableThreshold);
  const albumId = root.dataset.albumId;
  // Each chunk is a PATCH the server confirms; a break loses at most the chunk in flight.
  const CHUNK_BYTES = 8 * 1024 * 1024;
  // Attempts after a break; the count starts again whenever bytes got through, so a flaky link keeps going.
  const RETRY_DELAYS = [1000, 2000, 4000, 8000, 15000, 30000, 60000, 60000, 60000, 60000];
  const MAX_RESTARTS_WHEN_ONLINE = 5;  // after the delays ran out, the browser coming back online starts it again

  function wanted(file) {
    return Number.isFinite(threshold) && root.dataset.resumableThreshold !== '' && file.size > threshold;
  }

  function statusOf(err) {
    return err && err.originalResponse ? err.originalResponse.getStatus() : 0;
  }

  function bodyOf(err) {
    try {
      return JSON.parse(err.originalResponse.getBody());
    } catch (e) {
      return null;
    }
  }

  function retryable(status) {
    return status === 0 || status === 409 || status === 423 || status === 429 || status >= 500;
  }

  /** Send one file; resolves when it has an outcome in its row. */
  function upload(entry, page) {
    return new Promise((resolve) => {
      let restarts = 0;
      const file = entry.file;
      const tusUpload = new window.tus.Upload(file, {
        endpoint: '/api/uploads',
        chunkSize: CHUNK_BYTES,
        retryDelays: RETRY_DELAYS,
        metadata: { album_id: String(albumId), filename: file.name },
        headers: { 'X-CSRF-Token': csrf, 'X-Photoq-Batch': page.batch || '' },
        // The same file chosen again for the same album resumes; for another album it is a new upload.
        fingerprint: (f) => Promise.resolve(['photoq', albumId, f.name, f.type, f.size, f.lastModified].join('/')),
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        onShouldRetry: (err) => {
          const retry = retryable(statusOf(err));
          if (retry) page.setRow(entry, 'waiting', 'Connection lost; resuming…');
          return retry;
        },
        onProgress: (sent) => {
          window.photoqAlbumPage.progressEvents += 1;
          page.showProgress(entry, sent);
        },
        onSuccess: () => {
          outcome(tusUpload.url).then((result) => {
            page.handleResult(entry, result);
            if (result.status === 'pending') page.accepted();
            resolve();
          });
        },
        onError: (err) => {
          const status = statusOf(err);
          if (retryable(status) && restarts < MAX_RESTARTS_WHEN_ONLINE) {
            restarts += 1;
            page.setRow(entry, 'waiting', 'Waiting for the network to resume the upload…');
            const again = () => { window.removeEventListener('online', again); tusUpload.start(); };
            window.addEventListener('online', again);
            if (navigator.onLine) window.setTimeout(again, 60000);
            return;
          }
          if (status === 0) {
            page.finish(entry, 'rejected', 'The upload could not reach the server. Choose the file again to resume where it stopped.');
          } else {
            page.refused(entry, status, bodyOf(err));
          }
          resolve();
        },
      });
      page.setRow(entry, 'uploading', 'Uploading…');
      tusUpload.findPreviousUploads().then((previous) => {
        if (previous.length) tusUpload.resumeFromPreviousUpload(previous[0]);
        tusUpload.start();
      });
    });
  }

  /** The finished upload's entry, as a multipart upload response would list it. */
  async function outcome(url) {
    try {
      const response = await fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
      const body = await response.json();
      if (response.ok && body && body.status) return body;
      return { status: 'rejected', message: (body && body.message) || 'The server did not confirm the upload.' };
    } catch (e) {
      return { status: 'rejected', message: 'The server did not confirm the upload (network error).' };
    }
  }

  window.photoq.resumable = { wanted, upload };
})();
