// Unit tests of photoq/static/hashing.js under node's test runner: the incremental SHA-256 against node's own.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createHash, randomBytes } = require('node:crypto');
const { Sha256, sha256File, SLICE } = require('../../photoq/static/hashing.js');

const expected = (bytes) => createHash('sha256').update(bytes).digest('hex');

test('known answers', () => {
  assert.equal(new Sha256().hex(), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(new Sha256().update(Buffer.from('abc')).hex(),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('every length around the block and padding edges, fed in uneven pieces', () => {
  for (const size of [1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4097]) {
    const bytes = randomBytes(size);
    const hash = new Sha256();
    for (let offset = 0, step = 1; offset < size; offset += step, step = (step * 7) % 97 + 1) {
      hash.update(bytes.subarray(offset, offset + step));
    }
    assert.equal(hash.hex(), expected(bytes), 'size ' + size);
  }
});

test('a file bigger than a slice is hashed slice by slice', async () => {
  const bytes = randomBytes(SLICE * 2 + 12345);
  const seen = [];
  const hex = await sha256File(new Blob([bytes]), (done) => seen.push(done), { webCrypto: false });
  assert.equal(hex, expected(bytes));
  assert.deepEqual(seen, [SLICE, SLICE * 2, bytes.length]);
});

test('small files go through Web Crypto when there is one, with the same answer', async () => {
  const bytes = randomBytes(100000);
  assert.equal(await sha256File(new Blob([bytes])), expected(bytes));
});
