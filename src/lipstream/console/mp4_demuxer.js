// Just enough of an MP4 (ISO BMFF) reader to hand a video track's samples to WebCodecs.
//
// Reads the first video track's sample table (stsd/avcC, stts, ctts, stsc, stsz, stco/co64,
// stss) from a whole file in memory. Fragmented MP4 and edit lists are not handled: the caller
// falls back to decoding through a <video> element when this returns an error.

const CONTAINERS = new Set(['moov', 'trak', 'mdia', 'minf', 'stbl', 'edts', 'dinf']);

export class Mp4Error extends Error {}

function* boxes(view, start, end) {
  let at = start;
  while (at + 8 <= end) {
    let size = view.getUint32(at);
    const type = String.fromCharCode(
      view.getUint8(at + 4), view.getUint8(at + 5), view.getUint8(at + 6), view.getUint8(at + 7),
    );
    let header = 8;
    if (size === 1) {
      size = Number(view.getBigUint64(at + 8));
      header = 16;
    } else if (size === 0) {
      size = end - at;
    }
    if (size < header || at + size > end) throw new Mp4Error(`bad MP4 box ${type} at ${at}`);
    yield { type, start: at + header, end: at + size };
    at += size;
  }
}

function child(view, box, type) {
  for (const b of boxes(view, box.start, box.end)) if (b.type === type) return b;
  return null;
}

function path(view, box, ...types) {
  let current = box;
  for (const t of types) {
    current = current && child(view, current, t);
  }
  return current;
}

function hex2(n) {
  return n.toString(16).padStart(2, '0');
}

/**
 * The first video track of an MP4 file: {codec, description, width, height, timescale,
 * samples: [{offset, size, dts, cts, duration, key}]}.
 */
export function demuxMp4(buffer) {
  const view = new DataView(buffer);
  const top = { start: 0, end: buffer.byteLength };
  const moov = child(view, top, 'moov');
  if (!moov) throw new Mp4Error('no moov box (fragmented or truncated MP4)');
  for (const trak of boxes(view, moov.start, moov.end)) {
    if (trak.type !== 'trak') continue;
    const hdlr = path(view, trak, 'mdia', 'hdlr');
    if (!hdlr || String.fromCharCode(...new Uint8Array(buffer, hdlr.start + 8, 4)) !== 'vide') continue;
    if (path(view, trak, 'edts', 'elst')) {
      const elst = path(view, trak, 'edts', 'elst');
      if (view.getUint32(elst.start + 4) > 1) throw new Mp4Error('edit lists are not supported');
    }
    return readTrack(view, buffer, trak);
  }
  throw new Mp4Error('no video track');
}

function readTrack(view, buffer, trak) {
  const mdhd = path(view, trak, 'mdia', 'mdhd');
  const version = view.getUint8(mdhd.start);
  const timescale = view.getUint32(mdhd.start + (version === 1 ? 20 : 12));
  const stbl = path(view, trak, 'mdia', 'minf', 'stbl');
  if (!stbl) throw new Mp4Error('no sample table');

  const stsd = child(view, stbl, 'stsd');
  const entries = [...boxes(view, stsd.start + 8, stsd.end)];
  const entry = entries[0];
  if (!entry || (entry.type !== 'avc1' && entry.type !== 'avc3')) {
    throw new Mp4Error(`codec ${entry?.type ?? 'none'} is not read here`);
  }
  const width = view.getUint16(entry.start + 24);
  const height = view.getUint16(entry.start + 26);
  const avcC = child(view, { start: entry.start + 78, end: entry.end }, 'avcC');
  if (!avcC) throw new Mp4Error('no avcC box');
  const description = new Uint8Array(buffer.slice(avcC.start, avcC.end));
  const codec = `avc1.${hex2(description[1])}${hex2(description[2])}${hex2(description[3])}`;

  const u32 = (box, i) => view.getUint32(box.start + i);
  const stsz = child(view, stbl, 'stsz');
  const fixedSize = u32(stsz, 4);
  const count = u32(stsz, 8);
  const sizes = new Array(count);
  for (let i = 0; i < count; i++) sizes[i] = fixedSize || u32(stsz, 12 + 4 * i);

  const stco = child(view, stbl, 'stco');
  const co64 = child(view, stbl, 'co64');
  const chunkOffsets = [];
  if (stco) {
    const n = u32(stco, 4);
    for (let i = 0; i < n; i++) chunkOffsets.push(u32(stco, 8 + 4 * i));
  } else if (co64) {
    const n = u32(co64, 4);
    for (let i = 0; i < n; i++) chunkOffsets.push(Number(view.getBigUint64(co64.start + 8 + 8 * i)));
  } else {
    throw new Mp4Error('no chunk offsets');
  }

  const stsc = child(view, stbl, 'stsc');
  const runs = [];
  for (let i = 0, n = u32(stsc, 4); i < n; i++) {
    runs.push({ first: u32(stsc, 8 + 12 * i) - 1, perChunk: u32(stsc, 12 + 12 * i) });
  }
  const offsets = new Array(count);
  let sample = 0;
  for (let c = 0; c < chunkOffsets.length && sample < count; c++) {
    let run = runs[0];
    for (const r of runs) if (r.first <= c) run = r;
    let at = chunkOffsets[c];
    for (let k = 0; k < run.perChunk && sample < count; k++) {
      offsets[sample] = at;
      at += sizes[sample];
      sample += 1;
    }
  }

  const stts = child(view, stbl, 'stts');
  const dts = new Array(count);
  const durations = new Array(count);
  let t = 0;
  sample = 0;
  for (let i = 0, n = u32(stts, 4); i < n; i++) {
    const k = u32(stts, 8 + 8 * i);
    const delta = u32(stts, 12 + 8 * i);
    for (let j = 0; j < k && sample < count; j++) {
      dts[sample] = t;
      durations[sample] = delta;
      t += delta;
      sample += 1;
    }
  }

  const ctts = child(view, stbl, 'ctts');
  const cts = dts.slice();
  if (ctts) {
    sample = 0;
    for (let i = 0, n = u32(ctts, 4); i < n; i++) {
      const k = u32(ctts, 8 + 8 * i);
      const off = view.getInt32(ctts.start + 12 + 8 * i);
      for (let j = 0; j < k && sample < count; j++) cts[sample++] += off;
    }
  }

  const stss = child(view, stbl, 'stss');
  const keys = new Set();
  if (stss) {
    for (let i = 0, n = u32(stss, 4); i < n; i++) keys.add(u32(stss, 8 + 4 * i) - 1);
  }

  const samples = [];
  for (let i = 0; i < count; i++) {
    samples.push({
      offset: offsets[i],
      size: sizes[i],
      dts: dts[i],
      cts: cts[i],
      duration: durations[i],
      key: stss ? keys.has(i) : true,
    });
  }
  return { codec, description, width, height, timescale, samples };
}
