// FaceMend: draw numbered face boxes on a node's preview, so a user can pick face indices.
//
// Contract with the Python nodes (FaceMend Detect, Restore Faces, ...): the node's UI payload has
//   ui.images                  the preview images (frame k in preview k, unless ...)
//   ui.facemend_preview_frames optional: which frame each preview image shows
//   ui.facemend_faces          [{frame, index, box: [x0, y0, x1, y1], score, image_size?: [w, h]}]
// Boxes are pixel coordinates in the frame; `image_size` is the frame's size when the preview is
// smaller than the frame (the box is then scaled), otherwise the preview's own size is assumed.
//
// The frontend loads the previews into `node.imgs`; once they are loaded we replace them by
// annotated copies (drawn on a canvas). Only official extension hooks are used; per-node
// handlers are chained on the node instance, never on a prototype.

const { app } = window.comfyAPI.app;

const EXTENSION = "FaceMend.FaceBoxes";
const PALETTE = ["#00e5ff", "#ffea00", "#ff4081", "#76ff03", "#ff9100", "#e040fb", "#ffffff", "#40c4ff"];

/** Faces to draw on preview image `k`. */
export function facesForPreview(faces, previewFrames, k) {
  const frame = Array.isArray(previewFrames) && previewFrames.length > k ? previewFrames[k] : k;
  return (faces ?? []).filter((f) => (f.frame ?? 0) === frame && Array.isArray(f.box) && f.box.length === 4);
}

/** Colour used for face `index` (stable, so the same face keeps its colour across runs). */
export function faceColour(index) {
  return PALETTE[Math.abs(Number(index) || 0) % PALETTE.length];
}

/** Draw boxes and index labels for `faces` on a 2D context holding a `width` x `height` image. */
export function drawFaces(ctx, width, height, faces) {
  const short = Math.min(width, height);
  const lineWidth = Math.max(2, Math.round(short / 160));
  const fontSize = Math.max(14, Math.round(short / 18));
  for (const face of faces) {
    const sx = width / (face.image_size?.[0] || width);
    const sy = height / (face.image_size?.[1] || height);
    const [x0, y0, x1, y1] = face.box.map(Number);
    const left = x0 * sx, top = y0 * sy, w = (x1 - x0) * sx, h = (y1 - y0) * sy;
    const colour = faceColour(face.index);
    ctx.lineWidth = lineWidth;
    ctx.strokeStyle = colour;
    ctx.strokeRect(left, top, w, h);

    const label = String(face.index ?? "?");
    ctx.font = `bold ${fontSize}px sans-serif`;
    const pad = Math.round(fontSize * 0.25);
    const boxW = ctx.measureText(label).width + 2 * pad;
    const boxH = fontSize + 2 * pad;
    const labelX = Math.min(Math.max(left - lineWidth / 2, 0), Math.max(width - boxW, 0));
    const labelY = top - boxH >= 0 ? top - boxH : top; // above the box, or inside it at the top
    ctx.fillStyle = colour;
    ctx.fillRect(labelX, labelY, boxW, boxH);
    ctx.fillStyle = "#000";
    ctx.textBaseline = "top";
    ctx.fillText(label, labelX + pad, labelY + pad);
  }
}

function annotate(img, faces) {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  drawFaces(ctx, canvas.width, canvas.height, faces);
  return new Promise((resolve, reject) => {
    const out = new Image();
    out.onload = () => resolve(out);
    out.onerror = reject;
    out.src = canvas.toDataURL("image/png");
  });
}

/** Replace the node's loaded previews by annotated copies (once per set of previews). */
function annotatePreviews(node) {
  const faces = node.facemendFaces;
  const imgs = node.imgs;
  if (!faces?.length || !imgs?.length) return;
  if (imgs === node.facemendAnnotated || imgs === node.facemendAnnotating) return;
  if (!imgs.every((img) => img?.complete && img.naturalWidth > 0)) return; // still loading
  node.facemendAnnotating = imgs;
  Promise.all(imgs.map((img, k) => annotate(img, facesForPreview(faces, node.facemendPreviewFrames, k))))
    .then((annotated) => {
      if (node.imgs !== imgs) return; // new previews arrived meanwhile
      node.imgs = annotated;
      node.facemendAnnotated = annotated;
      node.setDirtyCanvas?.(true, true);
    })
    .catch((e) => console.warn("[FaceMend] could not draw face boxes:", e))
    .finally(() => {
      if (node.facemendAnnotating === imgs) node.facemendAnnotating = null;
    });
}

function setFaces(node, output) {
  node.facemendFaces = Array.isArray(output?.facemend_faces) ? output.facemend_faces : null;
  node.facemendPreviewFrames = output?.facemend_preview_frames ?? null;
  node.facemendAnnotated = null;
  node.setDirtyCanvas?.(true, true);
}

function isFaceMendNode(node) {
  return String(node?.comfyClass ?? node?.type ?? "").startsWith("FaceMend");
}

app.registerExtension({
  name: EXTENSION,
  nodeCreated(node) {
    if (!isFaceMendNode(node)) return;
    const onExecuted = node.onExecuted;
    node.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      setFaces(this, output);
      return result;
    };
    const onDrawForeground = node.onDrawForeground;
    node.onDrawForeground = function (ctx) {
      const result = onDrawForeground?.apply(this, arguments);
      annotatePreviews(this);
      return result;
    };
  },
  onNodeOutputsUpdated(nodeOutputs) {
    // Outputs restored from the queue/history panel: root-graph nodes are keyed by their id.
    for (const [id, output] of Object.entries(nodeOutputs ?? {})) {
      if (!output?.facemend_faces) continue;
      const node = app.graph?.getNodeById?.(Number(id)) ?? app.graph?.getNodeById?.(id);
      if (node && isFaceMendNode(node)) setFaces(node, output);
    }
  },
});
