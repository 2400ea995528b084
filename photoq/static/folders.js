// photoq: the photos inside dropped or picked folders. A drop is walked with the File and Directory Entries API
// (DataTransferItem.webkitGetAsEntry, every level of folders); a folder picked with <input webkitdirectory> arrives
// as a flat list. Either way only images are kept (by type, else by extension: HEIC often has no type), hidden files
// and folders (.DS_Store, ._IMG_0001.JPG, .thumbnails/) are left out, and what was left out is counted.
(function (root, build) {
  'use strict';
  const api = build();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.photoq = Object.assign(root.photoq || {}, { folders: api });
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/heic',
    'image/heif', 'image/avif', 'image/heic-sequence', 'image/heif-sequence']);
  const IMAGE_EXTENSIONS = new Set(['jpg', 'jpeg', 'jpe', 'png', 'webp', 'gif', 'tif', 'tiff', 'heic', 'heif', 'avif']);

  function isHidden(name) {
    return name.startsWith('.');
  }

  /** Whether a file looks like a photo photoq takes (the server still decides by its bytes). */
  function isImage(file) {
    if (isHidden(file.name)) return false;
    if (IMAGE_TYPES.has((file.type || '').toLowerCase())) return true;
    const dot = file.name.lastIndexOf('.');
    return dot > 0 && IMAGE_EXTENSIONS.has(file.name.slice(dot + 1).toLowerCase());
  }

  /** {files, skipped} of a flat list, e.g. a folder picked with webkitdirectory (paths in webkitRelativePath). */
  function fromList(list) {
    const files = [];
    let skipped = 0;
    for (const file of Array.from(list || [])) {
      const path = file.webkitRelativePath || file.name;
      if (path.split('/').some(isHidden) || !isImage(file)) skipped += 1;
      else files.push(file);
    }
    return { files, skipped };
  }

  function readAll(reader) {
    // readEntries answers in batches (100 at a time in Chromium) until it answers an empty one.
    return new Promise((resolve, reject) => {
      const entries = [];
      const next = () => reader.readEntries((batch) => {
        if (!batch.length) resolve(entries);
        else { entries.push(...batch); next(); }
      }, reject);
      next();
    });
  }

  function fileOf(entry) {
    return new Promise((resolve, reject) => entry.file(resolve, reject));
  }

  /** Walk entries (files and folders, any depth), in name order within each folder. Files dropped as they are
   * (depth 0) all go on, as picked files do: the server says why one is refused. */
  async function walk(entries, out, depth) {
    depth = depth || 0;
    const sorted = entries.slice().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of sorted) {
      if (depth > 0 && isHidden(entry.name)) {
        out.skipped += 1;
      } else if (entry.isDirectory) {
        try {
          await walk(await readAll(entry.createReader()), out, depth + 1);
        } catch (e) {
          out.unreadable += 1;
        }
      } else if (entry.isFile) {
        try {
          const file = await fileOf(entry);
          if (depth === 0 || isImage(file)) out.files.push(file); else out.skipped += 1;
        } catch (e) {
          out.unreadable += 1;
        }
      }
    }
    return out;
  }

  /**
   * {files, skipped, unreadable, folders} of a drop. Entries must be taken from the items at once, during the
   * drop event: the DataTransfer is emptied when the event handler returns.
   */
  function fromDrop(dataTransfer) {
    const items = Array.from((dataTransfer && dataTransfer.items) || []);
    const entries = items.map((item) => (item.kind === 'file' && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    if (!entries.length || entries.some((entry) => !entry)) {
      // No entries API (or a drop of plain files it does not describe): the files as they are.
      return Promise.resolve({ ...fromList(dataTransfer ? dataTransfer.files : []), unreadable: 0, folders: 0 });
    }
    const folders = entries.filter((entry) => entry.isDirectory).length;
    return walk(entries, { files: [], skipped: 0, unreadable: 0 }).then((out) => ({ ...out, folders }));
  }

  return { isImage, fromList, fromDrop, walk };
});
