// photoq: SHA-256 of a File in the browser, so the uploader can ask the server which files the album already has
// before sending their bytes. Web Crypto does it for files that fit comfortably in memory; bigger files, and pages
// that are not a secure context (plain http to a Pi on the LAN has no crypto.subtle), are hashed in 4 MiB slices by
// the incremental SHA-256 below, so memory stays flat whatever the file's size.
(function (root, build) {
  'use strict';
  const api = build();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.photoq = Object.assign(root.photoq || {}, { hashing: api });
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  /** Incremental SHA-256 (FIPS 180-4): update() with any number of byte arrays, then hex(). */
  class Sha256 {
    constructor() {
      this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
      this.w = new Uint32Array(64);
      this.block = new Uint8Array(64);
      this.filled = 0;
      this.length = 0;  // bytes so far (a double holds 2^53: files far beyond any photo)
    }

    update(bytes) {
      let offset = 0;
      this.length += bytes.length;
      if (this.filled) {
        const take = Math.min(64 - this.filled, bytes.length);
        this.block.set(bytes.subarray(0, take), this.filled);
        this.filled += take;
        offset = take;
        if (this.filled < 64) return this;
        this.compress(this.block, 0);
        this.filled = 0;
      }
      for (; offset + 64 <= bytes.length; offset += 64) this.compress(bytes, offset);
      if (offset < bytes.length) {
        this.block.set(bytes.subarray(offset), 0);
        this.filled = bytes.length - offset;
      }
      return this;
    }

    compress(bytes, offset) {
      const w = this.w;
      for (let i = 0; i < 16; i += 1) {
        const j = offset + i * 4;
        w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
      }
      for (let i = 16; i < 64; i += 1) {
        const a = w[i - 15];
        const b = w[i - 2];
        const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      const h = this.h;
      let a = h[0]; let b = h[1]; let c = h[2]; let d = h[3];
      let e = h[4]; let f = h[5]; let g = h[6]; let k = h[7];
      for (let i = 0; i < 64; i += 1) {
        const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const ch = (e & f) ^ (~e & g);
        const t1 = (k + S1 + ch + K[i] + w[i]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & b) ^ (a & c) ^ (b & c);
        const t2 = (S0 + maj) | 0;
        k = g; g = f; f = e; e = (d + t1) | 0;
        d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }

    hex() {
      const bits = this.length * 8;
      const tail = new Uint8Array(((this.filled + 9 + 63) >> 6) << 6);
      tail.set(this.block.subarray(0, this.filled));
      tail[this.filled] = 0x80;
      const view = new DataView(tail.buffer);
      view.setUint32(tail.length - 8, Math.floor(bits / 0x100000000));
      view.setUint32(tail.length - 4, bits >>> 0);
      for (let offset = 0; offset < tail.length; offset += 64) this.compress(tail, offset);
      return Array.from(this.h, (x) => x.toString(16).padStart(8, '0')).join('');
    }
  }

  const SLICE = 4 * 1024 * 1024;
  const WEB_CRYPTO_MAX = 64 * 1024 * 1024;

  function toHex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** The SHA-256 (hex) of a Blob or File; `onProgress(bytesDone)` after each slice of a big one.
   * `options.webCrypto: false` always takes the sliced road (tests). */
  async function sha256File(file, onProgress, options) {
    const allowed = !options || options.webCrypto !== false;
    const subtle = allowed && typeof crypto !== 'undefined' && crypto.subtle;
    if (subtle && file.size <= WEB_CRYPTO_MAX) {
      const digest = await subtle.digest('SHA-256', await file.arrayBuffer());
      if (onProgress) onProgress(file.size);
      return toHex(digest);
    }
    const hash = new Sha256();
    for (let offset = 0; offset < file.size; offset += SLICE) {
      const slice = await file.slice(offset, offset + SLICE).arrayBuffer();
      hash.update(new Uint8Array(slice));
      if (onProgress) onProgress(Math.min(file.size, offset + SLICE));
    }
    return hash.hex();
  }

  return { Sha256, sha256File, SLICE, WEB_CRYPTO_MAX };
});
