// Unit tests of photoq/static/folders.js under node's test runner, with entries shaped as Chromium's.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const folders = require('../../photoq/static/folders.js');

function file(name, type) { return { name, type: type || '', size: 1 }; }
function fileEntry(name, type) {
  return { name, isFile: true, isDirectory: false, file: (ok) => ok(file(name, type)) };
}
function dirEntry(name, children, batch = 2) {
  return {
    name, isFile: false, isDirectory: true,
    createReader() {
      let at = 0;  // answers in small batches, then an empty one, as readEntries does
      return { readEntries(ok) { const part = children.slice(at, at + batch); at += batch; setTimeout(() => ok(part)); } };
    },
  };
}
function drop(entries) {
  return { items: entries.map((entry) => ({ kind: 'file', webkitGetAsEntry: () => entry })), files: [] };
}

test('a dropped folder gives the images inside it, at every depth, non-images and hidden files counted', async () => {
  const tree = dirEntry('Holiday', [
    fileEntry('b.jpg', 'image/jpeg'), fileEntry('notes.txt', 'text/plain'), fileEntry('.DS_Store'),
    dirEntry('day 2', [fileEntry('IMG_0001.HEIC'), fileEntry('clip.mov', 'video/quicktime'),
      dirEntry('raw', [fileEntry('x.TIFF'), fileEntry('a.png', 'image/png')])]),
    dirEntry('.thumbnails', [fileEntry('t.jpg', 'image/jpeg')]),
    fileEntry('a.webp', 'image/webp'),
  ]);
  const result = await folders.fromDrop(drop([tree, fileEntry('loose.txt', 'text/plain')]));
  assert.deepEqual(result.files.map((f) => f.name), ['a.webp', 'b.jpg', 'IMG_0001.HEIC', 'a.png', 'x.TIFF', 'loose.txt']);
  assert.equal(result.skipped, 4);  // notes.txt, .DS_Store, clip.mov, .thumbnails/
  assert.equal(result.folders, 1);
});

test('a folder picked with webkitdirectory: a flat list with relative paths', () => {
  const list = [
    Object.assign(file('a.jpg', 'image/jpeg'), { webkitRelativePath: 'Trip/a.jpg' }),
    Object.assign(file('b.txt', 'text/plain'), { webkitRelativePath: 'Trip/b.txt' }),
    Object.assign(file('c.jpg', 'image/jpeg'), { webkitRelativePath: 'Trip/.cache/c.jpg' }),
    Object.assign(file('d.heic'), { webkitRelativePath: 'Trip/sub/d.heic' }),
  ];
  const result = folders.fromList(list);
  assert.deepEqual(result.files.map((f) => f.name), ['a.jpg', 'd.heic']);
  assert.equal(result.skipped, 2);
});
