// Unit tests of photoq/static/format.js under node's own test runner.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { shortName, formatDate } = require('../../photoq/static/format.js');

test('short names are left alone', () => {
  assert.equal(shortName('beach.jpg', 24), 'beach.jpg');
});

test('long names are shortened in the middle and keep their extension', () => {
  const short = shortName('IMG_20230701_140312_HDR_portrait_mode_final.jpeg', 24);
  assert.equal(Array.from(short).length, 24);
  assert.ok(short.endsWith('.jpeg'));
  assert.ok(short.startsWith('IMG_20230'));
  assert.ok(short.includes('…'));
});

test('a dot far from the end is not an extension; emoji count as one character', () => {
  assert.equal(shortName('v1.0-of-a-very-long-document-name-without-extension', 20), 'v1.0-of-a-ver…ension');
  assert.equal(Array.from(shortName('😀😀😀😀😀😀😀😀😀😀😀😀😀😀.png', 10)).length, 10);
});

test('dates: one format; camera time keeps the camera clock', () => {
  assert.equal(formatDate('2023-07-01T14:03:00', true, 'en-GB'), '1 Jul 2023, 14:03 (camera time)');
  assert.equal(formatDate('not a date', false, 'en-GB'), null);
});
