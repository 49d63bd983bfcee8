// Face compositor: pastes the 320x320 mouth region onto the avatar frame it was made for.
//
// The canvas runs at the avatar video's resolution. `bounds` [xmin, ymin, xmax, ymax] are video
// pixels: the mouth image is resized into that box. compositeFrame() pastes it as is (fast);
// compositeWithBlending() fades its border into the frame through a feathered alpha mask, so no
// square seam shows where the patch meets the face.

const FEATHER = 0.14; // width of the fade, as a fraction of the patch's shorter side

export class FaceCompositor {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false, desynchronized: false });
    this.patch = document.createElement('canvas');
    this.patchCtx = this.patch.getContext('2d');
    this.masks = new Map(); // "w x h" -> canvas holding the feather mask
    this.scale = 1;
  }

  /** Size the canvas to the (decoded) video; `scale` maps video pixels to canvas pixels. */
  resize(width, height, scale = 1) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.scale = scale;
  }

  /** Just the avatar's own frame (idle). */
  drawFrame(frame) {
    this.ctx.globalCompositeOperation = 'source-over';
    this.ctx.drawImage(frame, 0, 0, this.canvas.width, this.canvas.height);
    return this.canvas;
  }

  /** Fast mode: the frame, then the mouth resized into `bounds`, hard edges. */
  compositeFrame(frame, mouth, bounds) {
    this.drawFrame(frame);
    const box = this._box(bounds);
    if (box && mouth) this.ctx.drawImage(mouth, box.x, box.y, box.w, box.h);
    return this.canvas;
  }

  /** Blended mode: the mouth fades into the frame over a feathered border. */
  compositeWithBlending(frame, mouth, bounds) {
    this.drawFrame(frame);
    const box = this._box(bounds);
    if (!box || !mouth) return this.canvas;
    if (this.patch.width !== box.w || this.patch.height !== box.h) {
      this.patch.width = box.w;
      this.patch.height = box.h;
    }
    const p = this.patchCtx;
    p.globalCompositeOperation = 'copy';
    p.imageSmoothingQuality = 'high';
    p.drawImage(mouth, 0, 0, box.w, box.h);
    p.globalCompositeOperation = 'destination-in';
    p.drawImage(this.mask(box.w, box.h), 0, 0);
    this.ctx.drawImage(this.patch, box.x, box.y);
    return this.canvas;
  }

  /**
   * `bounds` (video pixels) times `scale`, as a box of a `width` x `height` picture: rounded,
   * clipped to the picture; null when under 2 pixels either way.
   */
  static box(bounds, scale, width, height) {
    if (!bounds || bounds.length !== 4) return null;
    const x0 = Math.max(0, Math.round(bounds[0] * scale));
    const y0 = Math.max(0, Math.round(bounds[1] * scale));
    const x1 = Math.min(width, Math.round(bounds[2] * scale));
    const y1 = Math.min(height, Math.round(bounds[3] * scale));
    if (x1 - x0 < 2 || y1 - y0 < 2) return null;
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  }

  /** `bounds` as a box of the canvas. */
  _box(bounds) {
    return FaceCompositor.box(bounds, this.scale, this.canvas.width, this.canvas.height);
  }

  /** Alpha mask of a w x h patch: opaque inside, smoothly transparent toward every edge. */
  mask(w, h) {
    const key = `${w}x${h}`;
    let canvas = this.masks.get(key);
    if (canvas) return canvas;
    canvas = document.createElement('canvas');
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d');
    const image = ctx.createImageData(w, h);
    const f = Math.max(2, FEATHER * Math.min(w, h));
    const ramp = (d) => {
      const t = Math.min(1, Math.max(0, d / f));
      return t * t * (3 - 2 * t); // smoothstep: no visible edge where the fade begins
    };
    for (let y = 0; y < h; y++) {
      const ay = ramp(Math.min(y + 0.5, h - y - 0.5));
      for (let x = 0; x < w; x++) {
        const a = ay * ramp(Math.min(x + 0.5, w - x - 0.5));
        const o = (y * w + x) * 4;
        image.data[o] = 255;
        image.data[o + 1] = 255;
        image.data[o + 2] = 255;
        image.data[o + 3] = Math.round(a * 255);
      }
    }
    ctx.putImageData(image, 0, 0);
    if (this.masks.size > 16) this.masks.clear();
    this.masks.set(key, canvas);
    return canvas;
  }
}
